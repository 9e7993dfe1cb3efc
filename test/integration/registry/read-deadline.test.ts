/**
 * Every registry read has an overall bound, not only an idle timeout: a registry that drips a
 * manifest, the ping or a blob a byte at a time (never idle long enough for the idle timeout) fails
 * the read with REGISTRY_UNAVAILABLE within the configured bound, while an honest blob that takes
 * longer than the allowance but keeps the minimum rate still arrives. Small bounds; generous slack.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isPullguardError, type PullguardError } from '../../../src/domain/errors.js';
import { parseReference } from '../../../src/domain/reference.js';
import { createRegistryClient, type RegistryClientOptions } from '../../../src/registry/client.js';
import { startFaultRegistry, type FaultRegistry } from '../../helpers/fault-registry.js';
import { MemoryBlobWriter } from '../../helpers/memory-blob-writer.js';
import { buildOciImage, type BuiltImage } from '../../helpers/oci-image.js';

/** The overall bound configured in these tests; the idle timeout is longer than every drip gap. */
const READ_MS = 1000;
const IDLE_MS = 2000;
/** A loaded 2-core CI machine; still far below what a drip would take without a bound. */
const SLACK_MS = 3000;
/** One byte every 100 ms: a manifest of a few hundred bytes would take most of a minute. */
const DRIP = { kind: 'drip', intervalMs: 100 } as const;

let reg: FaultRegistry;
let image: BuiltImage;
let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'pullguard-deadline-'));
  image = await buildOciImage(dir, { tag: 'v1', seed: 71, layers: [{ size: 300_000 }, { size: 10 }] });
  reg = await startFaultRegistry();
  reg.addImage('app', 'v1', image);
});

afterAll(async () => {
  await reg.stop();
  await rm(dir, { recursive: true, force: true });
});

function client(extra: Partial<RegistryClientOptions> = {}) {
  return createRegistryClient({
    platform: { os: 'linux', architecture: 'amd64' },
    insecureRegistries: [reg.host],
    timeouts: { connectMs: 1000, headersMs: IDLE_MS, bodyIdleMs: IDLE_MS, readMs: READ_MS },
    retry: { maxAttempts: 3, baseDelayMs: 5, maxDelayMs: 20 },
    ...extra,
  });
}

/** The coded error `p` rejects with and how long it took; fails (without waiting) once it has run `limitMs`. */
async function failsWithin(p: Promise<unknown>, limitMs: number): Promise<{ err: PullguardError; ms: number }> {
  const started = Date.now();
  let timer: NodeJS.Timeout | undefined;
  const limit = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`still running after ${limitMs} ms`)), limitMs);
  });
  try {
    await Promise.race([p, limit]);
  } catch (err) {
    if (isPullguardError(err)) return { err, ms: Date.now() - started };
    throw err;
  } finally {
    clearTimeout(timer);
  }
  throw new Error('expected a failure');
}

describe('overall deadlines on registry reads', () => {
  it('a manifest dripped a byte at a time fails REGISTRY_UNAVAILABLE within the read bound', async () => {
    const c = client();
    reg.fault('app:v1', DRIP);
    const { err, ms } = await failsWithin(c.resolve(parseReference(`${reg.host}/app:v1`), {}), READ_MS + SLACK_MS);
    expect(err.code).toBe('REGISTRY_UNAVAILABLE');
    expect(err.message).toBe(`registry ${reg.host} is unavailable: response not complete within 1 s (manifest ${reg.host}/app:v1)`);
    expect(err.facts).toMatchObject({ transport: 'deadline', kind: 'manifest', allowanceMs: READ_MS });
    expect(err.facts.receivedBytes).toBeGreaterThan(0); // it was dripping, not stalled
    expect(ms).toBeGreaterThanOrEqual(READ_MS - 50);
    reg.clearFaults('app:v1');
    await c.close();
  });

  it('a dripped attachment manifest (fetchManifestByTag) is bounded the same way', async () => {
    const c = client();
    const resolved = await c.resolve(parseReference(`${reg.host}/app:v1`), {});
    const tag = `sha256-${image.manifestDigest.slice(7)}.sig`;
    reg.addManifest('app', tag, image.manifest.bytes, image.manifest.mediaType);
    reg.fault(`app:${tag}`, DRIP);
    const { err } = await failsWithin(c.fetchManifestByTag(resolved, tag, {}), READ_MS + SLACK_MS);
    expect(err.code).toBe('REGISTRY_UNAVAILABLE');
    expect(err.message).toContain(`(manifest ${reg.host}/app:${tag})`);
    reg.clearFaults(`app:${tag}`);
    await c.close();
  });

  it('a dripped ping fails every read waiting on it with REGISTRY_UNAVAILABLE, and one caller cancelling does not fail the others', async () => {
    // The ping's wait counts toward the manifest read's bound: a roomier one here.
    const c = client({ timeouts: { connectMs: 1000, headersMs: IDLE_MS, bodyIdleMs: IDLE_MS, readMs: 5000 } });
    reg.fault('/v2/', { kind: 'drip', intervalMs: 200 }); // `{}` in ~600 ms
    const cancelled = new AbortController();
    const first = c.resolve(parseReference(`${reg.host}/app:v1`), { signal: cancelled.signal });
    const second = c.resolve(parseReference(`${reg.host}/app:v1`), {});
    cancelled.abort();
    expect((await failsWithin(first, SLACK_MS)).err.code).toBe('CANCELLED');
    expect((await second).manifestDigest).toBe(image.manifestDigest);
    await c.close();

    const slow = client();
    reg.fault('/v2/', { kind: 'drip', intervalMs: 900 }); // `{}` in ~1.8 s: past the bound
    const { err, ms } = await failsWithin(slow.resolve(parseReference(`${reg.host}/app:v1`), {}), READ_MS + SLACK_MS);
    expect(err.code).toBe('REGISTRY_UNAVAILABLE');
    // The manifest read waiting on the ping and the ping itself share the bound: either may say so.
    expect(err.message).toMatch(
      new RegExp(`^registry ${reg.host} is unavailable: response not complete within 1 s \\((ping ${reg.host}/v2/|manifest ${reg.host}/app:v1)\\)$`),
    );
    expect(ms).toBeGreaterThanOrEqual(READ_MS - 50);
    await slow.close();
  });

  it('a small blob dripped a byte at a time fails below the minimum rate, soon after the allowance', async () => {
    const c = client({ minBlobBytesPerSecond: 1024 });
    const resolved = await c.resolve(parseReference(`${reg.host}/app:v1`), {});
    const layer = resolved.layers[1]!;
    expect(layer.size).toBeLessThan(1024); // the rate adds at most ~1 s to the bound
    reg.fault(layer.digest, DRIP);
    const w = new MemoryBlobWriter(layer);
    const { err, ms } = await failsWithin(c.fetchBlob(resolved, layer, w, {}), READ_MS + 1000 + SLACK_MS);
    expect(err.code).toBe('REGISTRY_UNAVAILABLE');
    expect(err.message).toBe(
      `registry ${reg.host} is unavailable: transfer slower than the minimum 1 KiB/s after a 1 s allowance (blob ${reg.host}/app@${layer.digest})`,
    );
    expect(err.facts).toMatchObject({ transport: 'deadline', kind: 'blob', sizeBytes: layer.size, minBytesPerSecond: 1024 });
    expect(ms).toBeGreaterThanOrEqual(READ_MS - 50);
    expect(w.committed).toBe(false);
    reg.clearFaults(layer.digest);
    await c.close();
  });

  it('a large blob dripped a byte at a time fails soon after the allowance too: its declared size buys no time', async () => {
    const c = client({ minBlobBytesPerSecond: 1024 });
    const resolved = await c.resolve(parseReference(`${reg.host}/app:v1`), {});
    const layer = resolved.layers[0]!;
    reg.fault(layer.digest, DRIP);
    const { err, ms } = await failsWithin(c.fetchBlob(resolved, layer, new MemoryBlobWriter(layer), {}), READ_MS + 1000 + SLACK_MS);
    expect(err.code).toBe('REGISTRY_UNAVAILABLE');
    expect(ms).toBeLessThan(READ_MS + 1000 + SLACK_MS);
    reg.clearFaults(layer.digest);
    await c.close();
  });

  it('a blob that outlasts the allowance but keeps the minimum rate arrives intact', async () => {
    // 16 KiB every 100 ms (~160 KiB/s): ~1.9 s for 300 kB, past the 1 s allowance; ten times the floor.
    const c = client({ minBlobBytesPerSecond: 16 * 1024 });
    const resolved = await c.resolve(parseReference(`${reg.host}/app:v1`), {});
    const layer = resolved.layers[0]!;
    reg.fault(layer.digest, { kind: 'drip', intervalMs: 100, bytes: 16 * 1024 });
    const w = new MemoryBlobWriter(layer);
    const started = Date.now();
    await c.fetchBlob(resolved, layer, w, {});
    expect(Date.now() - started).toBeGreaterThan(READ_MS);
    expect(w.committed).toBe(true);
    expect(w.bytes().equals(Buffer.from(image.layers[0]!.bytes))).toBe(true);
    await c.close();
  });

  it('does not wait for a retry that could not start before the deadline: the failure so far is the answer', async () => {
    const sleeps: number[] = [];
    const c = client({ retry: { maxAttempts: 4, baseDelayMs: 5, maxDelayMs: 20, maxRetryAfterMs: 30_000 }, sleep: async (ms) => void sleeps.push(ms) });
    reg.fault('app:v1', { kind: 'status', status: 503, headers: { 'retry-after': '10' } });
    const { err } = await failsWithin(c.resolve(parseReference(`${reg.host}/app:v1`), {}), SLACK_MS);
    expect(err.code).toBe('REGISTRY_UNAVAILABLE');
    expect(err.message).toContain('HTTP 503');
    expect(sleeps).toEqual([]);
    reg.clearFaults('app:v1');
    await c.close();
  });
});
