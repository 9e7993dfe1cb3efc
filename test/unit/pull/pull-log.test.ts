/**
 * The log observer of pulls: one JSON line per warning, joined to the RPC by its fields, with the
 * image named once; the verdict at info; progress at debug (the lines benchmarks split phases by).
 */
import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import type { Verdict } from '../../../src/domain/signature.js';
import { createLogger } from '../../../src/log/logger.js';
import { logLookasideEvents, logRegistryEvents, PullLog } from '../../../src/pull/pull-log.js';

const IMAGE = 'registry.example/app:v1';
const DIGEST = `sha256:${'d'.repeat(64)}` as never;

const verdict: Verdict = {
  allowed: true,
  scope: { policyFile: '/etc/containers/policy.json', scope: 'registry.example' },
  requirements: [],
  troubles: [],
  warnings: [
    {
      code: 'PGW001',
      message: 'signature-2 could not be read: 503 Service Unavailable',
      location: { source: 'lookaside', index: 2, url: 'http://sigs.example/signature-2' },
    },
    { code: 'PGW003', message: 'signature-1 needed 2 attempts' },
  ],
};

function capture(level = 'debug'): { log: ReturnType<typeof createLogger>; records: () => Record<string, unknown>[]; lines: () => string[] } {
  const chunks: string[] = [];
  const destination = new Writable({
    write(chunk: Buffer, _encoding, done) {
      chunks.push(chunk.toString());
      done();
    },
  });
  const lines = (): string[] => chunks.join('').split('\n').filter(Boolean);
  return {
    log: createLogger({ level, destination: destination as never }),
    lines,
    records: () => lines().map((l) => JSON.parse(l) as Record<string, unknown>),
  };
}

describe('PullLog', () => {
  it("logs each warning of a successful pull once, under the caller's fields, with the image named once", () => {
    const { log, lines, records } = capture();
    new PullLog(log).pullEnded({
      image: IMAGE,
      outcome: 'allowed_with_warnings',
      durationSeconds: 1,
      verdict,
      manifestDigest: DIGEST,
      warnings: verdict.warnings,
      logFields: { rpc: 'PullImage', requestId: 3, image: IMAGE },
    });
    expect(lines()).toHaveLength(2);
    for (const line of lines()) expect(line.split('"image":').length - 1).toBe(1);
    expect(records()).toMatchObject([
      {
        level: 40,
        rpc: 'PullImage',
        requestId: 3,
        image: IMAGE,
        manifestDigest: DIGEST,
        warningCode: 'PGW001',
        signatureIndex: 2,
        url: 'http://sigs.example/signature-2',
        msg: verdict.warnings[0]!.message,
      },
      { level: 40, warningCode: 'PGW003', msg: 'signature-1 needed 2 attempts' },
    ]);
  });

  it('names the image itself for a caller without fields, and says nothing of a pull without warnings', () => {
    const { log, records } = capture();
    const observer = new PullLog(log);
    observer.pullEnded({
      image: IMAGE,
      outcome: 'allowed_with_warnings',
      durationSeconds: 1,
      verdict,
      manifestDigest: DIGEST,
      warnings: verdict.warnings.slice(0, 1),
    });
    observer.pullEnded({ image: IMAGE, outcome: 'allowed', durationSeconds: 1, verdict: { ...verdict, warnings: [] }, manifestDigest: DIGEST, warnings: [] });
    expect(records()).toMatchObject([{ image: IMAGE, warningCode: 'PGW001' }]);
  });

  it('logs the verdict at info and progress at debug', () => {
    const { log, records } = capture();
    const observer = new PullLog(log);
    observer.resolved({ image: IMAGE, manifestDigest: DIGEST, layers: 2, bytes: 300 });
    observer.decided({ image: IMAGE, manifestDigest: DIGEST, verdict, signaturePhaseSeconds: 0.1 });
    observer.blobStored({ image: IMAGE, digest: DIGEST, size: 100, fetched: true });
    expect(records()).toMatchObject([
      { level: 20, msg: 'pull resolved', pull: { type: 'resolved', image: IMAGE, layers: 2, bytes: 300 } },
      { level: 30, msg: 'signature verdict', image: IMAGE, allowed: true, policyFile: '/etc/containers/policy.json', scope: 'registry.example', troubles: 0 },
      { level: 20, msg: 'pull blob-done', pull: { type: 'blob-done', image: IMAGE, digest: DIGEST, size: 100, fetched: true } },
    ]);
  });

  it('logs what the registry client and the lookaside source report', () => {
    const { log, records } = capture();
    logRegistryEvents(log)({ type: 'retry' });
    const lookaside = logLookasideEvents(log);
    lookaside({ type: 'retry' });
    lookaside({ type: 'outcome' });
    expect(records()).toMatchObject([
      { level: 30, msg: 'registry retry', registry: { type: 'retry' } },
      { level: 30, msg: 'retrying signature request', lookaside: { type: 'retry' } },
      { level: 20, msg: 'lookaside', lookaside: { type: 'outcome' } },
    ]);
  });
});
