/**
 * One registry read as the client makes it: a single exchange (user agent, redirect report, transport
 * failures told apart from answers), the retry policy around it (429/5xx and dropped links, Retry-After
 * honoured and clamped, jittered exponential back-off, never past the read's deadline), and the
 * deadline itself (read-deadline.ts: a whole read, or a blob at its minimum rate after an allowance).
 */
import { isPullguardError } from '../domain/errors.js';
import { backoffMs, parseRetryAfter } from '../http/policy.js';
import type { ResolveOptions } from '../pull/ports.js';
import type { RegistryConnections } from './connections.js';
import { header, readErrorBody, send, type HttpResponse, type Timeouts } from './http.js';
import { ReadDeadline } from './read-deadline.js';
import {
  cancelledError,
  classifyTransportError,
  isRetryableTransport,
  readDeadlineError,
  statusError,
  transportError,
  type RequestSubject,
} from './registry-errors.js';

export interface RetryPolicy {
  readonly maxAttempts: number;
  readonly baseDelayMs: number;
  readonly maxDelayMs: number;
  /** Longest Retry-After honoured; longer values are clamped to this. */
  readonly maxRetryAfterMs: number;
}

export const DEFAULT_RETRY: RetryPolicy = Object.freeze({ maxAttempts: 4, baseDelayMs: 250, maxDelayMs: 8_000, maxRetryAfterMs: 30_000 });

const RETRY_STATUS = new Set([429, 500, 502, 503, 504]);

/** The caller's options plus the deadline of the read in progress (its abort signal is `signal`). */
export interface ReadOptions extends ResolveOptions {
  readonly deadline?: ReadDeadline;
}

/** A request that failed below HTTP (the cause is undici's or the socket's error). */
export class TransportFailure extends Error {
  constructor(override readonly cause: unknown) {
    super('transport failure');
  }
}

export interface RegistryRequestsOptions {
  readonly connections: RegistryConnections;
  readonly timeouts: Timeouts;
  readonly retry: RetryPolicy;
  readonly minBlobRate: number;
  readonly userAgent: string;
  readonly now: () => number;
  readonly sleep: (ms: number, signal?: AbortSignal) => Promise<void>;
  readonly random: () => number;
  readonly onEvent?: (event: RegistryRequestEvent) => void;
}

export type RegistryRequestEvent =
  | {
      readonly type: 'retry';
      readonly host: string;
      readonly repository?: string;
      readonly kind: RequestSubject['kind'];
      readonly attempt: number;
      readonly delayMs: number;
      readonly reason: string;
    }
  | { readonly type: 'redirect'; readonly host: string; readonly toHost: string };

export class RegistryRequests {
  readonly timeouts: Timeouts;
  readonly retry: RetryPolicy;
  private readonly connections: RegistryConnections;
  private readonly minBlobRate: number;
  private readonly userAgent: string;
  private readonly now: () => number;
  private readonly sleep: (ms: number, signal?: AbortSignal) => Promise<void>;
  private readonly random: () => number;
  private readonly onEvent: ((event: RegistryRequestEvent) => void) | undefined;

  constructor(options: RegistryRequestsOptions) {
    this.connections = options.connections;
    this.timeouts = options.timeouts;
    this.retry = options.retry;
    this.minBlobRate = options.minBlobRate;
    this.userAgent = options.userAgent;
    this.now = options.now;
    this.sleep = options.sleep;
    this.random = options.random;
    this.onEvent = options.onEvent;
  }

  async sendOnce(url: URL, init: Parameters<typeof send>[3], subject: RequestSubject): Promise<HttpResponse> {
    try {
      const res = await send(this.connections.dispatcherFor, this.timeouts, url, { ...init, headers: { 'user-agent': this.userAgent, ...init.headers } });
      if (res.url.host !== url.host) this.onEvent?.({ type: 'redirect', host: subject.host, toHost: res.url.host });
      return res;
    } catch (err) {
      if (isPullguardError(err)) throw err;
      throw new TransportFailure(err);
    }
  }

  backoff(attempt: number): number {
    return backoffMs(attempt, this.retry.baseDelayMs, this.retry.maxDelayMs, this.random);
  }

  private retryAfterMs(res: HttpResponse): number | undefined {
    const ms = parseRetryAfter(header(res, 'retry-after'), this.now());
    return ms === undefined ? undefined : Math.min(this.retry.maxRetryAfterMs, ms);
  }

  async pause(ms: number, signal: AbortSignal | undefined, subject: RequestSubject): Promise<void> {
    try {
      await this.sleep(ms, signal);
    } catch (err) {
      throw cancelledError(subject, err);
    }
  }

  /** Reports retry number `attempt` of `subject` and waits `ms` for it. */
  private async retryAfterWait(subject: RequestSubject, attempt: number, ms: number, reason: string, signal: AbortSignal | undefined): Promise<void> {
    this.onEvent?.({ type: 'retry', host: subject.host, repository: subject.repository, kind: subject.kind, attempt, delayMs: ms, reason });
    await this.pause(ms, signal, subject);
  }

  /**
   * Runs `attempt` until a non-retryable answer: retries 429/5xx (Retry-After honoured) and dropped
   * links. A retry that could not even start before the read's deadline is not waited for: the
   * failure so far is the answer.
   */
  async withRetries(
    subject: RequestSubject,
    signal: AbortSignal | undefined,
    attempt: () => Promise<HttpResponse>,
    deadline?: ReadDeadline,
  ): Promise<HttpResponse> {
    for (let n = 1; ; n++) {
      let res: HttpResponse;
      try {
        res = await attempt();
      } catch (err) {
        if (!(err instanceof TransportFailure)) throw err;
        const kind = classifyTransportError(err.cause);
        if (kind === 'aborted' || signal?.aborted === true) throw cancelledError(subject, err.cause);
        if (!isRetryableTransport(kind) || n >= this.retry.maxAttempts) throw transportError(subject, kind, err.cause, n);
        const ms = this.backoff(n);
        if (deadline !== undefined && ms >= deadline.remainingMs()) throw transportError(subject, kind, err.cause, n);
        await this.retryAfterWait(subject, n, ms, kind, signal);
        continue;
      }
      if (!RETRY_STATUS.has(res.status) || n >= this.retry.maxAttempts) {
        if (RETRY_STATUS.has(res.status)) throw statusError(subject, res.status, await readErrorBody(res), n);
        return res;
      }
      const body = await readErrorBody(res);
      const ms = (res.status === 429 || res.status === 503 ? this.retryAfterMs(res) : undefined) ?? this.backoff(n);
      if (deadline !== undefined && ms >= deadline.remainingMs()) throw statusError(subject, res.status, body, n);
      await this.retryAfterWait(subject, n, ms, `HTTP ${res.status}`, signal);
    }
  }

  /**
   * Runs one whole read (with its authentication and retries) under its deadline
   * (read-deadline.ts); the deadline's abort comes out as REGISTRY_UNAVAILABLE. `blobSize`: a blob
   * read, whose deadline moves with the bytes received at the minimum rate.
   */
  async withDeadline<T>(subject: RequestSubject, opts: ResolveOptions, blobSize: number | undefined, read: (opts: ReadOptions) => Promise<T>): Promise<T> {
    const allowanceMs = this.timeouts.readMs;
    const rate = blobSize !== undefined ? { minBytesPerSecond: this.minBlobRate } : {};
    const deadline = new ReadDeadline({ allowanceMs, ...rate, ...(opts.signal !== undefined ? { parent: opts.signal } : {}) });
    try {
      return await read({ ...opts, signal: deadline.signal, deadline });
    } catch (err) {
      if (!deadline.expired || opts.signal?.aborted === true) throw err;
      throw readDeadlineError(
        subject,
        {
          elapsedMs: deadline.elapsedMs(),
          allowanceMs,
          receivedBytes: deadline.receivedBytes,
          ...(blobSize !== undefined ? { sizeBytes: blobSize, ...rate } : {}),
        },
        err,
      );
    } finally {
      deadline.dispose();
    }
  }
}
