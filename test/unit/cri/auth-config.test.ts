import { describe, expect, it } from 'vitest';
import { isPullguardError } from '../../../src/domain/errors.js';
import { credentialsFromAuthConfig } from '../../../src/cri/auth-config.js';

describe('credentialsFromAuthConfig', () => {
  it.each([
    ['nothing', null, undefined],
    ['empty fields', { username: '', password: '' }, undefined],
    ['username/password', { username: 'alice', password: 's3cret' }, { username: 'alice', password: 's3cret' }],
    ['base64 auth', { auth: Buffer.from('bob:pa:ss').toString('base64') }, { username: 'bob', password: 'pa:ss' }],
    [
      'explicit username wins over auth',
      { username: 'carol', password: 'x', auth: Buffer.from('bob:y').toString('base64') },
      { username: 'carol', password: 'x' },
    ],
    ['identity token', { identity_token: 'refresh-1' }, { identityToken: 'refresh-1' }],
    ['registry token', { registry_token: 'bearer-1' }, { registryToken: 'bearer-1' }],
  ])('%s', (_name, input, expected) => {
    expect(credentialsFromAuthConfig(input as never)).toEqual(expected);
  });

  it('refuses a malformed auth field without echoing it', () => {
    let thrown: unknown;
    try {
      credentialsFromAuthConfig({ auth: Buffer.from('no-colon-secret').toString('base64') });
    } catch (err) {
      thrown = err;
    }
    expect(isPullguardError(thrown, 'INVALID_ARGUMENT')).toBe(true);
    expect(String((thrown as Error).message)).not.toContain('no-colon-secret');
    expect(String((thrown as Error).message)).not.toContain(Buffer.from('no-colon-secret').toString('base64'));
  });
});
