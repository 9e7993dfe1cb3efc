import { describe, expect, it } from 'vitest';
import { ValidationError } from '../../../src/domain/errors.js';
import { lookupCredentials, normaliseAuthKey, parseAuthFile } from '../../../src/registry/auth-file.js';

const b64 = (s: string) => Buffer.from(s).toString('base64');

describe('auth file parsing', () => {
  it('decodes auth, identitytoken and registrytoken; normalises keys', () => {
    const file = parseAuthFile(
      JSON.stringify({
        auths: {
          'https://index.docker.io/v1/': { auth: b64('alice:pa:ss') },
          'quay.io': { identitytoken: 'refresh-1' },
          'quay.io/team/app': { auth: b64('bob:pw') },
          'reg.example:5000': { registrytoken: 'tok' },
          'helper.example': {},
        },
      }),
      'auth.json',
    );
    expect(file.entries.get('docker.io')).toEqual({ username: 'alice', password: 'pa:ss' });
    expect(lookupCredentials(file, 'quay.io', 'team/app')).toEqual({ username: 'bob', password: 'pw' });
    expect(lookupCredentials(file, 'quay.io', 'team/other')).toEqual({ identityToken: 'refresh-1' });
    expect(lookupCredentials(file, 'reg.example:5000', 'x')).toEqual({ registryToken: 'tok' });
    expect(lookupCredentials(file, 'helper.example', 'x')).toBeUndefined();
    expect(lookupCredentials(file, 'other.example', 'x')).toBeUndefined();
  });

  it('normalises legacy keys', () => {
    expect(normaliseAuthKey('https://index.docker.io/v1/')).toBe('docker.io');
    expect(normaliseAuthKey('http://Quay.IO/')).toBe('quay.io');
    expect(normaliseAuthKey('registry-1.docker.io')).toBe('docker.io');
    expect(normaliseAuthKey('host:5000/ns/')).toBe('host:5000/ns');
  });

  it('reports every bad entry at once, naming keys but never secrets', () => {
    let err: unknown;
    try {
      parseAuthFile(JSON.stringify({ auths: { a: { auth: b64('no-colon-secret') }, b: 'x', c: { auth: 5 } } }), 'auth.json');
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ValidationError);
    const v = err as ValidationError;
    expect(v.problems).toHaveLength(3);
    expect(v.message).not.toContain('no-colon-secret');
    expect(v.message).not.toContain(b64('no-colon-secret'));
  });

  it('rejects invalid JSON with INVALID_CONFIG', () => {
    expect(() => parseAuthFile('{', 'auth.json')).toThrow(expect.objectContaining({ code: 'INVALID_CONFIG' }));
  });
});
