import { describe, expect, it } from 'vitest';
import { PullguardError } from '../../../src/domain/errors.js';
import type { Verdict } from '../../../src/domain/signature.js';
import { pullOutcomeOf } from '../../../src/pull/pull-outcome.js';

function verdict(allowed: boolean, warnings = 0): Verdict {
  return {
    allowed,
    scope: { policyFile: '/etc/containers/policy.json', scope: 'default' },
    requirements: [],
    troubles: [],
    warnings: Array.from({ length: warnings }, (_, i) => ({ code: 'PGW001' as const, message: `w${i}` })),
    ...(allowed ? {} : { denial: 'no' }),
  };
}

describe('pullOutcomeOf', () => {
  it('classifies results and errors', () => {
    expect(pullOutcomeOf({ verdict: verdict(true) })).toBe('allowed');
    expect(pullOutcomeOf({ verdict: verdict(true, 1) })).toBe('allowed_with_warnings');
    expect(pullOutcomeOf({ error: new PullguardError('SIGNATURE_VALIDATION_FAILED', 'no') })).toBe('denied');
    expect(pullOutcomeOf({ error: new PullguardError('REGISTRY_UNAVAILABLE', 'down') })).toBe('error');
    expect(pullOutcomeOf({ error: new TypeError('x') })).toBe('error');
  });
});
