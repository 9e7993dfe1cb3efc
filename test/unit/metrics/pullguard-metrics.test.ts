import { describe, expect, it } from 'vitest';
import type { SignatureTrouble, TroubleKind, Verdict } from '../../../src/domain/signature.js';
import { PullMetrics, TROUBLE_KINDS, createPullguardMetrics, observeLookasideEvents } from '../../../src/metrics/pullguard-metrics.js';
import { parseExposition, type Sample } from './exposition.js';

function trouble(kind: TroubleKind, index: number): SignatureTrouble {
  return {
    location: { source: 'lookaside', index, url: `https://sigs.example/app@sha256=ab/signature-${index}` },
    kind,
    message: `${kind} happened`,
    attempts: 1,
  };
}

function verdict(allowed: boolean, troubles: SignatureTrouble[] = [], warnings = 0): Verdict {
  return {
    allowed,
    scope: { policyFile: '/etc/containers/policy.json', scope: 'default' },
    requirements: [],
    troubles,
    warnings: Array.from({ length: warnings }, (_, i) => ({ code: 'PGW001' as const, message: `w${i}` })),
    ...(allowed ? {} : { denial: 'no' }),
  };
}

function samples(text: string, family: string): Sample[] {
  return parseExposition(text).get(family)?.samples ?? [];
}

function value(text: string, family: string, labels: Record<string, string> = {}, name = family): number | undefined {
  return samples(text, family).find((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))?.value;
}

describe('createPullguardMetrics', () => {
  it('exposes every family with HELP/TYPE and zeroed single-label series before anything happened', () => {
    const metrics = createPullguardMetrics();
    const families = parseExposition(metrics.registry.expose());
    for (const [name, type] of [
      ['pullguard_pulls_total', 'counter'],
      ['pullguard_signature_troubles_total', 'counter'],
      ['pullguard_verdicts_total', 'counter'],
      ['pullguard_pull_duration_seconds', 'histogram'],
      ['pullguard_signature_phase_duration_seconds', 'histogram'],
      ['pullguard_rpc_total', 'counter'],
    ] as const) {
      expect(families.get(name)?.type, name).toBe(type);
      expect(families.get(name)?.help, name).not.toBe('');
    }
    expect(
      samples(metrics.registry.expose(), 'pullguard_pulls_total')
        .map((s) => s.labels['outcome'])
        .sort(),
    ).toEqual(['allowed', 'allowed_with_warnings', 'denied', 'error']);
    expect(
      samples(metrics.registry.expose(), 'pullguard_signature_troubles_total')
        .map((s) => s.labels['kind'])
        .sort(),
    ).toEqual([...TROUBLE_KINDS].sort());
    // Two labels: created on first use, so no 8 × 17 wall of zeros.
    expect(samples(metrics.registry.expose(), 'pullguard_rpc_total')).toEqual([]);
  });

  it('recordPull counts the outcome and observes the duration', () => {
    const metrics = createPullguardMetrics();
    metrics.recordPull('allowed_with_warnings', 1.5);
    metrics.recordPull('denied', 0.2);
    metrics.recordPull('allowed_with_warnings', -3); // a clock step back must not produce a negative sum
    const text = metrics.registry.expose();
    expect(value(text, 'pullguard_pulls_total', { outcome: 'allowed_with_warnings' })).toBe(2);
    expect(value(text, 'pullguard_pulls_total', { outcome: 'denied' })).toBe(1);
    expect(value(text, 'pullguard_pull_duration_seconds', {}, 'pullguard_pull_duration_seconds_count')).toBe(3);
    expect(value(text, 'pullguard_pull_duration_seconds', {}, 'pullguard_pull_duration_seconds_sum')).toBeCloseTo(1.7);
    expect(value(text, 'pullguard_pull_duration_seconds', { le: '1' }, 'pullguard_pull_duration_seconds_bucket')).toBe(2);
    expect(value(text, 'pullguard_pull_duration_seconds', { le: '2.5' }, 'pullguard_pull_duration_seconds_bucket')).toBe(3);
  });

  it('recordVerdict counts the verdict, each trouble by kind, and the phase duration', () => {
    const metrics = createPullguardMetrics();
    metrics.recordVerdict(verdict(true, [trouble('timeout', 2), trouble('http-status', 3), trouble('timeout', 4)], 3), 0.3);
    metrics.recordVerdict(verdict(false, [trouble('unrecognized-format', 1)]), 0.02);
    const text = metrics.registry.expose();
    expect(value(text, 'pullguard_verdicts_total', { verdict: 'allowed' })).toBe(1);
    expect(value(text, 'pullguard_verdicts_total', { verdict: 'denied' })).toBe(1);
    expect(value(text, 'pullguard_signature_troubles_total', { kind: 'timeout' })).toBe(2);
    expect(value(text, 'pullguard_signature_troubles_total', { kind: 'http-status' })).toBe(1);
    expect(value(text, 'pullguard_signature_troubles_total', { kind: 'unrecognized-format' })).toBe(1);
    expect(value(text, 'pullguard_signature_troubles_total', { kind: 'io' })).toBe(0);
    expect(value(text, 'pullguard_signature_phase_duration_seconds', {}, 'pullguard_signature_phase_duration_seconds_count')).toBe(2);
    // No URL from the troubles reaches the output.
    expect(text).not.toContain('sigs.example');
  });

  it('recordRpc maps codes to names and unknown RPC names to other', () => {
    const metrics = createPullguardMetrics();
    metrics.recordRpc('PullImage', 0);
    metrics.recordRpc('PullImage', 2);
    metrics.recordRpc('PullImage', 'unknown');
    metrics.recordRpc('/runtime.v1.ImageService/Evil?image=registry.example/app', 99);
    const text = metrics.registry.expose();
    expect(value(text, 'pullguard_rpc_total', { rpc: 'PullImage', code: 'OK' })).toBe(1);
    expect(value(text, 'pullguard_rpc_total', { rpc: 'PullImage', code: 'UNKNOWN' })).toBe(2);
    expect(value(text, 'pullguard_rpc_total', { rpc: 'other', code: 'UNKNOWN' })).toBe(1);
    expect(text).not.toContain('registry.example');
  });

  it('PullMetrics times the signature phase, counts blobs, and counts each ended pull with its duration', () => {
    const metrics = createPullguardMetrics();
    const observer = new PullMetrics(metrics);
    const digest = `sha256:${'a'.repeat(64)}` as const;
    observer.decided({
      image: 'docker.io/library/app:1',
      manifestDigest: digest as never,
      verdict: verdict(true, [trouble('budget', 5)], 1),
      signaturePhaseSeconds: 0.25,
    });
    observer.blobStored({ image: 'docker.io/library/app:1', digest: digest as never, size: 1234, fetched: true });
    observer.blobStored({ image: 'docker.io/library/app:1', digest: digest as never, size: 99, fetched: false });
    expect(metrics.signaturePhaseDuration.snapshot()).toEqual({ count: 1, sum: 0.25 });
    expect(metrics.troubles.get({ kind: 'budget' })).toBe(1);
    expect(metrics.blobs.get({ result: 'fetched' })).toBe(1);
    expect(metrics.blobs.get({ result: 'reused' })).toBe(1);
    expect(metrics.blobBytes.get()).toBe(1234);

    observer.pullEnded({ image: 'docker.io/library/app:1', outcome: 'allowed_with_warnings', durationSeconds: 1.5, warnings: [] });
    observer.pullEnded({ image: 'docker.io/library/app:1', outcome: 'denied', durationSeconds: 0.2, warnings: [] });
    expect(metrics.pulls.get({ outcome: 'allowed_with_warnings' })).toBe(1);
    expect(metrics.pulls.get({ outcome: 'denied' })).toBe(1);
    expect(metrics.pullDuration.snapshot().count).toBe(2);
    expect(metrics.pullDuration.snapshot().sum).toBeCloseTo(1.7);
  });

  it('observeLookasideEvents counts per-index outcomes and retries', () => {
    const metrics = createPullguardMetrics();
    const observe = observeLookasideEvents(metrics);
    observe({ type: 'outcome', index: 1, url: 'https://x/1', outcome: 'signature', attempts: 1 });
    observe({ type: 'outcome', index: 2, url: 'https://x/2', outcome: 'timeout', attempts: 3 });
    observe({ type: 'outcome', index: 3, url: 'https://x/3', outcome: 'missing', attempts: 1 });
    observe({ type: 'retry', index: 2, url: 'https://x/2', reason: '503', delayMs: 10 });
    observe({ type: 'request', index: 2, url: 'https://x/2', attempt: 1, noCache: false });
    expect(metrics.lookasideReads.get({ outcome: 'signature' })).toBe(1);
    expect(metrics.lookasideReads.get({ outcome: 'timeout' })).toBe(1);
    expect(metrics.lookasideReads.get({ outcome: 'missing' })).toBe(1);
    expect(metrics.lookasideRetries.get()).toBe(1);
  });
});
