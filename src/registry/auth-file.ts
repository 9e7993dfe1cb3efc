/**
 * Docker-style credential files (`config.json`, containers-auth.json(5)): `auths.<key>.auth` is
 * base64 `user:password`, `identitytoken` an OAuth2 refresh token. Keys may be `host`,
 * `host/namespace/repo` (most specific wins) or a legacy URL like `https://index.docker.io/v1/`.
 * `parseAuthFile` is pure; `loadAuthFile` reads a file (missing file → no entries).
 */
import { readFile } from 'node:fs/promises';
import { ValidationError, PullguardError } from '../domain/errors.js';
import type { RegistryCredentials } from '../pull/ports.js';

const MAX_AUTH_FILE_BYTES = 1024 * 1024;

export interface AuthFile {
  /** Normalised key (`host` or `host/path`) → credentials. */
  readonly entries: ReadonlyMap<string, RegistryCredentials>;
}

/** `https://index.docker.io/v1/` → `docker.io`; `https://quay.io` → `quay.io`; `host/ns/` → `host/ns`. */
export function normaliseAuthKey(key: string): string {
  let k = key.trim().replace(/^[a-z]+:\/\//i, '');
  k = k.replace(/\/+$/, '');
  // Legacy docker keys carry the API version path.
  k = k.replace(/\/v[12]$/, '');
  const slash = k.indexOf('/');
  const host = (slash === -1 ? k : k.slice(0, slash)).toLowerCase();
  const rest = slash === -1 ? '' : k.slice(slash);
  const normalHost = host === 'index.docker.io' || host === 'registry-1.docker.io' ? 'docker.io' : host;
  return normalHost + rest;
}

export function parseAuthFile(text: string, source: string): AuthFile {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    throw new PullguardError('INVALID_CONFIG', `${source}: not valid JSON`, { cause: err });
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw new ValidationError('INVALID_CONFIG', source, ['top level must be a JSON object']);
  }
  const auths = (parsed as { auths?: unknown }).auths;
  const entries = new Map<string, RegistryCredentials>();
  if (auths === undefined) return { entries };
  if (typeof auths !== 'object' || auths === null || Array.isArray(auths)) {
    throw new ValidationError('INVALID_CONFIG', source, ['"auths" must be an object']);
  }
  const problems: string[] = [];
  for (const [key, value] of Object.entries(auths as Record<string, unknown>)) {
    // Problems name the key only: the values are secrets.
    if (typeof value !== 'object' || value === null || Array.isArray(value)) {
      problems.push(`auths[${JSON.stringify(key)}] must be an object`);
      continue;
    }
    const v = value as { auth?: unknown; identitytoken?: unknown; username?: unknown; password?: unknown; registrytoken?: unknown };
    const creds: { username?: string; password?: string; identityToken?: string; registryToken?: string } = {};
    if (v.auth !== undefined && v.auth !== '') {
      if (typeof v.auth !== 'string') {
        problems.push(`auths[${JSON.stringify(key)}].auth must be a string`);
        continue;
      }
      const decoded = Buffer.from(v.auth, 'base64').toString('utf8');
      const colon = decoded.indexOf(':');
      if (colon <= 0) {
        problems.push(`auths[${JSON.stringify(key)}].auth is not base64 of "user:password"`);
        continue;
      }
      creds.username = decoded.slice(0, colon);
      creds.password = decoded.slice(colon + 1);
    } else if (typeof v.username === 'string' && typeof v.password === 'string') {
      creds.username = v.username;
      creds.password = v.password;
    }
    if (typeof v.identitytoken === 'string' && v.identitytoken !== '') creds.identityToken = v.identitytoken;
    if (typeof v.registrytoken === 'string' && v.registrytoken !== '') creds.registryToken = v.registrytoken;
    if (Object.keys(creds).length === 0) continue; // e.g. a credential-helper stub entry
    entries.set(normaliseAuthKey(key), Object.freeze(creds));
  }
  if (problems.length > 0) throw new ValidationError('INVALID_CONFIG', source, problems);
  return { entries };
}

export async function loadAuthFile(path: string): Promise<AuthFile> {
  let buf: Buffer;
  try {
    buf = await readFile(path);
  } catch (err) {
    if ((err as { code?: unknown }).code === 'ENOENT') return { entries: new Map() };
    throw new PullguardError('INVALID_CONFIG', `cannot read auth file ${path}`, { cause: err });
  }
  if (buf.length > MAX_AUTH_FILE_BYTES) throw new PullguardError('INVALID_CONFIG', `auth file ${path} is larger than ${MAX_AUTH_FILE_BYTES} bytes`);
  return parseAuthFile(buf.toString('utf8'), path);
}

/**
 * Credentials for `host` and repository `path` (no host): the longest `host/ns…` key that is a
 * path-prefix of `host/path`, else the bare host key.
 */
export function lookupCredentials(file: AuthFile, host: string, path: string): RegistryCredentials | undefined {
  const full = `${host.toLowerCase()}/${path}`;
  const parts = full.split('/');
  for (let n = parts.length; n >= 1; n--) {
    const found = file.entries.get(parts.slice(0, n).join('/'));
    if (found !== undefined) return found;
  }
  return undefined;
}
