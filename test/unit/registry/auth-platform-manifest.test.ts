import { describe, expect, it } from 'vitest';
import { MEDIA_TYPES, type Descriptor } from '../../../src/domain/image.js';
import { credentialIdentity, parseTokenResponse, parseWwwAuthenticate, TokenCache, tokenRequest } from '../../../src/registry/bearer-auth.js';
import { parseManifest } from '../../../src/registry/manifest.js';
import { platformForNodeArch, selectInstance } from '../../../src/registry/platform.js';
import { classifyTransportError, statusError } from '../../../src/registry/registry-errors.js';

describe('WWW-Authenticate', () => {
  it('parses a Bearer challenge with quoted, escaped and comma-containing values', () => {
    expect(parseWwwAuthenticate('Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull,push"')).toEqual([
      { scheme: 'bearer', params: { realm: 'https://auth.example/token', service: 'registry.example', scope: 'repository:a/b:pull,push' } },
    ]);
    expect(parseWwwAuthenticate('Basic realm="a \\"quoted\\" realm", Bearer realm=https://t.example/x')).toEqual([
      { scheme: 'basic', params: { realm: 'a "quoted" realm' } },
      { scheme: 'bearer', params: { realm: 'https://t.example/x' } },
    ]);
  });

  it('builds GET token requests with Basic, and POST refresh_token requests for identity tokens', () => {
    const challenge = { scheme: 'bearer', params: { realm: 'https://auth.example/token', service: 'svc' } };
    const get = tokenRequest(challenge, 'repository:a/b:pull', { username: 'u', password: 'p' }, 'pullguard');
    expect(get.method).toBe('GET');
    expect(get.url.toString()).toBe('https://auth.example/token?service=svc&scope=repository%3Aa%2Fb%3Apull');
    expect(get.headers.authorization).toBe(`Basic ${Buffer.from('u:p').toString('base64')}`);
    expect(get.url.toString()).not.toContain('p@');
    const post = tokenRequest(challenge, 'repository:a/b:pull', { identityToken: 'r1' }, 'pullguard');
    expect(post.method).toBe('POST');
    expect(new URLSearchParams(post.body).get('grant_type')).toBe('refresh_token');
    expect(new URLSearchParams(post.body).get('refresh_token')).toBe('r1');
    expect(post.url.search).toBe('');
    expect(() => tokenRequest({ scheme: 'bearer', params: { realm: 'file:///etc/passwd' } }, 's', undefined, 'x')).toThrow(
      expect.objectContaining({ code: 'REGISTRY_PROTOCOL' }),
    );
  });

  it('caches tokens until expiry minus slack (60 s default)', () => {
    let now = 0;
    const cache = new TokenCache(() => now);
    cache.set('k', 't', undefined);
    now = 49_999;
    expect(cache.get('k')).toBe('t');
    now = 50_000;
    expect(cache.get('k')).toBeUndefined();
    expect(parseTokenResponse(Buffer.from('{"access_token":"a","expires_in":300}'), 'h')).toEqual({ token: 'a', expiresIn: 300 });
    expect(() => parseTokenResponse(Buffer.from('{}'), 'h')).toThrow(expect.objectContaining({ code: 'REGISTRY_PROTOCOL' }));
  });

  it('credential identities differ per credential and do not contain the secret', () => {
    const a = credentialIdentity({ username: 'u', password: 'secret-1' });
    expect(a).not.toBe(credentialIdentity({ username: 'u', password: 'secret-2' }));
    expect(a).not.toContain('secret');
    expect(credentialIdentity(undefined)).toBe('anonymous');
  });
});

const d = (platform: Descriptor['platform'], n: number): Descriptor => ({
  mediaType: MEDIA_TYPES.ociManifest,
  digest: `sha256:${String(n).repeat(64)}` as Descriptor['digest'],
  size: 1,
  ...(platform ? { platform } : {}),
});

describe('platform selection', () => {
  const index = [
    d({ os: 'unknown', architecture: 'unknown' }, 1),
    d({ os: 'linux', architecture: 'amd64' }, 2),
    d({ os: 'linux', architecture: 'arm64', variant: 'v8' }, 3),
    d({ os: 'linux', architecture: 'arm', variant: 'v6' }, 4),
    d({ os: 'linux', architecture: 'arm', variant: 'v7' }, 5),
    d({ os: 'windows', architecture: 'amd64' }, 6),
  ];
  it.each([
    [{ os: 'linux', architecture: 'amd64' }, 2],
    [{ os: 'linux', architecture: 'arm64' }, 3],
    [{ os: 'linux', architecture: 'aarch64' }, 3],
    [{ os: 'linux', architecture: 'arm', variant: 'v7' }, 5],
    [{ os: 'linux', architecture: 'arm', variant: 'v8' }, 5],
    [{ os: 'windows', architecture: 'x86_64' }, 6],
  ])('%j → instance %i', (wanted, n) => {
    expect(selectInstance(index, wanted)?.digest).toBe(`sha256:${String(n).repeat(64)}`);
  });
  it('arm/v6 node takes v6 and never v7; s390x finds nothing', () => {
    expect(selectInstance(index, { os: 'linux', architecture: 'arm', variant: 'v6' })?.digest).toBe(`sha256:${'4'.repeat(64)}`);
    expect(
      selectInstance(
        index.filter((x) => x.platform?.variant !== 'v6'),
        { os: 'linux', architecture: 'arm', variant: 'v6' },
      ),
    ).toBeUndefined();
    expect(selectInstance(index, { os: 'linux', architecture: 's390x' })).toBeUndefined();
  });
  it('maps process.arch values', () => {
    expect(platformForNodeArch('x64')).toEqual({ os: 'linux', architecture: 'amd64' });
    expect(platformForNodeArch('arm64')).toEqual({ os: 'linux', architecture: 'arm64', variant: 'v8' });
  });
});

describe('manifest parsing', () => {
  const cfg = { mediaType: MEDIA_TYPES.ociConfig, digest: `sha256:${'c'.repeat(64)}`, size: 2 };
  it('infers the media type from the body, then the header', () => {
    const m = parseManifest(Buffer.from(JSON.stringify({ schemaVersion: 2, config: cfg, layers: [] })), undefined, 'x');
    expect(m).toMatchObject({ kind: 'manifest', mediaType: MEDIA_TYPES.ociManifest });
    const i = parseManifest(Buffer.from(JSON.stringify({ schemaVersion: 2, manifests: [] })), MEDIA_TYPES.dockerManifestList, 'x');
    expect(i).toMatchObject({ kind: 'index', mediaType: MEDIA_TYPES.dockerManifestList });
  });
  it('rejects schema1, unknown media types and bad descriptors with specific codes', () => {
    expect(() => parseManifest(Buffer.from('{"schemaVersion":1}'), 'application/json', 'r')).toThrow(expect.objectContaining({ code: 'MANIFEST_UNSUPPORTED' }));
    expect(() => parseManifest(Buffer.from('not json'), MEDIA_TYPES.dockerSchema1Signed, 'r')).toThrow(
      expect.objectContaining({ code: 'MANIFEST_UNSUPPORTED' }),
    );
    expect(() => parseManifest(Buffer.from('{"schemaVersion":2,"mediaType":"application/x-foo"}'), undefined, 'r')).toThrow(
      expect.objectContaining({ code: 'MANIFEST_UNSUPPORTED' }),
    );
    expect(() =>
      parseManifest(Buffer.from(JSON.stringify({ schemaVersion: 2, config: { ...cfg, digest: 'sha256:xyz' }, layers: [] })), undefined, 'r'),
    ).toThrow(expect.objectContaining({ code: 'MANIFEST_INVALID' }));
    expect(() => parseManifest(Buffer.from(JSON.stringify({ schemaVersion: 2, config: { ...cfg, size: -1 }, layers: [] })), undefined, 'r')).toThrow(/size/);
  });
});

describe('error mapping', () => {
  const subject = { host: 'reg.example', repository: 'app', kind: 'manifest' as const, display: 'reg.example/app:v2' };
  it.each([
    [404, '', 'REGISTRY_NOT_FOUND'],
    [400, '{"errors":[{"code":"NAME_UNKNOWN"}]}', 'REGISTRY_NOT_FOUND'],
    [401, '', 'REGISTRY_UNAUTHORIZED'],
    [403, '', 'REGISTRY_DENIED'],
    [429, '', 'REGISTRY_TOO_MANY_REQUESTS'],
    [503, '', 'REGISTRY_UNAVAILABLE'],
    [418, '', 'REGISTRY_PROTOCOL'],
  ])('HTTP %i %s → %s', (status, body, code) => {
    const err = statusError(subject, status, Buffer.from(body));
    expect(err.code).toBe(code);
    expect(err.facts).toMatchObject({ host: 'reg.example', repository: 'app', status });
  });
  it('classifies undici/syscall errors through the cause chain', () => {
    expect(classifyTransportError(Object.assign(new Error('fetch failed'), { cause: Object.assign(new Error('x'), { code: 'ECONNREFUSED' }) }))).toBe(
      'refused',
    );
    expect(
      classifyTransportError(Object.assign(new Error('x'), { code: 'UND_ERR_SOCKET', cause: Object.assign(new Error('y'), { code: 'ECONNRESET' }) })),
    ).toBe('reset');
    expect(classifyTransportError(Object.assign(new Error('x'), { code: 'ENOTFOUND' }))).toBe('dns');
    expect(classifyTransportError(Object.assign(new Error('x'), { code: 'UND_ERR_HEADERS_TIMEOUT' }))).toBe('headers-timeout');
  });
});
