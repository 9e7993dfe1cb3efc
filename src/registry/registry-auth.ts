/**
 * Authentication towards registries: the credentials of a read (the request's, else the auth file's),
 * `/v2/` once per endpoint to learn its challenge, and the Authorization for a repository scope —
 * Basic, or a bearer token from the challenge's realm, cached per host, scope and credential identity.
 */
import { PullguardError } from '../domain/errors.js';
import type { RegistryCredentials } from '../pull/ports.js';
import { lookupCredentials, type AuthFile } from './auth-file.js';
import { basicAuthorization, credentialIdentity, parseTokenResponse, parseWwwAuthenticate, TokenCache, tokenRequest, type Challenge } from './bearer-auth.js';
import { header, readCapped, readErrorBody, type HttpResponse } from './http.js';
import type { ReadOptions, RegistryRequests } from './registry-requests.js';
import { cancelledError, statusError, type RequestSubject } from './registry-errors.js';

const MAX_TOKEN_BYTES = 1024 * 1024;

/** A registry's API base: `https://host` (Docker Hub's `registry-1.docker.io` for docker.io). */
export interface Endpoint {
  readonly host: string;
  readonly base: string;
}

export class RegistryAuth {
  private readonly challenges = new Map<string, Promise<Challenge | undefined>>();
  private readonly tokens: TokenCache;
  private readonly requests: RegistryRequests;
  private readonly authFile: AuthFile | undefined;
  private readonly userAgent: string;
  /** Aborted when the client closes: the shared ping has no caller of its own to cancel it. */
  private readonly lifetime: AbortSignal;

  constructor(options: {
    readonly requests: RegistryRequests;
    readonly authFile?: AuthFile;
    readonly userAgent: string;
    readonly now: () => number;
    readonly lifetime: AbortSignal;
  }) {
    this.requests = options.requests;
    this.authFile = options.authFile;
    this.userAgent = options.userAgent;
    this.lifetime = options.lifetime;
    this.tokens = new TokenCache(options.now);
  }

  /** Drops the cached token of a scope (a 401 with it: expired, or the scope changed). */
  forgetToken(host: string, scope: string, credentials: RegistryCredentials | undefined): void {
    this.tokens.delete(TokenCache.key(host, scope, credentialIdentity(credentials)));
  }

  credentials(endpoint: Endpoint, repository: string, explicit: RegistryCredentials | undefined): RegistryCredentials | undefined {
    if (explicit !== undefined || this.authFile === undefined) return explicit;
    return lookupCredentials(this.authFile, endpoint.host, repository);
  }

  /**
   * `/v2/` once per endpoint: proves it is a registry and learns its auth challenge. Shared by every
   * read on the endpoint, so it runs under its own deadline: one caller's cancellation or deadline
   * must not fail the others waiting on it.
   */
  ping(endpoint: Endpoint, signal: AbortSignal | undefined): Promise<Challenge | undefined> {
    const subject: RequestSubject = { host: endpoint.host, kind: 'ping', display: `${endpoint.host}/v2/` };
    let pending = this.challenges.get(endpoint.base);
    if (pending === undefined) {
      pending = this.requests.withDeadline(subject, { signal: this.lifetime }, undefined, (opts) => this.doPing(endpoint, subject, opts));
      this.challenges.set(endpoint.base, pending);
      pending.catch(() => this.challenges.delete(endpoint.base));
    }
    return signal === undefined ? pending : untilAborted(pending, signal, subject);
  }

  private async doPing(endpoint: Endpoint, subject: RequestSubject, opts: ReadOptions): Promise<Challenge | undefined> {
    const signal = opts.signal;
    const res = await this.requests.withRetries(
      subject,
      signal,
      async () => this.requests.sendOnce(new URL(`${endpoint.base}/v2/`), { method: 'GET', headers: {}, signal, maxRedirects: 3 }, subject),
      opts.deadline,
    );
    const body = await readErrorBody(res);
    if (res.status === 200) return undefined;
    if (res.status === 401) return this.pickChallenge(res);
    throw statusError(subject, res.status, body);
  }

  pickChallenge(res: HttpResponse): Challenge | undefined {
    const raw = header(res, 'www-authenticate');
    const all = raw === undefined ? [] : parseWwwAuthenticate(raw);
    return all.find((c) => c.scheme === 'bearer') ?? all.find((c) => c.scheme === 'basic');
  }

  async authorization(
    endpoint: Endpoint,
    challenge: Challenge | undefined,
    scope: string,
    creds: RegistryCredentials | undefined,
    subject: RequestSubject,
    opts: ReadOptions,
  ): Promise<string | undefined> {
    const signal = opts.signal;
    if (challenge === undefined) return undefined;
    if (challenge.scheme === 'basic') return basicAuthorization(creds);
    if (challenge.scheme !== 'bearer') return undefined;
    if (creds?.registryToken !== undefined) return `Bearer ${creds.registryToken}`;
    const key = TokenCache.key(endpoint.host, scope, credentialIdentity(creds));
    const cached = this.tokens.get(key);
    if (cached !== undefined) return `Bearer ${cached}`;
    const req = tokenRequest(challenge, scope, creds, this.userAgent);
    const tokenSubject: RequestSubject = {
      host: endpoint.host,
      repository: subject.repository,
      kind: 'token',
      display: `${subject.display} (token from ${req.url.host})`,
    };
    const res = await this.requests.withRetries(
      tokenSubject,
      signal,
      () =>
        this.requests.sendOnce(
          req.url,
          { method: req.method, headers: req.headers, ...(req.body !== undefined ? { body: req.body } : {}), signal, maxRedirects: 3 },
          tokenSubject,
        ),
      opts.deadline,
    );
    if (res.status !== 200) {
      const body = await readErrorBody(res);
      if (res.status === 401 || res.status === 403) {
        throw new PullguardError(
          'REGISTRY_UNAUTHORIZED',
          `unauthorized: token server ${req.url.host} refused ${creds === undefined ? 'anonymous access' : 'the credentials'} for ${subject.repository ?? endpoint.host} on ${endpoint.host}`,
          {
            facts: {
              host: endpoint.host,
              repository: subject.repository,
              status: res.status,
              tokenHost: req.url.host,
              credentials: creds === undefined ? 'none' : 'provided',
            },
          },
        );
      }
      throw statusError(tokenSubject, res.status, body);
    }
    const { token, expiresIn } = parseTokenResponse(await readCapped(res, MAX_TOKEN_BYTES, `token response from ${req.url.host}`), req.url.host);
    this.tokens.set(key, token, expiresIn);
    return `Bearer ${token}`;
  }
}

/** `p`, or CANCELLED as soon as `signal` aborts (`p` itself goes on for its other waiters). */
function untilAborted<T>(p: Promise<T>, signal: AbortSignal, subject: RequestSubject): Promise<T> {
  if (signal.aborted) return Promise.reject(cancelledError(subject, signal.reason));
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => reject(cancelledError(subject, signal.reason));
    signal.addEventListener('abort', onAbort, { once: true });
    p.then(
      (value) => {
        signal.removeEventListener('abort', onAbort);
        resolve(value);
      },
      (err: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(err);
      },
    );
  });
}
