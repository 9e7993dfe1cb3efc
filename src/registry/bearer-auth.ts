/**
 * Registry authentication: `WWW-Authenticate` parsing, HTTP Basic, and the Docker token flow
 * (GET realm?service&scope with optional Basic; or an OAuth2 refresh_token POST for identity
 * tokens). Tokens are cached per (registry, scope, credential identity) until expiry minus slack.
 */
import { createHash } from 'node:crypto';
import { PullguardError } from '../domain/errors.js';
import type { RegistryCredentials } from '../pull/ports.js';

export interface Challenge {
  readonly scheme: 'basic' | 'bearer' | string;
  readonly params: Readonly<Record<string, string>>;
}

const TOKEN = /^[A-Za-z0-9!#$%&'*+.^_`|~-]+/;

/** Parses one or more challenges (RFC 7235). Unparseable input yields what was read so far. */
export function parseWwwAuthenticate(value: string): Challenge[] {
  const out: { scheme: string; params: Record<string, string> }[] = [];
  let s = value.trim();
  let current: { scheme: string; params: Record<string, string> } | undefined;
  while (s.length > 0) {
    s = s.replace(/^[\s,]+/, '');
    const tok = TOKEN.exec(s);
    if (tok === null) break;
    const word = tok[0];
    const after = s.slice(word.length);
    const eq = /^\s*=\s*/.exec(after);
    if (eq === null || current === undefined) {
      // A new auth-scheme (a token not followed by "=").
      if (eq !== null) break;
      current = { scheme: word.toLowerCase(), params: {} };
      out.push(current);
      s = after;
      continue;
    }
    s = after.slice(eq[0].length);
    let val: string;
    if (s.startsWith('"')) {
      let i = 1;
      val = '';
      while (i < s.length && s[i] !== '"') {
        if (s[i] === '\\' && i + 1 < s.length) i++;
        val += s[i];
        i++;
      }
      s = s.slice(i + 1);
    } else {
      const m = /^[^,\s]*/.exec(s);
      val = m?.[0] ?? '';
      s = s.slice(val.length);
    }
    current.params[word.toLowerCase()] = val;
  }
  return out;
}

export function basicAuthorization(creds: RegistryCredentials | undefined): string | undefined {
  if (creds?.username === undefined || creds.password === undefined) return undefined;
  return `Basic ${Buffer.from(`${creds.username}:${creds.password}`).toString('base64')}`;
}

/** A stable, non-reversible identity for cache keys (never the secret itself). */
export function credentialIdentity(creds: RegistryCredentials | undefined): string {
  if (creds === undefined || (creds.username === undefined && creds.identityToken === undefined && creds.registryToken === undefined)) return 'anonymous';
  return createHash('sha256')
    .update(JSON.stringify([creds.username ?? null, creds.password ?? null, creds.identityToken ?? null, creds.registryToken ?? null]))
    .digest('hex')
    .slice(0, 24);
}

export interface CachedToken {
  readonly token: string;
  readonly expiresAtMs: number;
}

export class TokenCache {
  private readonly tokens = new Map<string, CachedToken>();
  constructor(private readonly now: () => number) {}

  static key(host: string, scope: string, identity: string): string {
    return `${host}\n${scope}\n${identity}`;
  }

  get(key: string): string | undefined {
    const hit = this.tokens.get(key);
    if (hit === undefined) return undefined;
    if (this.now() >= hit.expiresAtMs) {
      this.tokens.delete(key);
      return undefined;
    }
    return hit.token;
  }

  /** Caches for `expiresInSec` (default 60) minus a slack of up to 10 s. */
  set(key: string, token: string, expiresInSec: number | undefined): void {
    const lifetime = expiresInSec !== undefined && Number.isFinite(expiresInSec) && expiresInSec > 0 ? expiresInSec : 60;
    const slack = Math.min(10, lifetime / 2);
    this.tokens.set(key, { token, expiresAtMs: this.now() + (lifetime - slack) * 1000 });
  }

  delete(key: string): void {
    this.tokens.delete(key);
  }

  get size(): number {
    return this.tokens.size;
  }
}

/** The token endpoint's JSON answer: `token` or `access_token`, optional `expires_in`. */
export function parseTokenResponse(bytes: Uint8Array, realmHost: string): { token: string; expiresIn?: number } {
  let doc: unknown;
  try {
    doc = JSON.parse(Buffer.from(bytes).toString('utf8'));
  } catch (err) {
    throw new PullguardError('REGISTRY_PROTOCOL', `token server ${realmHost} returned a response that is not JSON`, { cause: err, facts: { host: realmHost } });
  }
  const d = doc as { token?: unknown; access_token?: unknown; expires_in?: unknown };
  const token =
    typeof d.token === 'string' && d.token !== '' ? d.token : typeof d.access_token === 'string' && d.access_token !== '' ? d.access_token : undefined;
  if (token === undefined) {
    throw new PullguardError('REGISTRY_PROTOCOL', `token server ${realmHost} returned no token`, { facts: { host: realmHost } });
  }
  return typeof d.expires_in === 'number' ? { token, expiresIn: d.expires_in } : { token };
}

/** Builds the token request for `challenge` (a Bearer challenge) and `scope`. */
export function tokenRequest(
  challenge: Challenge,
  scope: string,
  creds: RegistryCredentials | undefined,
  clientId: string,
): { url: URL; method: 'GET' | 'POST'; headers: Record<string, string>; body?: string } {
  const realm = challenge.params.realm;
  let url: URL;
  try {
    if (realm === undefined) throw new Error('missing realm');
    url = new URL(realm);
    if (url.protocol !== 'https:' && url.protocol !== 'http:') throw new Error('unsupported scheme');
  } catch (err) {
    throw new PullguardError('REGISTRY_PROTOCOL', 'registry sent a Bearer challenge without a usable realm URL', { cause: err });
  }
  const service = challenge.params.service;
  if (creds?.identityToken !== undefined) {
    const form = new URLSearchParams({ grant_type: 'refresh_token', refresh_token: creds.identityToken, client_id: clientId, scope });
    if (service !== undefined) form.set('service', service);
    return { url, method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: form.toString() };
  }
  if (service !== undefined) url.searchParams.set('service', service);
  url.searchParams.set('scope', scope);
  const headers: Record<string, string> = {};
  const basic = basicAuthorization(creds);
  if (basic !== undefined) headers.authorization = basic;
  return { url, method: 'GET', headers };
}
