/**
 * The availability hole end to end: a registry that drips a manifest (from a scope whose policy is
 * `reject`: the manifest is read before the policy) or a small blob a byte at a time, never idle long
 * enough for the idle timeout. PullImage — on which kubelet sets no deadline — must fail with
 * `RegistryUnavailable:` within the read bound instead of holding the node's pulls for minutes.
 * The server runs with a 2 s bound (--registry-read-timeout), so the test takes seconds.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFaultRegistry, type FaultRegistry } from '../helpers/fault-registry.js';
import { buildOciImage, type BuiltImage } from '../helpers/oci-image.js';
import { startPullguard, type RunningPullguard } from '../helpers/pullguard-server.js';

/** A short bound (--registry-read-timeout) so the test takes seconds; the default is DEFAULT_TIMEOUTS.readMs. */
const READ_MS = 2_000;
const SLACK_MS = 10_000;
/** A byte a second: far inside the idle timeout, and a few hundred bytes take minutes. */
const DRIP = { kind: 'drip', intervalMs: 1000 } as const;

let work: string;
let faults: FaultRegistry;
let rejected: BuiltImage;
let small: BuiltImage;
let server: RunningPullguard;

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'pullguard-drip-'));
  faults = await startFaultRegistry();
  rejected = await buildOciImage(join(work, 'rejected'), { tag: 'v1', seed: 81, layers: [{ size: 100 }] });
  small = await buildOciImage(join(work, 'small'), { tag: 'v1', seed: 82, layers: [{ size: 10 }] });
  faults.addImage('rejected', 'v1', rejected);
  faults.addImage('small', 'v1', small);
  const policy = join(work, 'policy.json');
  await writeFile(
    policy,
    JSON.stringify({ default: [{ type: 'insecureAcceptAnything' }], transports: { docker: { [`${faults.host}/rejected`]: [{ type: 'reject' }] } } }),
  );
  server = await startPullguard({ args: ['--signature-policy', policy, '--insecure-registry', faults.host, '--registry-read-timeout', `${READ_MS}ms`] });
}, 60_000);

afterAll(async () => {
  await server?.stop();
  await faults?.stop();
  await rm(work, { recursive: true, force: true });
});

async function pullFailure(image: string): Promise<{ err: grpc.ServiceError; ms: number }> {
  const started = Date.now();
  try {
    // The client's own deadline only keeps a regression from hanging the suite.
    await server.client.call('PullImage', { image: { image } }, { deadlineMs: READ_MS + 2 * SLACK_MS });
  } catch (err) {
    return { err: err as grpc.ServiceError, ms: Date.now() - started };
  }
  throw new Error(`${image} was pulled`);
}

describe('PullImage against a dripping registry', () => {
  it(
    'fails RegistryUnavailable within the read bound, for a dripped manifest (reject scope) and a dripped 200-byte-class blob',
    async () => {
      faults.fault('rejected:v1', DRIP);
      faults.fault(small.layers[0]!.digest, DRIP);
      expect(small.layers[0]!.size).toBeLessThan(1024);
      // Concurrently: one bound's wait for both sequences.
      const [manifest, blob] = await Promise.all([pullFailure(`${faults.host}/rejected:v1`), pullFailure(`${faults.host}/small:v1`)]);

      expect(manifest.err.code).toBe(grpc.status.UNKNOWN);
      expect(manifest.err.details).toBe(
        `RegistryUnavailable: registry ${faults.host} is unavailable: response not complete within ${READ_MS / 1000} s (manifest ${faults.host}/rejected:v1)`,
      );
      expect(manifest.ms).toBeGreaterThanOrEqual(READ_MS - 100);
      expect(manifest.ms).toBeLessThan(READ_MS + SLACK_MS);

      expect(blob.err.code).toBe(grpc.status.UNKNOWN);
      expect(blob.err.details).toMatch(
        new RegExp(
          `^RegistryUnavailable: registry ${faults.host} is unavailable: transfer slower than the minimum \\d+ KiB/s after a ${READ_MS / 1000} s allowance \\(blob ${faults.host}/small@${small.layers[0]!.digest}\\)$`,
        ),
      );
      expect(blob.ms).toBeLessThan(READ_MS + SLACK_MS);
    },
    2 * (READ_MS + 2 * SLACK_MS),
  );
});
