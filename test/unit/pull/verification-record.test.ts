/**
 * The policy a verification record names: kept as decided, read back from records written before
 * the source was kept, described and compared for `pullguard verify`.
 */
import { describe, expect, it } from 'vitest';
import type { Verdict } from '../../../src/domain/signature.js';
import {
  describePolicySource,
  policySourceOf,
  readVerificationRecords,
  recordedPolicySource,
  samePolicySource,
  toVerificationRecord,
  type VerificationRecordV1,
} from '../../../src/pull/verification-record.js';
import { resolvedFixtureImage } from '../../fixtures/signatures/fixtures.js';

const verdict: Verdict = {
  allowed: true,
  scope: { policyFile: '/etc/ns/team-a.json', scope: 'registry.example' },
  requirements: [],
  troubles: [],
  warnings: [],
};
const base = { time: new Date('2026-01-01T00:00:00Z'), version: 'test', image: resolvedFixtureImage(), verdict, signatures: [], signatureDigests: [] };

describe('verification record policy source', () => {
  it('keeps the policy source, scope and namespace it was decided under', () => {
    const record = toVerificationRecord({
      ...base,
      policySource: { kind: 'namespace', file: '/etc/ns/team-a.json', namespace: 'team-a' },
      namespace: 'team-a',
    });
    expect(record).toMatchObject({
      policyFile: '/etc/ns/team-a.json',
      scope: 'registry.example',
      namespace: 'team-a',
      policySource: { kind: 'namespace', file: '/etc/ns/team-a.json', namespace: 'team-a' },
    });
    const bare = toVerificationRecord(base);
    expect(bare).not.toHaveProperty('policySource');
    expect(bare).not.toHaveProperty('namespace');
  });

  it('reads records written before the source was kept from their policy file', () => {
    const old = { ...toVerificationRecord(base), policyFile: '/etc/containers/policy.json' } as VerificationRecordV1;
    const [read] = Object.values(readVerificationRecords(old));
    expect(recordedPolicySource(read!)).toEqual({ kind: 'file', file: '/etc/containers/policy.json' });
    expect(recordedPolicySource({ ...old, policyFile: '<embedded>' })).toEqual({ kind: 'embedded' });
  });

  it('tells a namespace file from the global file and the embedded default', () => {
    const ns = { name: 'team-a', file: '/etc/ns/team-a.json' };
    expect(policySourceOf({ embedded: false, file: '/etc/ns/team-a.json' }, ns)).toEqual({
      kind: 'namespace',
      file: '/etc/ns/team-a.json',
      namespace: 'team-a',
    });
    // No team-a.json: the global policy decided.
    expect(policySourceOf({ embedded: false, file: '/etc/containers/policy.json' }, ns)).toEqual({ kind: 'file', file: '/etc/containers/policy.json' });
    expect(policySourceOf({ embedded: true, file: '<embedded>' }, undefined)).toEqual({ kind: 'embedded' });
  });

  it('describes and compares sources', () => {
    expect(describePolicySource({ kind: 'namespace', file: '/etc/ns/team-a.json', namespace: 'team-a' })).toBe(
      '/etc/ns/team-a.json (policy of namespace team-a)',
    );
    expect(describePolicySource({ kind: 'embedded' })).toMatch(/^the embedded default policy/);
    expect(samePolicySource({ kind: 'file', file: '/a' }, { kind: 'file', file: '/a' })).toBe(true);
    expect(samePolicySource({ kind: 'file', file: '/a' }, { kind: 'file', file: '/b' })).toBe(false);
    expect(samePolicySource({ kind: 'file', file: '/a' }, { kind: 'namespace', file: '/a', namespace: 'x' })).toBe(false);
    expect(samePolicySource({ kind: 'embedded' }, { kind: 'embedded' })).toBe(true);
  });
});
