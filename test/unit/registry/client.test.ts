/**
 * The registry client on its own: undici's MockAgent stands in for the network (no socket is
 * opened), the clock, sleep and jitter are injected. Covers what the integration suites see only
 * from outside: the auth handshakes, retry and Retry-After, redirects that must not carry
 * credentials to another host, body caps and digest checks.
 */
import { createHash } from 'node:crypto';
import { MockAgent } from 'undici';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Digest } from '../../../src/domain/digest.js';
import { MEDIA_TYPES } from '../../../src/domain/image.js';
import { parseReference } from '../../../src/domain/reference.js';
import { parseAuthFile } from '../../../src/registry/auth-file.js';
import { createRegistryClient, VerifyingBufferWriter, type RegistryClientOptions, type RegistryEvent } from '../../../src/registry/client.js';

const REGISTRY = 'http://reg.test';
const AUTH = 'http://auth.test';
const config = Buffer.from('{"config":{"User":"1000"}}');
const layer = Buffer.from('layer bytes');
const digestOf = (bytes: Uint8Array): Digest => `sha256:${createHash('sha256').update(bytes).digest('hex')}` as Digest;
const manifest = Buffer.from(
  JSON.stringify({
    schemaVersion: 2,
    mediaType: MEDIA_TYPES.ociManifest,
    config: { mediaType: MEDIA_TYPES.ociConfig, digest: digestOf(config), size: config.length },
    layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar', digest: digestOf(layer), size: layer.length }],
  }),
);
const MANIFEST_HEADERS = { 'content-type': MEDIA_TYPES.ociManifest };
const basic = (user: string, password: string): string => `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;

let agent: MockAgent;
let sleeps: number[];
let events: RegistryEvent[];

beforeEach(() => {
  agent = new MockAgent();
  agent.disableNetConnect();
  sleeps = [];
  events = [];
});

afterEach(async () => {
  await agent.close();
});

function client(options: Partial<RegistryClientOptions> = {}) {
  return createRegistryClient({
    platform: { os: 'linux', architecture: 'amd64' },
    dispatcher: agent,
    insecureRegistries: ['reg.test'],
    sleep: async (ms) => {
      sleeps.push(ms);
    },
    random: () => 0.5,
    clock: () => 1_700_000_000_000,
    onEvent: (e) => events.push(e),
    ...options,
  });
}

/** Replies to one request and records its headers. */
function answer(
  origin: string,
  path: string,
  status: number,
  body: Uint8Array | string,
  headers: Record<string, string> = {},
  seen?: Record<string, string>[],
): void {
  agent
    .get(origin)
    .intercept({ path, method: 'GET' })
    .reply((request) => {
      seen?.push(Object.fromEntries(Object.entries(request.headers as Record<string, string>).map(([k, v]) => [k.toLowerCase(), v])));
      return { statusCode: status, data: body, responseOptions: { headers } };
    });
}

const ref = parseReference('reg.test/team/app:v1');

describe('registry client: authentication', () => {
  it("answers a Basic challenge with the request's credentials, learned once from /v2/", async () => {
    const seen: Record<string, string>[] = [];
    answer(REGISTRY, '/v2/', 401, '', { 'www-authenticate': 'Basic realm="reg"' });
    answer(REGISTRY, '/v2/team/app/manifests/v1', 200, manifest, MANIFEST_HEADERS, seen);
    answer(REGISTRY, '/v2/team/app/manifests/v1', 200, manifest, MANIFEST_HEADERS, seen);
    const c = client();
    const credentials = { username: 'alice', password: 's3cret' };
    const image = await c.resolve(ref, { credentials });
    expect(image.manifestDigest).toBe(digestOf(manifest));
    expect(image.config.digest).toBe(digestOf(config));
    await c.resolve(ref, { credentials });
    expect(seen.map((h) => h['authorization'])).toEqual([basic('alice', 's3cret'), basic('alice', 's3cret')]);
    agent.assertNoPendingInterceptors();
    await c.close();
  });

  it('takes a bearer token from the realm with Basic credentials, and reuses it for the next read', async () => {
    const tokenRequests: Record<string, string>[] = [];
    const seen: Record<string, string>[] = [];
    answer(REGISTRY, '/v2/', 401, '', { 'www-authenticate': `Bearer realm="${AUTH}/token",service="reg.test"` });
    answer(
      AUTH,
      '/token?service=reg.test&scope=repository%3Ateam%2Fapp%3Apull',
      200,
      JSON.stringify({ token: 'tok-1', expires_in: 300 }),
      { 'content-type': 'application/json' },
      tokenRequests,
    );
    answer(REGISTRY, '/v2/team/app/manifests/v1', 200, manifest, MANIFEST_HEADERS, seen);
    answer(REGISTRY, '/v2/team/app/manifests/v1', 200, manifest, MANIFEST_HEADERS, seen);
    const c = client();
    const credentials = { username: 'alice', password: 's3cret' };
    await c.resolve(ref, { credentials });
    await c.resolve(ref, { credentials });
    expect(tokenRequests.map((h) => h['authorization'])).toEqual([basic('alice', 's3cret')]);
    expect(seen.map((h) => h['authorization'])).toEqual(['Bearer tok-1', 'Bearer tok-1']);
    await c.close();
  });

  it('uses the auth file when the request carries no credentials', async () => {
    const seen: Record<string, string>[] = [];
    answer(REGISTRY, '/v2/', 401, '', { 'www-authenticate': 'Basic realm="reg"' });
    answer(REGISTRY, '/v2/team/app/manifests/v1', 200, manifest, MANIFEST_HEADERS, seen);
    const authFile = parseAuthFile(JSON.stringify({ auths: { 'reg.test/team': { auth: Buffer.from('bob:file-secret').toString('base64') } } }), 'auth.json');
    const c = client({ authFile });
    await c.resolve(ref, {});
    expect(seen[0]?.['authorization']).toBe(basic('bob', 'file-secret'));
    await c.close();
  });

  it('a rejected password is REGISTRY_UNAUTHORIZED, and the error never carries it', async () => {
    answer(REGISTRY, '/v2/', 401, '', { 'www-authenticate': 'Basic realm="reg"' });
    answer(REGISTRY, '/v2/team/app/manifests/v1', 401, '{"errors":[{"code":"UNAUTHORIZED"}]}', { 'www-authenticate': 'Basic realm="reg"' });
    answer(REGISTRY, '/v2/team/app/manifests/v1', 401, '{"errors":[{"code":"UNAUTHORIZED"}]}', { 'www-authenticate': 'Basic realm="reg"' });
    const c = client();
    const failure = await c.resolve(ref, { credentials: { username: 'alice', password: 'wrong-pw' } }).catch((e: unknown) => e);
    expect(failure).toMatchObject({ code: 'REGISTRY_UNAUTHORIZED', message: 'unauthorized: reg.test rejected the credentials for reg.test/team/app' });
    expect(JSON.stringify(failure)).not.toContain('wrong-pw');
    expect(String((failure as Error).message)).not.toContain('wrong-pw');
    await c.close();
  });
});

describe('registry client: retries, redirects, caps and digests', () => {
  it('retries a 503 after what Retry-After says, then succeeds; the retry is reported', async () => {
    answer(REGISTRY, '/v2/', 200, '');
    answer(REGISTRY, '/v2/team/app/manifests/v1', 503, 'busy', { 'retry-after': '2' });
    answer(REGISTRY, '/v2/team/app/manifests/v1', 200, manifest, MANIFEST_HEADERS);
    const c = client();
    expect((await c.resolve(ref, {})).manifestDigest).toBe(digestOf(manifest));
    expect(sleeps).toEqual([2000]);
    expect(events.filter((e) => e.type === 'retry')).toEqual([expect.objectContaining({ host: 'reg.test', kind: 'manifest', delayMs: 2000 })]);
    await c.close();
  });

  it('gives up after the attempts of its retry policy with RegistryUnavailable', async () => {
    answer(REGISTRY, '/v2/', 200, '');
    for (let i = 0; i < 2; i++) answer(REGISTRY, '/v2/team/app/manifests/v1', 503, 'busy');
    const c = client({ retry: { maxAttempts: 2, baseDelayMs: 100 } });
    await expect(c.resolve(ref, {})).rejects.toMatchObject({ code: 'REGISTRY_UNAVAILABLE' });
    expect(sleeps).toHaveLength(1);
    agent.assertNoPendingInterceptors();
    await c.close();
  });

  it("follows a blob redirect to storage on another host without the registry's credentials", async () => {
    const registrySeen: Record<string, string>[] = [];
    const storageSeen: Record<string, string>[] = [];
    answer(REGISTRY, '/v2/', 401, '', { 'www-authenticate': 'Basic realm="reg"' });
    answer(REGISTRY, '/v2/team/app/manifests/v1', 200, manifest, MANIFEST_HEADERS);
    answer(REGISTRY, `/v2/team/app/blobs/${digestOf(layer)}`, 307, '', { location: 'http://storage.test/blob?sig=abc' }, registrySeen);
    answer('http://storage.test', '/blob?sig=abc', 200, layer, {}, storageSeen);
    const c = client();
    const credentials = { username: 'alice', password: 's3cret' };
    const image = await c.resolve(ref, { credentials });
    const writer = new VerifyingBufferWriter(image.layers[0]!);
    await c.fetchBlob(image, image.layers[0]!, writer, { credentials });
    await writer.commit();
    expect(Buffer.from(writer.bytes())).toEqual(layer);
    expect(registrySeen[0]?.['authorization']).toBe(basic('alice', 's3cret'));
    expect(storageSeen[0]?.['authorization']).toBeUndefined();
    await c.close();
  });

  it('refuses a redirect to another scheme', async () => {
    answer(REGISTRY, '/v2/', 200, '');
    answer(REGISTRY, '/v2/team/app/manifests/v1', 302, '', { location: 'file:///etc/passwd' });
    const c = client();
    await expect(c.resolve(ref, {})).rejects.toMatchObject({ code: 'REGISTRY_PROTOCOL' });
    await c.close();
  });

  it('refuses a manifest over its byte cap (declared or streamed) with TOO_LARGE', async () => {
    answer(REGISTRY, '/v2/', 200, '');
    answer(REGISTRY, '/v2/team/app/manifests/v1', 200, manifest, MANIFEST_HEADERS);
    const c = client({ maxManifestBytes: 64 });
    await expect(c.resolve(ref, {})).rejects.toMatchObject({ code: 'TOO_LARGE' });
    await c.close();
  });

  it('refuses other bytes under a pinned digest with DIGEST_MISMATCH', async () => {
    const pinned = `sha256:${'e'.repeat(64)}`;
    answer(REGISTRY, '/v2/', 200, '');
    answer(REGISTRY, `/v2/team/app/manifests/${pinned}`, 200, manifest, MANIFEST_HEADERS);
    const c = client();
    await expect(c.resolve(parseReference(`reg.test/team/app@${pinned}`), {})).rejects.toMatchObject({ code: 'DIGEST_MISMATCH' });
    await c.close();
  });

  it('refuses a blob whose bytes do not match its digest', async () => {
    answer(REGISTRY, '/v2/', 200, '');
    answer(REGISTRY, '/v2/team/app/manifests/v1', 200, manifest, MANIFEST_HEADERS);
    answer(REGISTRY, `/v2/team/app/blobs/${digestOf(layer)}`, 200, Buffer.from('other bytes'));
    const c = client();
    const image = await c.resolve(ref, {});
    const writer = new VerifyingBufferWriter(image.layers[0]!);
    const failure = await c
      .fetchBlob(image, image.layers[0]!, writer, {})
      .then(() => writer.commit())
      .catch((e: unknown) => e);
    expect(failure).toMatchObject({ code: expect.stringMatching(/DIGEST_MISMATCH|SIZE_MISMATCH/) });
    await c.close();
  });
});
