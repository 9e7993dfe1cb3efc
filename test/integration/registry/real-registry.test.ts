/**
 * The registry client against the real docker-registry (distribution 2.8) with images pushed by the
 * real skopeo: tags, digests, indexes, Docker schema2, htpasswd Basic auth, the Bearer token flow
 * (JWTs verified by the registry against a rootcertbundle), and mirrors.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MEDIA_TYPES } from '../../../src/domain/image.js';
import { parseReference } from '../../../src/domain/reference.js';
import type { RegistryCredentials } from '../../../src/pull/ports.js';
import { parseAuthFile } from '../../../src/registry/auth-file.js';
import { createRegistryClient, fetchConfigBlob, type RegistryClientOptions, type RegistryImageSource } from '../../../src/registry/client.js';
import { parseRegistriesConf } from '../../../src/registry/registries-conf.js';
import { MemoryBlobWriter } from '../../helpers/memory-blob-writer.js';
import { buildOciImage, buildOciIndex, type BuiltImage, type BuiltIndex } from '../../helpers/oci-image.js';
import { freePort, pushImage, pushIndex, startRegistry, type StartedRegistry } from '../../helpers/registry.js';
import { failure } from '../../helpers/expect-failure.js';

let dir: string;
let open: StartedRegistry;
let empty: StartedRegistry;
let basic: StartedRegistry;
let token: StartedRegistry;
let app: BuiltImage;
let multi: BuiltIndex;
const clients: RegistryImageSource[] = [];

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'pullguard-realreg-'));
  app = await buildOciImage(dir, { tag: 'v1', layers: [{ size: 20_000 }, { size: 3000 }, { files: { 'etc/motd': 'hello\n' } }], user: '65532' });
  multi = await buildOciIndex(dir, {
    tag: 'multi',
    platforms: [
      { os: 'linux', architecture: 'amd64' },
      { os: 'linux', architecture: 'arm64', variant: 'v8' },
    ],
  });
  [open, empty] = await Promise.all([startRegistry(), startRegistry()]);
  await pushImage(dir, 'team/app:v1', open, { layoutTag: 'v1' });
  await pushImage(dir, 'team/docker:v1', open, { layoutTag: 'v1', format: 'v2s2' });
  await pushIndex(dir, 'team/multi:v1', open, { layoutTag: 'multi' });
  // The same storage served with auth in front: no second push needed.
  [basic, token] = await Promise.all([
    startRegistry({ auth: 'htpasswd', users: { alice: 'wonderland' }, dataDir: open.dataDir }),
    startRegistry({ tokenAuth: { users: { bob: 'builder' } }, dataDir: open.dataDir }),
  ]);
});

afterAll(async () => {
  await Promise.all(clients.map((c) => c.close()));
  await Promise.all([open, empty, basic, token].map((r) => r?.stop()));
  await rm(dir, { recursive: true, force: true });
});

function client(extra: Partial<RegistryClientOptions> = {}): RegistryImageSource {
  const c = createRegistryClient({
    platform: { os: 'linux', architecture: 'amd64' },
    insecureRegistries: [open.host, empty.host, basic.host, token.host],
    timeouts: { connectMs: 1000, headersMs: 5000, bodyIdleMs: 5000 },
    retry: { maxAttempts: 2, baseDelayMs: 5, maxDelayMs: 10 },
    ...extra,
  });
  clients.push(c);
  return c;
}

async function pullAll(c: RegistryImageSource, ref: string, creds?: RegistryCredentials) {
  const opts = creds === undefined ? {} : { credentials: creds };
  const image = await c.resolve(parseReference(ref), opts);
  const writers = [];
  for (const layer of image.layers) {
    const w = new MemoryBlobWriter(layer);
    await c.fetchBlob(image, layer, w, opts);
    writers.push(w);
  }
  const config = JSON.parse(Buffer.from(await fetchConfigBlob(c, image, opts)).toString()) as { config?: { User?: string }; architecture: string };
  return { image, writers, config };
}

describe('anonymous pulls', () => {
  it('pulls a multi-layer OCI image by tag', async () => {
    const { image, writers, config } = await pullAll(client(), `${open.host}/team/app:v1`);
    expect(image.topDigest).toBe(app.manifestDigest);
    expect(image.manifestDigest).toBe(app.manifestDigest);
    expect(image.topMediaType).toBe(MEDIA_TYPES.ociManifest);
    expect(image.config.digest).toBe(app.configDigest);
    expect(image.layers.map((l) => l.digest)).toEqual(app.layers.map((l) => l.digest));
    expect(writers.every((w) => w.committed)).toBe(true);
    expect(writers.map((w) => w.bytes().length)).toEqual(app.layers.map((l) => l.size));
    expect(config.config?.User).toBe('65532');
    expect(image.physicalReference.name).toBe(`${open.host}/team/app`);
    expect(image.indexBytes).toBeUndefined();
  });

  it('pulls by digest', async () => {
    const image = await client().resolve(parseReference(`${open.host}/team/app@${app.manifestDigest}`), {});
    expect(image.topDigest).toBe(app.manifestDigest);
    expect(image.reference.tag).toBeUndefined();
  });

  it('chooses linux/amd64 from an index', async () => {
    const image = await client().resolve(parseReference(`${open.host}/team/multi:v1`), {});
    expect(image.topDigest).toBe(multi.indexDigest);
    expect(image.topMediaType).toBe(MEDIA_TYPES.ociIndex);
    expect(image.manifestDigest).toBe(multi.images[0]!.manifestDigest);
    expect(image.platform).toEqual({ os: 'linux', architecture: 'amd64' });
    expect(image.indexBytes).toBeDefined();
  });

  it('chooses linux/arm64 (v8 variant matches a variant-less arm64 node) from an index', async () => {
    const c = client({ platform: { os: 'linux', architecture: 'arm64' } });
    const { image, config } = await pullAll(c, `${open.host}/team/multi:v1`);
    expect(image.manifestDigest).toBe(multi.images[1]!.manifestDigest);
    expect(image.layers[0]!.digest).toBe(multi.images[1]!.layers[0]!.digest);
    expect(config.architecture).toBe('arm64');
  });

  it('reports PLATFORM_NOT_FOUND with the available platforms', async () => {
    const c = client({ platform: { os: 'linux', architecture: 's390x' } });
    const err = await failure(c.resolve(parseReference(`${open.host}/team/multi:v1`), {}));
    expect(err.code).toBe('PLATFORM_NOT_FOUND');
    expect(err.message).toContain('linux/amd64, linux/arm64/v8');
  });

  it('pulls a Docker schema2 image', async () => {
    const { image, writers } = await pullAll(client(), `${open.host}/team/docker:v1`);
    expect(image.topMediaType).toBe(MEDIA_TYPES.dockerManifest);
    expect(image.config.mediaType).toBe(MEDIA_TYPES.dockerConfig);
    expect(image.layers.map((l) => l.digest)).toEqual(app.layers.map((l) => l.digest));
    expect(writers.every((w) => w.committed)).toBe(true);
  });

  it('maps an unknown tag and an unknown repository to REGISTRY_NOT_FOUND', async () => {
    const c = client();
    const tag = await failure(c.resolve(parseReference(`${open.host}/team/app:v2`), {}));
    expect(tag.code).toBe('REGISTRY_NOT_FOUND');
    expect(tag.message).toBe(`manifest unknown: ${open.host}/team/app:v2 not found`);
    const repo = await failure(c.resolve(parseReference(`${open.host}/nope/nothing:v1`), {}));
    expect(repo.code).toBe('REGISTRY_NOT_FOUND');
  });

  it('does not speak plain HTTP to a loopback registry unless it is configured insecure', async () => {
    const c = client({ insecureRegistries: [] });
    const err = await failure(c.resolve(parseReference(`${open.host}/team/app:v1`), {}));
    expect(err.code).toBe('REGISTRY_UNAVAILABLE');
  });
});

describe('HTTP Basic (htpasswd)', () => {
  it('pulls with the right password', async () => {
    const { writers } = await pullAll(client(), `${basic.host}/team/app:v1`, { username: 'alice', password: 'wonderland' });
    expect(writers.every((w) => w.committed)).toBe(true);
  });

  it('takes credentials from an auth file when the request has none', async () => {
    const file = parseAuthFile(JSON.stringify({ auths: { [basic.host]: { auth: Buffer.from('alice:wonderland').toString('base64') } } }), 'auth.json');
    const c = client({ authFile: file });
    const image = await c.resolve(parseReference(`${basic.host}/team/app:v1`), {});
    expect(image.manifestDigest).toBe(app.manifestDigest);
  });

  it('a wrong password is REGISTRY_UNAUTHORIZED and the password appears nowhere', async () => {
    const err = await failure(
      client().resolve(parseReference(`${basic.host}/team/app:v1`), { credentials: { username: 'alice', password: 'hunter2-secret' } }),
    );
    expect(err.code).toBe('REGISTRY_UNAUTHORIZED');
    expect(err.message).toContain(`${basic.host}/team/app`);
    expect(JSON.stringify({ m: err.message, f: err.facts, s: err.stack })).not.toContain('hunter2');
  });

  it('no credentials is REGISTRY_UNAUTHORIZED saying none were given', async () => {
    const err = await failure(client().resolve(parseReference(`${basic.host}/team/app:v1`), {}));
    expect(err.code).toBe('REGISTRY_UNAUTHORIZED');
    expect(err.message).toMatch(/no credentials were given/);
  });
});

describe('Bearer token flow (registry verifies RS256 JWTs from a loopback token server)', () => {
  it('gets a scoped token with Basic credentials and pulls', async () => {
    const before = token.token!.requests.length;
    const { writers } = await pullAll(client(), `${token.host}/team/app:v1`, { username: 'bob', password: 'builder' });
    expect(writers.every((w) => w.committed)).toBe(true);
    const seen = token.token!.requests.slice(before);
    // One token for the repository scope, cached for the manifest and all blobs.
    expect(seen).toHaveLength(1);
    expect(seen[0]).toMatchObject({ method: 'GET', service: token.token!.service, scopes: ['repository:team/app:pull'], basicUser: 'bob' });
  });

  it('accepts `access_token`, and refreshes the token after expiry (injected clock)', async () => {
    let now = 1_000_000;
    const c = client({ clock: () => now });
    token.token!.useAccessTokenField = true;
    token.token!.expiresIn = 120;
    try {
      const before = token.token!.requests.length;
      const creds = { username: 'bob', password: 'builder' };
      await c.resolve(parseReference(`${token.host}/team/app:v1`), { credentials: creds });
      await c.resolve(parseReference(`${token.host}/team/app:v1`), { credentials: creds });
      expect(token.token!.requests.length - before).toBe(1);
      now += 115_000; // inside the slack before expiry: a new token is fetched
      await c.resolve(parseReference(`${token.host}/team/app:v1`), { credentials: creds });
      expect(token.token!.requests.length - before).toBe(2);
    } finally {
      token.token!.useAccessTokenField = false;
      token.token!.expiresIn = 300;
    }
  });

  it('exchanges an identity token with the oauth2 refresh_token POST', async () => {
    token.token!.refreshTokens.set('refresh-abc', 'bob');
    const before = token.token!.requests.length;
    const image = await client().resolve(parseReference(`${token.host}/team/app:v1`), { credentials: { identityToken: 'refresh-abc' } });
    expect(image.manifestDigest).toBe(app.manifestDigest);
    expect(token.token!.requests.slice(before)[0]).toMatchObject({ method: 'POST', grantType: 'refresh_token', refreshToken: '<given>' });
  });

  it('uses a registry token as the bearer directly', async () => {
    // Obtain a real token first, then hand it over as registryToken.
    const res = await fetch(`${token.token!.realm}?service=${token.token!.service}&scope=repository:team/app:pull`, {
      headers: { authorization: `Basic ${Buffer.from('bob:builder').toString('base64')}` },
    });
    const { token: jwt } = (await res.json()) as { token: string };
    const before = token.token!.requests.length;
    const image = await client().resolve(parseReference(`${token.host}/team/app:v1`), { credentials: { registryToken: jwt } });
    expect(image.manifestDigest).toBe(app.manifestDigest);
    expect(token.token!.requests.length).toBe(before);
  });

  it('anonymous and wrong-password token requests are REGISTRY_UNAUTHORIZED', async () => {
    const anon = await failure(client().resolve(parseReference(`${token.host}/team/app:v1`), {}));
    expect(anon.code).toBe('REGISTRY_UNAUTHORIZED');
    const wrong = await failure(client().resolve(parseReference(`${token.host}/team/app:v1`), { credentials: { username: 'bob', password: 'nope-secret' } }));
    expect(wrong.code).toBe('REGISTRY_UNAUTHORIZED');
    expect(wrong.message).not.toContain('nope-secret');
  });
});

describe('mirrors from registries.conf', () => {
  it('skips a mirror without the image, pulls from the one that has it; the source (down) is never needed', async () => {
    const dead = `127.0.0.1:${await freePort()}`;
    const registries = parseRegistriesConf(`
[[registry]]
prefix = "registry.example.test/team"
location = "${dead}/team"
insecure = true

[[registry.mirror]]
location = "${empty.host}/cache"
insecure = true

[[registry.mirror]]
location = "${open.host}/team"
insecure = true
`);
    const c = client({ registries, insecureRegistries: [] });
    const { image, writers } = await pullAll(c, 'registry.example.test/team/app:v1');
    expect(image.reference.name).toBe('registry.example.test/team/app');
    expect(image.physicalReference.name).toBe(`${open.host}/team/app`);
    expect(image.physicalReference.tag).toBe('v1');
    expect(writers.every((w) => w.committed)).toBe(true);
  });

  it('reports the source error, mentioning the mirrors tried, when nobody has the image', async () => {
    const registries = parseRegistriesConf(`
[[registry]]
prefix = "registry.example.test"
location = "${open.host}"
insecure = true
[[registry.mirror]]
location = "${empty.host}"
insecure = true
`);
    const err = await failure(client({ registries }).resolve(parseReference('registry.example.test/team/app:v9'), {}));
    expect(err.code).toBe('REGISTRY_NOT_FOUND');
    expect(err.message).toContain(`manifest unknown: ${open.host}/team/app:v9 not found`);
    expect(err.message).toContain(`${empty.host}/team/app`);
  });

  it('a blocked registry is REGISTRY_DENIED without any request', async () => {
    const registries = parseRegistriesConf(`[[registry]]\nlocation = "${open.host}"\nblocked = true\n`);
    const err = await failure(client({ registries }).resolve(parseReference(`${open.host}/team/app:v1`), {}));
    expect(err.code).toBe('REGISTRY_DENIED');
  });
});
