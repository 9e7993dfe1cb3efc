import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseReference } from '../../../src/domain/reference.js';
import { createRegistryClient, fetchConfigBlob, type RegistryClientOptions, type RegistryEvent } from '../../../src/registry/client.js';
import { freePort } from '../../helpers/registry.js';
import { startFaultRegistry, type FaultRegistry } from '../../helpers/fault-registry.js';
import { MemoryBlobWriter } from '../../helpers/memory-blob-writer.js';
import { buildOciImage, type BuiltImage } from '../../helpers/oci-image.js';
import { failure } from '../../helpers/expect-failure.js';

let reg: FaultRegistry;
let image: BuiltImage;
let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'pullguard-faults-'));
  // One big layer (streamed in several chunks) and one small.
  image = await buildOciImage(dir, { tag: 'v1', layers: [{ size: 300_000 }, { size: 1000 }], user: '1000:1000' });
  reg = await startFaultRegistry();
  reg.addImage('app', 'v1', image);
});

afterAll(async () => {
  await reg.stop();
  await rm(dir, { recursive: true, force: true });
});

function client(extra: Partial<RegistryClientOptions> = {}, events: RegistryEvent[] = [], sleeps: number[] = []) {
  return createRegistryClient({
    platform: { os: 'linux', architecture: 'amd64' },
    insecureRegistries: [reg.host],
    timeouts: { connectMs: 500, headersMs: 500, bodyIdleMs: 300 },
    retry: { maxAttempts: 3, baseDelayMs: 5, maxDelayMs: 20 },
    onEvent: (e) => events.push(e),
    sleep: async (ms) => {
      sleeps.push(ms);
    },
    ...extra,
  });
}

const big = () => image.layers[0]!;

describe('blob faults against a protocol-speaking fake registry', () => {
  it('resolves and streams a blob in several writes, then commits it', async () => {
    const c = client();
    const resolved = await c.resolve(parseReference(`${reg.host}/app:v1`), {});
    expect(resolved.manifestDigest).toBe(image.manifestDigest);
    const layer = resolved.layers[0]!;
    const w = new MemoryBlobWriter(layer);
    await c.fetchBlob(resolved, layer, w, {});
    expect(w.committed).toBe(true);
    expect(w.bytes().equals(Buffer.from(big().bytes))).toBe(true);
    expect(w.writes.length).toBeGreaterThan(1);
    const config = JSON.parse(Buffer.from(await fetchConfigBlob(c, resolved, {})).toString()) as { config: { User: string } };
    expect(config.config.User).toBe('1000:1000');
    await c.close();
  });

  it('a corrupted blob fails DIGEST_MISMATCH and nothing is committed', async () => {
    const c = client();
    const resolved = await c.resolve(parseReference(`${reg.host}/app:v1`), {});
    reg.fault(big().digest, { kind: 'corrupt' });
    const w = new MemoryBlobWriter(resolved.layers[0]!);
    const err = await failure(c.fetchBlob(resolved, resolved.layers[0]!, w, {}));
    expect(err.code).toBe('DIGEST_MISMATCH');
    expect(w.committed).toBe(false);
    expect(w.bytes().length).toBe(0);
    await c.close();
  });

  it('a truncated blob (short Content-Length) fails SIZE_MISMATCH and nothing is committed', async () => {
    const c = client();
    const resolved = await c.resolve(parseReference(`${reg.host}/app:v1`), {});
    reg.fault(big().digest, { kind: 'truncate', bytes: 1000 });
    const w = new MemoryBlobWriter(resolved.layers[0]!);
    const err = await failure(c.fetchBlob(resolved, resolved.layers[0]!, w, {}));
    expect(err.code).toBe('SIZE_MISMATCH');
    expect(w.committed).toBe(false);
    await c.close();
  });

  it('a connection reset mid-blob resumes with Range from the writer offset', async () => {
    const events: RegistryEvent[] = [];
    const c = client({}, events);
    const resolved = await c.resolve(parseReference(`${reg.host}/app:v1`), {});
    reg.fault(big().digest, { kind: 'reset-after', bytes: 100_000 });
    const before = reg.requests.length;
    const w = new MemoryBlobWriter(resolved.layers[0]!);
    await c.fetchBlob(resolved, resolved.layers[0]!, w, {});
    expect(w.committed).toBe(true);
    const ranges = reg.requests
      .slice(before)
      .filter((r) => r.path.endsWith(big().digest))
      .map((r) => r.range);
    expect(ranges[0]).toBeUndefined();
    expect(ranges[1]).toMatch(/^bytes=\d+-$/);
    const resumedAt = Number(/bytes=(\d+)-/.exec(ranges[1]!)![1]);
    expect(resumedAt).toBeGreaterThan(0);
    expect(resumedAt).toBeLessThanOrEqual(100_000);
    expect(events.some((e) => e.type === 'resume' && e.status === 206 && e.offset === resumedAt)).toBe(true);
    await c.close();
  });

  it('a server that answers a resume with 200 (ignoring Range) is handled by skipping the held bytes', async () => {
    const events: RegistryEvent[] = [];
    const c = client({}, events);
    const resolved = await c.resolve(parseReference(`${reg.host}/app:v1`), {});
    reg.fault(big().digest, { kind: 'reset-after', bytes: 50_000 }, { kind: 'ignore-range' });
    const w = new MemoryBlobWriter(resolved.layers[0]!);
    await c.fetchBlob(resolved, resolved.layers[0]!, w, {});
    expect(w.committed).toBe(true);
    expect(w.bytes().equals(Buffer.from(big().bytes))).toBe(true);
    expect(events.some((e) => e.type === 'resume' && e.status === 200)).toBe(true);
    await c.close();
  });

  it('503 then success is retried with backoff', async () => {
    const events: RegistryEvent[] = [];
    const c = client({}, events);
    const resolved = await c.resolve(parseReference(`${reg.host}/app:v1`), {});
    reg.fault(big().digest, { kind: 'status', status: 503 });
    const w = new MemoryBlobWriter(resolved.layers[0]!);
    await c.fetchBlob(resolved, resolved.layers[0]!, w, {});
    expect(w.committed).toBe(true);
    expect(events.filter((e) => e.type === 'retry' && e.reason === 'HTTP 503')).toHaveLength(1);
    await c.close();
  });

  it('429 honours Retry-After, and gives up with REGISTRY_TOO_MANY_REQUESTS after the attempts', async () => {
    const sleeps: number[] = [];
    const c = client({}, [], sleeps);
    const resolved = await c.resolve(parseReference(`${reg.host}/app:v1`), {});
    reg.fault(big().digest, { kind: 'status', status: 429, headers: { 'retry-after': '2' } });
    const w = new MemoryBlobWriter(resolved.layers[0]!);
    await c.fetchBlob(resolved, resolved.layers[0]!, w, {});
    expect(sleeps).toEqual([2000]);

    const tooMany = { kind: 'status', status: 429, headers: { 'retry-after': '1' } } as const;
    reg.fault(big().digest, tooMany, tooMany, tooMany);
    const w2 = new MemoryBlobWriter(resolved.layers[0]!);
    const err = await failure(c.fetchBlob(resolved, resolved.layers[0]!, w2, {}));
    expect(err.code).toBe('REGISTRY_TOO_MANY_REQUESTS');
    expect(err.message).toContain(reg.host);
    expect(err.facts.status).toBe(429);
    expect(w2.committed).toBe(false);
    await c.close();
  });

  it('5xx on every attempt is REGISTRY_UNAVAILABLE with host and status', async () => {
    const c = client();
    const resolved = await c.resolve(parseReference(`${reg.host}/app:v1`), {});
    const e502 = { kind: 'status', status: 502 } as const;
    reg.fault(big().digest, e502, e502, e502);
    const w = new MemoryBlobWriter(resolved.layers[0]!);
    const err = await failure(c.fetchBlob(resolved, resolved.layers[0]!, w, {}));
    expect(err.code).toBe('REGISTRY_UNAVAILABLE');
    expect(err.message).toMatch(/HTTP 502 after 3 attempts/);
    expect(err.facts).toMatchObject({ host: reg.host, repository: 'app', status: 502 });
    await c.close();
  });

  it('a blob server that stalls is timed out with a clear error, nothing committed', async () => {
    const c = client({ retry: { maxAttempts: 1 } });
    const resolved = await c.resolve(parseReference(`${reg.host}/app:v1`), {});
    reg.fault(big().digest, { kind: 'stall-after', bytes: 10_000 });
    const w = new MemoryBlobWriter(resolved.layers[0]!);
    const started = Date.now();
    const err = await failure(c.fetchBlob(resolved, resolved.layers[0]!, w, {}));
    expect(err.code).toBe('REGISTRY_UNAVAILABLE');
    expect(err.message).toMatch(/timed out waiting for response body/);
    expect(err.facts.transport).toBe('body-timeout');
    expect(Date.now() - started).toBeLessThan(5000);
    expect(w.committed).toBe(false);
    await c.close();
  });

  it('an abort signal cancels a stalled download', async () => {
    const c = client({ timeouts: { bodyIdleMs: 10_000 } });
    const resolved = await c.resolve(parseReference(`${reg.host}/app:v1`), {});
    reg.fault(big().digest, { kind: 'stall-after', bytes: 10_000 });
    const w = new MemoryBlobWriter(resolved.layers[0]!);
    const ac = new AbortController();
    setTimeout(() => ac.abort(), 100);
    const err = await failure(c.fetchBlob(resolved, resolved.layers[0]!, w, { signal: ac.signal }));
    expect(err.code).toBe('CANCELLED');
    expect(w.committed).toBe(false);
    await c.close();
  });

  it('connection refused is REGISTRY_UNAVAILABLE naming the host', async () => {
    const port = await freePort();
    const host = `127.0.0.1:${port}`;
    const c = client({ insecureRegistries: [host] });
    const err = await failure(c.resolve(parseReference(`${host}/app:v1`), {}));
    expect(err.code).toBe('REGISTRY_UNAVAILABLE');
    expect(err.message).toContain(`registry ${host} is unavailable: connection refused`);
    expect(err.facts.transport).toBe('refused');
    await c.close();
  });

  it('an unknown tag is REGISTRY_NOT_FOUND with the reference in the message', async () => {
    const c = client();
    const err = await failure(c.resolve(parseReference(`${reg.host}/app:v2`), {}));
    expect(err.code).toBe('REGISTRY_NOT_FOUND');
    expect(err.message).toBe(`manifest unknown: ${reg.host}/app:v2 not found`);
    expect(err.facts).toMatchObject({ host: reg.host, repository: 'app', status: 404 });
    await c.close();
  });

  it('a manifest over the 4 MiB cap is rejected TOO_LARGE', async () => {
    const huge = Buffer.alloc(4 * 1024 * 1024 + 10, 0x20);
    reg.addManifest('huge', 'v1', huge, 'application/vnd.oci.image.manifest.v1+json');
    const c = client();
    const err = await failure(c.resolve(parseReference(`${reg.host}/huge:v1`), {}));
    expect(err.code).toBe('TOO_LARGE');
    await c.close();
  });

  it('a manifest that does not match the requested digest is DIGEST_MISMATCH', async () => {
    const other = Buffer.from(image.manifest.bytes);
    // Serve the real manifest under a digest key it does not hash to.
    const wrong = `sha256:${'ab'.repeat(32)}`;
    reg.addManifest('liar', wrong, other, 'application/vnd.oci.image.manifest.v1+json');
    const c = client();
    const err = await failure(c.resolve(parseReference(`${reg.host}/liar@${wrong}`), {}));
    expect(err.code).toBe('DIGEST_MISMATCH');
    expect(err.message).toContain(image.manifestDigest);
    await c.close();
  });

  it('schema1 manifests are rejected MANIFEST_UNSUPPORTED with a clear message', async () => {
    const schema1 = Buffer.from(JSON.stringify({ schemaVersion: 1, name: 'old', tag: 'v1', fsLayers: [], history: [] }));
    reg.addManifest('old', 'v1', schema1, 'application/vnd.docker.distribution.manifest.v1+prettyjws');
    const c = client();
    const err = await failure(c.resolve(parseReference(`${reg.host}/old:v1`), {}));
    expect(err.code).toBe('MANIFEST_UNSUPPORTED');
    expect(err.message).toMatch(/schema1/);
    await c.close();
  });

  it('a mirror that is unreachable falls through to the next source', async () => {
    const { parseRegistriesConf } = await import('../../../src/registry/registries-conf.js');
    const dead = `127.0.0.1:${await freePort()}`;
    const registries = parseRegistriesConf(
      `[[registry]]\nprefix = "example.test"\nlocation = "${reg.host}"\ninsecure = true\n[[registry.mirror]]\nlocation = "${dead}"\ninsecure = true\n`,
    );
    const events: RegistryEvent[] = [];
    const c = client({ registries }, events);
    const resolved = await c.resolve(parseReference('example.test/app:v1'), {});
    expect(resolved.physicalReference.domain).toBe(reg.host);
    expect(resolved.reference.domain).toBe('example.test');
    expect(events).toContainEqual({ type: 'source-failed', host: dead, repository: 'app', mirror: true, code: 'REGISTRY_UNAVAILABLE' });
    await c.close();
  });

  it('follows a blob redirect to another host without forwarding Authorization', async () => {
    const guarded = await startFaultRegistry({ basic: { username: 'u', password: 'top-secret' } });
    const storage = await startFaultRegistry();
    try {
      guarded.addImage('app', 'v1', image);
      storage.addBlob(big().bytes);
      guarded.fault(big().digest, { kind: 'redirect', location: `${storage.url}/v2/storage/blobs/${big().digest}?sig=abc` });
      const c = client({ insecureRegistries: [guarded.host] });
      const creds = { username: 'u', password: 'top-secret' };
      const resolved = await c.resolve(parseReference(`${guarded.host}/app:v1`), { credentials: creds });
      const w = new MemoryBlobWriter(resolved.layers[0]!);
      await c.fetchBlob(resolved, resolved.layers[0]!, w, { credentials: creds });
      expect(w.committed).toBe(true);
      expect(guarded.requests.some((r) => r.path.endsWith(big().digest) && r.authorization !== undefined)).toBe(true);
      const atStorage = storage.requests.filter((r) => r.path.endsWith(big().digest));
      expect(atStorage).toHaveLength(1);
      expect(atStorage[0]!.authorization).toBeUndefined();
      await c.close();
    } finally {
      await guarded.stop();
      await storage.stop();
    }
  });
});
