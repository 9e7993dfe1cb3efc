/**
 * The verdict cache: keyed by revision, policy (by identity), reference and manifest digest;
 * allowed verdicts for the TTL, denials no longer than the signature budget; bounded; a newer
 * revision empties it and an older one can neither read nor write.
 */
import { describe, expect, it } from 'vitest';
import type { Digest } from '../../../src/domain/digest.js';
import type { Verdict } from '../../../src/domain/signature.js';
import { VerdictCache, type CachedVerdict, type VerdictCacheKey } from '../../../src/pull/verdict-cache.js';

const DIGEST = `sha256:${'a'.repeat(64)}` as Digest;
const OTHER_DIGEST = `sha256:${'b'.repeat(64)}` as Digest;

function verdict(allowed: boolean): CachedVerdict {
  return {
    verdict: { allowed } as unknown as Verdict,
    signatures: [],
    policySource: { kind: 'file', file: '/etc/containers/policy.json' },
    decidedAt: new Date(0),
  };
}

function setup(options: { ttlMs?: number; denialTtlMs?: number; maxEntries?: number } = {}) {
  let now = 1_000;
  const cache = new VerdictCache({
    ttlMs: options.ttlMs ?? 60_000,
    denialTtlMs: options.denialTtlMs ?? 5_000,
    monotonicMs: () => now,
    ...(options.maxEntries !== undefined ? { maxEntries: options.maxEntries } : {}),
  });
  return { cache, advance: (ms: number) => (now += ms) };
}

const policy = {};
const key = (over: Partial<VerdictCacheKey> = {}): VerdictCacheKey => ({
  revision: 1,
  policy,
  reference: 'registry.example/app:v1',
  manifestDigest: DIGEST,
  ...over,
});

describe('VerdictCache', () => {
  it('answers an allowed verdict for the same revision, policy, reference and digest until its TTL', () => {
    const { cache, advance } = setup();
    const allowed = verdict(true);
    cache.set(key(), allowed);
    expect(cache.get(key())).toBe(allowed);
    advance(59_999);
    expect(cache.get(key())).toBe(allowed);
    advance(1);
    expect(cache.get(key())).toBeUndefined();
  });

  it('keeps a denial no longer than the denial TTL (the signature budget)', () => {
    const { cache, advance } = setup();
    cache.set(key(), verdict(false));
    advance(4_999);
    expect(cache.get(key())?.verdict.allowed).toBe(false);
    advance(1);
    expect(cache.get(key())).toBeUndefined();
  });

  it('never keeps a denial longer than allowed verdicts, whatever the budget', () => {
    const { cache, advance } = setup({ ttlMs: 1_000, denialTtlMs: 30_000 });
    cache.set(key(), verdict(false));
    advance(1_000);
    expect(cache.get(key())).toBeUndefined();
  });

  it('tells apart every part of the key: another digest, reference (tag), policy object or revision is a miss', () => {
    const { cache } = setup();
    cache.set(key(), verdict(true));
    expect(cache.get(key({ manifestDigest: OTHER_DIGEST }))).toBeUndefined();
    expect(cache.get(key({ reference: 'registry.example/app:v2' }))).toBeUndefined();
    expect(cache.get(key({ policy: {} }))).toBeUndefined();
    expect(cache.get(key())).toBeDefined();
    expect(cache.get(key({ revision: 2 }))).toBeUndefined();
  });

  it('drops everything when a newer revision is seen, and neither answers nor keeps verdicts of an older one', () => {
    const { cache } = setup();
    cache.set(key({ revision: 1 }), verdict(true));
    cache.set(key({ revision: 2, reference: 'registry.example/app:v2' }), verdict(true));
    expect(cache.size).toBe(1);
    expect(cache.get(key({ revision: 1 }))).toBeUndefined();
    // A phase that began before the reload and ends after it must not fill the cache.
    cache.set(key({ revision: 1 }), verdict(true));
    expect(cache.get(key({ revision: 1 }))).toBeUndefined();
    expect(cache.size).toBe(1);
  });

  it('holds at most maxEntries, evicting the least recently used', () => {
    const { cache } = setup({ maxEntries: 2 });
    cache.set(key({ reference: 'r/a' }), verdict(true));
    cache.set(key({ reference: 'r/b' }), verdict(true));
    expect(cache.get(key({ reference: 'r/a' }))).toBeDefined();
    cache.set(key({ reference: 'r/c' }), verdict(true));
    expect(cache.size).toBe(2);
    expect(cache.get(key({ reference: 'r/b' }))).toBeUndefined();
    expect(cache.get(key({ reference: 'r/a' }))).toBeDefined();
    expect(cache.get(key({ reference: 'r/c' }))).toBeDefined();
  });

  it('with a TTL of 0 is off: it keeps nothing', () => {
    const { cache } = setup({ ttlMs: 0 });
    expect(cache.enabled).toBe(false);
    cache.set(key(), verdict(true));
    expect(cache.get(key())).toBeUndefined();
    expect(cache.size).toBe(0);
  });
});
