import { PullguardError } from '../domain/errors.js';
import type { RegistryCredentials } from '../pull/ports.js';
import type { AuthConfig } from './cri-types.js';

/**
 * CRI AuthConfig → credentials. `auth` is base64("user:password") as in docker config files and
 * crictl --auth; explicit username/password win over it, as in containerd's ParseAuth.
 * Error messages never include any of the values.
 */
export function credentialsFromAuthConfig(auth: AuthConfig | null | undefined): RegistryCredentials | undefined {
  if (auth === null || auth === undefined) return undefined;
  let username = auth.username ?? '';
  let password = auth.password ?? '';
  if (username === '' && (auth.auth ?? '') !== '') {
    const decoded = Buffer.from(auth.auth ?? '', 'base64').toString('utf8');
    const colon = decoded.indexOf(':');
    if (colon <= 0 || !/^[A-Za-z0-9+/=\s]+$/.test(auth.auth ?? '')) {
      throw new PullguardError('INVALID_ARGUMENT', 'invalid auth: the auth field must be base64 of "username:password"');
    }
    username = decoded.slice(0, colon);
    password = decoded.slice(colon + 1).replace(/\n$/, '');
  }
  const credentials: { -readonly [K in keyof RegistryCredentials]: RegistryCredentials[K] } = {};
  if (username !== '') credentials.username = username;
  if (password !== '') credentials.password = password;
  if ((auth.identity_token ?? '') !== '') credentials.identityToken = auth.identity_token;
  if ((auth.registry_token ?? '') !== '') credentials.registryToken = auth.registry_token;
  return Object.keys(credentials).length === 0 ? undefined : credentials;
}
