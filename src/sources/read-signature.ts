/**
 * Reads one lookaside index (`signature-<N>`) over http(s) or file:// and classifies the outcome:
 * a signature, missing (404 / ENOENT: the end of the list), or a trouble with upstream-compatible
 * wording. Never throws for the index; bounded retries live here, the list loop does not retry.
 */
import { backoffMs, parseRetryAfter, REDIRECT_STATUSES, readBodyCapped, redirectTarget } from '../http/policy.js';
import { open } from 'node:fs/promises';
import { STATUS_CODES } from 'node:http';
import { fileURLToPath } from 'node:url';
import type { Dispatcher } from 'undici';
import type { SignatureLocation, SignatureTrouble, TroubleKind, UntrustedSignatureBlob } from '../domain/signature.js';
import { sniffSignatureFormat } from '../signature/sniff.js';
import { sleep, type Timers } from './timers.js';
import { redactUrl } from './lookaside-url.js';

/** c/image `iolimits.MaxSignatureBodySize`. Also applied to file:// (upstream has no cap there). */
export const MAX_SIGNATURE_BYTES = 4 * 1024 * 1024;
/** Go's default redirect policy. */
export const MAX_REDIRECTS = 10;
const RETRYABLE_STATUS = new Set([429, 502, 503, 504]);
const RETRYABLE_TRANSPORT_CODES = new Set(['ECONNRESET', 'EPIPE', 'ECONNABORTED', 'UND_ERR_SOCKET']);
const FILE_CHUNK = 64 * 1024;

/** Why the list loop stopped an index early; carried as the abort reason of the index signal. */
export class FetchStop {
  constructor(readonly cause: 'budget' | 'cancelled' | 'discarded') {}
}

export type LookasideEvent =
  | { readonly type: 'scope'; readonly scope: string; readonly baseUrl: string; readonly file?: string }
  | { readonly type: 'request'; readonly index: number; readonly url: string; readonly attempt: number; readonly noCache: boolean }
  | { readonly type: 'retry'; readonly index: number; readonly url: string; readonly reason: string; readonly delayMs: number }
  | {
      readonly type: 'outcome';
      readonly index: number;
      readonly url: string;
      readonly outcome: 'signature' | 'missing' | TroubleKind;
      readonly attempts: number;
    }
  | { readonly type: 'end'; readonly end: string; readonly signatures: number; readonly troubles: number };

export interface ReadContext {
  readonly dispatcher: Dispatcher;
  readonly timers: Timers;
  readonly random: () => number;
  readonly requestTimeoutMs: number;
  readonly retries: number;
  readonly retryBaseMs: number;
  readonly noCacheRetry: boolean;
  readonly userAgent: string;
  /** Absolute time (timers.now()) at which the signature-phase budget runs out. */
  readonly deadline: number;
  readonly budgetMs: number;
  emit(event: LookasideEvent): void;
}

export type IndexOutcome =
  | { readonly kind: 'signature'; readonly blob: UntrustedSignatureBlob; readonly attempts: number; readonly notice?: string }
  | { readonly kind: 'missing'; readonly attempts: number }
  | { readonly kind: 'trouble'; readonly trouble: SignatureTrouble }
  /** Cancelled or discarded by the loop: not part of any report. */
  | { readonly kind: 'stopped'; readonly attempts: number };

type Attempt =
  | { readonly type: 'body'; readonly bytes: Uint8Array; readonly contentType?: string; readonly status?: number }
  | { readonly type: 'missing' }
  | { readonly type: 'status'; readonly status: number; readonly retryAfterMs?: number; readonly contentType?: string }
  | { readonly type: 'transport'; readonly message: string; readonly code?: string; readonly retryable: boolean }
  | { readonly type: 'timeout'; readonly bytesRead?: number }
  | { readonly type: 'stopped'; readonly cause: FetchStop['cause']; readonly bytesRead?: number }
  | { readonly type: 'too-large'; readonly bytesRead: number; readonly contentType?: string }
  | { readonly type: 'redirects'; readonly lastUrl: URL }
  | { readonly type: 'unsupported-redirect'; readonly target: URL; readonly why: 'scheme' | 'downgrade' }
  | { readonly type: 'io'; readonly message: string };

function firstHeader(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}

function isHtml(contentType: string | undefined): boolean {
  // Go's mime.ParseMediaType: type/subtype before parameters, case-insensitive.
  return contentType !== undefined && contentType.split(';')[0]?.trim().toLowerCase() === 'text/html';
}

function stopCause(signal: AbortSignal): FetchStop['cause'] {
  return signal.reason instanceof FetchStop ? signal.reason.cause : 'cancelled';
}

function transportMessage(err: unknown): { message: string; code?: string; retryable: boolean } {
  const e = err as { message?: unknown; code?: unknown; cause?: { code?: unknown; message?: unknown } };
  const code = typeof e.code === 'string' ? e.code : typeof e.cause?.code === 'string' ? e.cause.code : undefined;
  const text = typeof e.message === 'string' && e.message !== '' ? e.message : (code ?? String(err));
  const message = code !== undefined && !text.includes(code) ? `${text} (${code})` : text;
  return { message, ...(code !== undefined ? { code } : {}), retryable: code !== undefined && RETRYABLE_TRANSPORT_CODES.has(code) };
}

/** One GET (following up to 10 redirects) with the per-request timeout covering headers and body. */
async function httpAttempt(ctx: ReadContext, url: URL, noCache: boolean, signal: AbortSignal): Promise<Attempt> {
  const controller = new AbortController();
  let timedOut = false;
  let bytesRead = 0;
  const onStop = (): void => controller.abort(signal.reason);
  signal.addEventListener('abort', onStop, { once: true });
  const cancelTimer = ctx.timers.setTimeout(() => {
    timedOut = true;
    controller.abort(new Error('request timeout'));
  }, ctx.requestTimeoutMs);
  // Only these headers are ever sent: no registry credentials, and URL userinfo is never turned into auth.
  const headers: Record<string, string> = { 'user-agent': ctx.userAgent, accept: '*/*' };
  if (noCache) {
    headers['cache-control'] = 'no-cache';
    headers['pragma'] = 'no-cache';
  }
  let current = url;
  try {
    for (let redirects = 0; ; redirects++) {
      const response = await ctx.dispatcher.request({
        origin: current.origin,
        path: `${current.pathname}${current.search}`,
        method: 'GET',
        headers,
        signal: controller.signal,
      });
      const status = response.statusCode;
      const contentType = firstHeader(response.headers['content-type']);
      const location = firstHeader(response.headers['location']);
      if (REDIRECT_STATUSES.has(status) && location !== undefined) {
        await response.body.dump().catch(() => undefined);
        if (redirects >= MAX_REDIRECTS) return { type: 'redirects', lastUrl: current };
        // A lookaside redirect must not be able to point the reader at file:// or anything else, nor
        // down from https to plain http (the shared policy); no credential is ever sent here anyway.
        const next = redirectTarget(current, location);
        if (!next.follow) return { type: 'unsupported-redirect', target: next.url, why: next.why };
        current = next.url;
        continue;
      }
      if (status === 404) {
        await response.body.dump().catch(() => undefined);
        return { type: 'missing' };
      }
      if (status !== 200) {
        // Upstream never reads an error body; drain a little so the connection can be reused.
        await response.body.dump().catch(() => undefined);
        const retryAfterMs = parseRetryAfter(firstHeader(response.headers['retry-after']), ctx.timers.now());
        return {
          type: 'status',
          status,
          ...(retryAfterMs !== undefined ? { retryAfterMs } : {}),
          ...(contentType !== undefined ? { contentType } : {}),
        };
      }
      const declared = Number(firstHeader(response.headers['content-length']));
      const read = await readBodyCapped(
        response.body as AsyncIterable<Buffer> & { destroy(): unknown },
        Number.isFinite(declared) ? declared : undefined,
        MAX_SIGNATURE_BYTES,
        (n) => {
          bytesRead += n;
        },
      );
      if (!read.ok) return { type: 'too-large', bytesRead: read.bytesRead, ...(contentType !== undefined ? { contentType } : {}) };
      return { type: 'body', bytes: read.bytes, status, ...(contentType !== undefined ? { contentType } : {}) };
    }
  } catch (err) {
    if (timedOut) return { type: 'timeout', bytesRead };
    if (signal.aborted) return { type: 'stopped', cause: stopCause(signal), bytesRead };
    return { type: 'transport', ...transportMessage(err) };
  } finally {
    cancelTimer();
    signal.removeEventListener('abort', onStop);
  }
}

/** Reads a file:// signature with the same 4 MiB cap; ENOENT is the end of the list. */
async function fileAttempt(path: string, signal: AbortSignal): Promise<Attempt> {
  let handle;
  try {
    handle = await open(path, 'r');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { type: 'missing' };
    return { type: 'io', message: (err as Error).message };
  }
  try {
    const chunks: Buffer[] = [];
    let total = 0;
    for (;;) {
      if (signal.aborted) return { type: 'stopped', cause: stopCause(signal), bytesRead: total };
      const buffer = Buffer.alloc(FILE_CHUNK);
      const { bytesRead } = await handle.read(buffer, 0, FILE_CHUNK, null);
      if (bytesRead === 0) break;
      total += bytesRead;
      if (total > MAX_SIGNATURE_BYTES) return { type: 'too-large', bytesRead: total };
      chunks.push(buffer.subarray(0, bytesRead));
    }
    return { type: 'body', bytes: new Uint8Array(Buffer.concat(chunks)) };
  } catch (err) {
    return { type: 'io', message: (err as Error).message };
  } finally {
    await handle.close().catch(() => undefined);
  }
}

function statusText(status: number): string {
  return `${status} ${STATUS_CODES[status] ?? ''}`.trimEnd();
}

/**
 * Reads `signature-<index>` at `url`. `signal` aborts with a FetchStop when the budget runs out,
 * the caller cancels, or the loop no longer needs this index.
 */
export async function readSignatureIndex(ctx: ReadContext, url: URL, index: number, signal: AbortSignal): Promise<IndexOutcome> {
  const isFile = url.protocol === 'file:';
  let filePath: string | undefined;
  let shown = redactUrl(url);
  let attempts = 0;
  // `message` is upstream's text (with the URL); `detail` the same without it, for texts that name the URL themselves.
  const trouble = (kind: TroubleKind, message: string, detail: string | undefined, extra: Partial<SignatureTrouble> = {}): IndexOutcome => {
    const location: SignatureLocation = { source: 'lookaside', index, url: shown };
    return { kind: 'trouble', trouble: Object.freeze({ location, kind, message, ...(detail !== undefined ? { detail } : {}), attempts, ...extra }) };
  };
  const reading = (detail: string, extra: Partial<SignatureTrouble> = {}): [string, string, Partial<SignatureTrouble>] => [
    `reading signature from ${shown}: ${detail}`,
    detail,
    extra,
  ];
  const stopped = (bytesRead?: number): IndexOutcome =>
    stopCause(signal) === 'budget'
      ? trouble('budget', ...reading(`signature-phase budget of ${ctx.budgetMs} ms ran out`, bytesRead ? { bytesRead } : {}))
      : { kind: 'stopped', attempts };

  if (isFile) {
    try {
      filePath = fileURLToPath(url);
      shown = filePath;
    } catch (err) {
      return trouble('io', ...reading((err as Error).message));
    }
  } else if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    return trouble('unsupported-scheme', `Unsupported scheme when reading signature from ${shown}`, `unsupported scheme ${url.protocol}`);
  }

  let transientRetries = 0;
  let noCache = false;
  for (;;) {
    if (signal.aborted) return stopped();
    attempts++;
    ctx.emit({ type: 'request', index, url: shown, attempt: attempts, noCache });
    const result = filePath !== undefined ? await fileAttempt(filePath, signal) : await httpAttempt(ctx, url, noCache, signal);
    const parsingPrefix = filePath !== undefined ? `parsing signature ${JSON.stringify(filePath)}` : `parsing signature ${shown}`;

    // Transient failures: back off with jitter (or as Retry-After says) while the budget allows.
    const retryable = (result.type === 'status' && RETRYABLE_STATUS.has(result.status)) || (result.type === 'transport' && result.retryable);
    if (retryable && transientRetries < ctx.retries) {
      const backoff = backoffMs(transientRetries + 1, ctx.retryBaseMs, Number.POSITIVE_INFINITY, ctx.random);
      const delayMs = Math.round(result.type === 'status' && result.retryAfterMs !== undefined ? result.retryAfterMs : backoff);
      // A wait that cannot finish inside the budget is pointless: report the failure now instead.
      if (ctx.timers.now() + delayMs < ctx.deadline) {
        transientRetries++;
        const reason = result.type === 'status' ? statusText(result.status) : result.message;
        ctx.emit({ type: 'retry', index, url: shown, reason, delayMs });
        await sleep(ctx.timers, delayMs, signal);
        continue;
      }
    }

    switch (result.type) {
      case 'missing':
        return { kind: 'missing', attempts };
      case 'body': {
        const sniffed = sniffSignatureFormat(result.bytes);
        if (sniffed.ok) {
          const blob: UntrustedSignatureBlob = Object.freeze({
            location: Object.freeze({ source: 'lookaside' as const, index, url: shown }),
            format: sniffed.format,
            bytes: sniffed.payload,
          });
          const notice = isHtml(result.contentType)
            ? `Signature ${JSON.stringify(shown)} has Content-Type ${JSON.stringify(result.contentType)}, unexpected for a signature`
            : undefined;
          return { kind: 'signature', blob, attempts, ...(notice !== undefined ? { notice } : {}) };
        }
        // A CDN edge may hold a poisoned copy (an error page cached as 200): revalidate once.
        if (filePath === undefined && ctx.noCacheRetry && !noCache) {
          noCache = true;
          ctx.emit({ type: 'retry', index, url: shown, reason: sniffed.message, delayMs: 0 });
          continue;
        }
        const facts: Partial<SignatureTrouble> = {
          ...(result.status !== undefined ? { httpStatus: result.status } : {}),
          ...(result.contentType !== undefined ? { contentType: result.contentType } : {}),
          ...(sniffed.firstByte !== undefined ? { firstByte: sniffed.firstByte } : {}),
          bytesRead: result.bytes.length,
        };
        return trouble(result.bytes.length === 0 ? 'empty' : 'unrecognized-format', `${parsingPrefix}: ${sniffed.message}`, sniffed.message, facts);
      }
      case 'status':
        return trouble(
          'http-status',
          ...reading(`received unexpected HTTP status: ${statusText(result.status)}`, {
            httpStatus: result.status,
            ...(result.contentType !== undefined ? { contentType: result.contentType } : {}),
          }),
        );
      case 'transport':
        return trouble(
          'transport',
          `Get ${JSON.stringify(shown)}: ${result.message}`,
          result.message,
          result.code !== undefined ? { errorCode: result.code } : {},
        );
      case 'timeout':
        return trouble(
          'timeout',
          ...reading(`no complete response within ${ctx.requestTimeoutMs} ms`, result.bytesRead ? { bytesRead: result.bytesRead } : {}),
        );
      case 'stopped':
        return stopped(result.bytesRead);
      case 'too-large': {
        const text = `exceeded maximum allowed size of ${MAX_SIGNATURE_BYTES} bytes`;
        return trouble('too-large', text, text, {
          bytesRead: result.bytesRead,
          ...(result.contentType !== undefined ? { contentType: result.contentType } : {}),
        });
      }
      case 'redirects':
        return trouble(
          'redirects',
          `Get ${JSON.stringify(redactUrl(result.lastUrl))}: stopped after ${MAX_REDIRECTS} redirects`,
          `stopped after ${MAX_REDIRECTS} redirects`,
        );
      case 'unsupported-redirect':
        return result.why === 'downgrade'
          ? trouble(
              'unsupported-scheme',
              `Refused redirect from https down to plain http when reading signature from ${redactUrl(result.target)} (redirected from ${shown})`,
              `redirected from https down to plain http (${redactUrl(result.target)})`,
            )
          : trouble(
              'unsupported-scheme',
              `Unsupported scheme when reading signature from ${redactUrl(result.target)} (redirected from ${shown})`,
              `redirected to unsupported scheme ${result.target.protocol}`,
            );
      case 'io':
        // fs messages name the path themselves (`EACCES: permission denied, open '/…/signature-1'`).
        return trouble('io', result.message, undefined);
    }
  }
}
