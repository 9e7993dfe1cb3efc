/** How a pull ended, as every observer (metrics label, log, Event) names it. */
import type { Verdict } from '../domain/signature.js';

export const PULL_OUTCOMES = ['allowed', 'allowed_with_warnings', 'denied', 'error'] as const;
export type PullOutcome = (typeof PULL_OUTCOMES)[number];

/** A denial is the policy saying no; anything else thrown is `error`. */
export function pullOutcomeOf(result: { readonly verdict?: Verdict; readonly error?: unknown }): PullOutcome {
  if (result.error !== undefined) {
    const code = (result.error as { code?: unknown } | null)?.code;
    return code === 'SIGNATURE_VALIDATION_FAILED' ? 'denied' : 'error';
  }
  if (result.verdict === undefined) return 'error';
  if (!result.verdict.allowed) return 'denied';
  return result.verdict.warnings.length > 0 ? 'allowed_with_warnings' : 'allowed';
}
