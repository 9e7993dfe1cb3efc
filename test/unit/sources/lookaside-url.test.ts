import { describe, expect, it } from 'vitest';
import { isPullguardError } from '../../../src/domain/errors.js';
import { parseReference, type ImageReference } from '../../../src/domain/reference.js';
import { lookasideImageBase, lookasideSignatureUrl, redactUrl } from '../../../src/sources/lookaside-url.js';

const HEX = 'a81e'.padEnd(64, '0');

describe('lookaside URL building', () => {
  it('appends the repository path without host, tag or digest, then @algo=hex/signature-N', () => {
    const base = lookasideImageBase(
      'https://registry.redhat.io/containers/sigstore',
      parseReference('registry.redhat.io/redhat/certified-operator-index:v4.14'),
    );
    expect(lookasideSignatureUrl(base, `sha256:${HEX}`, 2).href).toBe(
      `https://registry.redhat.io/containers/sigstore/redhat/certified-operator-index@sha256=${HEX}/signature-2`,
    );
  });

  it('expands docker.io short names to library/<name>', () => {
    const base = lookasideImageBase('file:///var/lib/containers/sigstore', parseReference('busybox'));
    expect(lookasideSignatureUrl(base, `sha256:${HEX}`, 1).href).toBe(`file:///var/lib/containers/sigstore/library/busybox@sha256=${HEX}/signature-1`);
  });

  it('uses the digest it is given (the platform instance), not the one in the reference', () => {
    const listDigest = `sha256:${'1'.repeat(64)}`;
    const instanceDigest = `sha256:${'2'.repeat(64)}`;
    const base = lookasideImageBase('https://sigs.example', parseReference(`quay.io/a/b@${listDigest}`));
    const url = lookasideSignatureUrl(base, instanceDigest, 1).href;
    expect(url).toBe(`https://sigs.example/a/b@sha256=${'2'.repeat(64)}/signature-1`);
    expect(url).not.toContain('1'.repeat(64));
  });

  it('keeps a base path and query as Go concatenation does', () => {
    const ref = parseReference('localhost:5000/team/app:v1');
    expect(lookasideSignatureUrl(lookasideImageBase('http://127.0.0.1:8080/x/', ref), `sha512:${'f'.repeat(128)}`, 10).pathname).toBe(
      `/x//team/app@sha512=${'f'.repeat(128)}/signature-10`,
    );
    expect(lookasideImageBase('https://cdn.example/s?sig=abc', ref).href).toBe('https://cdn.example/s/team/app?sig=abc');
  });

  it('validates the digest and the index before building anything', () => {
    const base = lookasideImageBase('https://sigs.example', parseReference('quay.io/a/b'));
    for (const bad of ['sha256:../../etc', `sha256:${HEX.toUpperCase()}`, 'md5:abc', HEX]) {
      expect(() => lookasideSignatureUrl(base, bad, 1)).toThrow(expect.objectContaining({ code: 'INVALID_DIGEST' }));
    }
    expect(() => lookasideSignatureUrl(base, `sha256:${HEX}`, 0)).toThrow(/positive integer/);
  });

  it('refuses a repository path that is not clean', () => {
    const forged: ImageReference = { domain: 'quay.io', path: 'a/../../etc', name: 'quay.io/a/../../etc', tag: 'x' };
    try {
      lookasideImageBase('file:///srv/sigstore', forged);
      expect.unreachable();
    } catch (err) {
      expect(isPullguardError(err, 'INVALID_REFERENCE')).toBe(true);
      expect((err as Error).message).toBe('Unexpected path elements in Docker reference quay.io/a/../../etc:x for signature storage');
    }
  });

  it('redacts userinfo and query values', () => {
    expect(redactUrl(new URL('https://u:p@cdn.example/s/signature-1?X-Amz-Signature=secret&a=1'))).toBe(
      'https://cdn.example/s/signature-1?X-Amz-Signature=REDACTED&a=REDACTED',
    );
  });
});
