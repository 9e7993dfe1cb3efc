/**
 * One HTTP exchange on an injected undici Dispatcher: per-request header/idle-body timeouts, manual
 * redirects and capped body reads under the shared policies of src/http/policy.ts (Authorization is
 * dropped when the origin changes; no other scheme, no https → http). The overall
 * bound on a whole read (`readMs`, a slow drip never trips the idle timeout) is the caller's abort
 * signal: see read-deadline.ts.
 */
import { finished } from 'node:stream';
import type { Dispatcher } from 'undici';
import { PullguardError } from '../domain/errors.js';
import { REDIRECT_STATUSES, readBodyCapped, redirectTarget } from '../http/policy.js';

export interface Timeouts {
  /** TCP+TLS connect (set on the Agent the factory builds). */
  readonly connectMs: number;
  /** Until response headers arrive. */
  readonly headersMs: number;
  /** Longest gap between body chunks. */
  readonly bodyIdleMs: number;
  /**
   * Whole read, retries and authentication included: a manifest, token or ping must be complete by
   * then; a blob gets this as its allowance on top of its minimum transfer rate (read-deadline.ts).
   */
  readonly readMs: number;
}

export const DEFAULT_TIMEOUTS: Timeouts = Object.freeze({ connectMs: 10_000, headersMs: 30_000, bodyIdleMs: 30_000, readMs: 30_000 });

export interface HttpResponse {
  readonly status: number;
  readonly headers: Readonly<Record<string, string | string[] | undefined>>;
  readonly body: Dispatcher.ResponseData['body'];
  /** The URL that answered (after redirects). */
  readonly url: URL;
}

export interface SendInit {
  readonly method: 'GET' | 'HEAD' | 'POST';
  readonly headers: Readonly<Record<string, string>>;
  readonly body?: string;
  readonly signal?: AbortSignal;
  /** How many redirects to follow (0: return the 3xx). */
  readonly maxRedirects: number;
}

export function header(res: Pick<HttpResponse, 'headers'>, name: string): string | undefined {
  const v = res.headers[name.toLowerCase()];
  return Array.isArray(v) ? v[0] : v;
}

export async function send(dispatcherFor: (url: URL) => Promise<Dispatcher>, timeouts: Timeouts, url: URL, init: SendInit): Promise<HttpResponse> {
  let current = url;
  let headers: Record<string, string> = { ...init.headers };
  let method = init.method;
  let body = init.body;
  for (let hop = 0; ; hop++) {
    const dispatcher = await dispatcherFor(current);
    const res = await dispatcher.request({
      origin: current.origin,
      path: current.pathname + current.search,
      method,
      headers,
      ...(body !== undefined ? { body } : {}),
      ...(init.signal !== undefined ? { signal: init.signal } : {}),
      headersTimeout: timeouts.headersMs,
      bodyTimeout: timeouts.bodyIdleMs,
    });
    const location = res.headers.location;
    const loc = Array.isArray(location) ? location[0] : location;
    if (!REDIRECT_STATUSES.has(res.statusCode) || loc === undefined || hop >= init.maxRedirects) {
      return { status: res.statusCode, headers: res.headers, body: res.body, url: current };
    }
    await res.body.dump({ limit: 64 * 1024 }).catch(() => undefined);
    const next = redirectTarget(current, loc);
    if (!next.follow) throw new PullguardError('REGISTRY_PROTOCOL', next.message, { facts: { host: current.host } });
    if (!next.sameOrigin) {
      // Blob storage on another host must never see the registry's credentials.
      const { authorization: _dropped, ...rest } = headers;
      void _dropped;
      headers = rest;
    }
    if (res.statusCode === 303) {
      method = 'GET';
      body = undefined;
    }
    current = next.url;
  }
}

/** Reads a whole body, failing with TOO_LARGE beyond `cap` bytes (and destroying the stream). */
export async function readCapped(res: HttpResponse, cap: number, what: string, onBytes?: (n: number) => void): Promise<Uint8Array> {
  const declared = Number(header(res, 'content-length'));
  const read = await readBodyCapped(res.body as AsyncIterable<Buffer> & { destroy(): unknown }, Number.isFinite(declared) ? declared : undefined, cap, onBytes);
  if (read.ok) return read.bytes;
  throw new PullguardError('TOO_LARGE', `${what} is larger than the ${cap}-byte limit${read.bytesRead === 0 ? ` (Content-Length ${declared})` : ''}`, {
    facts: read.bytesRead === 0 ? { cap, declared } : { cap },
  });
}

/** Drains a small error body (for the distribution error code) without failing. */
export async function readErrorBody(res: HttpResponse): Promise<Uint8Array | undefined> {
  try {
    return await readCapped(res, 64 * 1024, 'error body');
  } catch {
    return undefined;
  }
}

/**
 * Feeds every body chunk to `sink` in flowing mode: the stream is paused only while a promise the
 * sink returned is pending. Cheaper per chunk than async iteration (no promise per chunk), which
 * matters for a 64 KiB socket read. Rejects with the sink's error (destroying the body) or the
 * body's own (reset, timeout, premature close).
 */
export function pumpBody(body: HttpResponse['body'], sink: (chunk: Buffer) => Promise<void> | undefined): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    let failed = false;
    let waiting: Promise<void> | undefined;
    const fail = (err: unknown): void => {
      if (failed) return;
      failed = true;
      body.off('data', onData);
      body.destroy();
      reject(err);
    };
    const onData = (chunk: Buffer): void => {
      let pending: Promise<void> | undefined;
      try {
        pending = sink(chunk);
      } catch (err) {
        fail(err);
        return;
      }
      if (pending === undefined) return;
      body.pause();
      waiting = pending.then(() => {
        waiting = undefined;
        if (!failed) body.resume();
      }, fail);
    };
    body.on('data', onData);
    finished(body, (err) => {
      if (err !== undefined && err !== null) {
        fail(err);
        return;
      }
      // The body ends only after the last chunk was handed over; wait for that chunk's write.
      void Promise.resolve(waiting).then(() => {
        if (!failed) resolve();
      });
    });
  });
}
