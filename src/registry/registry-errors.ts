/**
 * Maps HTTP statuses, distribution error bodies and transport failures to coded PullguardErrors.
 * Messages name the host and repository (never credentials, never a URL with userinfo).
 */
import { PullguardError, type ErrorCode } from '../domain/errors.js';

/** What a request was for, to word errors: `manifest 127.0.0.1:5000/app:v2`. */
export interface RequestSubject {
  readonly host: string;
  readonly repository?: string;
  /** `manifest` | `blob` | `token` | `ping`. */
  readonly kind: 'manifest' | 'blob' | 'token' | 'ping';
  /** The reference text shown to users, e.g. `127.0.0.1:5000/app:v2` or `…/app@sha256:…`. */
  readonly display: string;
}

export type TransportFailure = 'refused' | 'dns' | 'connect-timeout' | 'headers-timeout' | 'body-timeout' | 'reset' | 'tls' | 'aborted' | 'other';

const TRANSPORT_TEXT: Record<TransportFailure, string> = {
  refused: 'connection refused',
  dns: 'host not found',
  'connect-timeout': 'connect timed out',
  'headers-timeout': 'timed out waiting for response headers',
  'body-timeout': 'timed out waiting for response body (stalled)',
  reset: 'connection reset',
  tls: 'TLS handshake failed (a plain-HTTP registry needs --insecure-registry)',
  aborted: 'request aborted',
  other: 'transport error',
};

/** Codes along the cause chain, outermost first (undici wraps the syscall error as `cause`). */
function errCodes(err: unknown): string[] {
  const codes: string[] = [];
  let cur: unknown = err;
  for (let i = 0; i < 5 && typeof cur === 'object' && cur !== null; i++) {
    const code = (cur as { code?: unknown }).code;
    if (typeof code === 'string') codes.push(code);
    cur = (cur as { cause?: unknown }).cause;
  }
  return codes;
}

/** The most specific code: a syscall code from deep in the chain beats undici's generic wrapper. */
function errCode(err: unknown): string | undefined {
  const codes = errCodes(err);
  return codes.find((c) => c.startsWith('E') && c !== 'ERR_INVALID_ARG_TYPE') ?? codes[0];
}

export function classifyTransportError(err: unknown): TransportFailure {
  const name = (err as { name?: unknown })?.name;
  if (name === 'AbortError') return 'aborted';
  const code = errCode(err);
  switch (code) {
    case 'ECONNREFUSED':
      return 'refused';
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
    case 'EAI_NONAME':
      return 'dns';
    case 'UND_ERR_CONNECT_TIMEOUT':
    case 'ETIMEDOUT':
      return 'connect-timeout';
    case 'UND_ERR_HEADERS_TIMEOUT':
      return 'headers-timeout';
    case 'UND_ERR_BODY_TIMEOUT':
      return 'body-timeout';
    case 'ECONNRESET':
    case 'EPIPE':
    case 'UND_ERR_SOCKET':
    case 'UND_ERR_CLOSED':
    case 'ECONNABORTED':
    case 'UND_ERR_RES_CONTENT_LENGTH_MISMATCH':
      return 'reset';
    case 'UND_ERR_ABORTED':
    case 'ABORT_ERR':
      return 'aborted';
    default:
      return errCodes(err).some(isTlsCode) ? 'tls' : 'other';
  }
}

/** Whether a fresh attempt may succeed (the server was reached or the link dropped mid-way). */
export function isRetryableTransport(kind: TransportFailure): boolean {
  return kind === 'reset' || kind === 'headers-timeout' || kind === 'body-timeout';
}

function where(subject: RequestSubject): Record<string, string | number | boolean | undefined> {
  return { host: subject.host, repository: subject.repository, kind: subject.kind };
}

export function cancelledError(subject: RequestSubject, cause?: unknown): PullguardError {
  return new PullguardError('CANCELLED', `${subject.kind} request to ${subject.host} cancelled`, { cause, facts: where(subject) });
}

/** Node's TLS errors and OpenSSL's verification codes. */
function isTlsCode(code: string): boolean {
  return /^(ERR_TLS|ERR_SSL)/.test(code) || isCertificateCode(code);
}

/** The peer's certificate was not trusted (`UNABLE_TO_VERIFY_LEAF_SIGNATURE`, `CERT_HAS_EXPIRED`, …). */
function isCertificateCode(code: string): boolean {
  return /CERT|SELF_SIGNED|UNABLE_TO_(GET|VERIFY|DECRYPT|DECODE)|HOSTNAME_MISMATCH/.test(code);
}

export function transportError(subject: RequestSubject, kind: TransportFailure, cause: unknown, attempts = 1): PullguardError {
  if (kind === 'aborted') return cancelledError(subject, cause);
  const untrusted = kind === 'tls' ? errCodes(cause).find(isCertificateCode) : undefined;
  if (untrusted !== undefined) {
    // Reachable but not trusted: a configuration problem, not an outage.
    const reason = untrusted;
    return new PullguardError(
      'REGISTRY_TLS',
      `TLS certificate of registry ${subject.host} could not be verified (${reason}); trust its CA with --certs-dir (<dir>/${subject.host}/ca.crt)`,
      { cause, facts: { ...where(subject), transport: kind } },
    );
  }
  const tries = attempts > 1 ? ` after ${attempts} attempts` : '';
  return new PullguardError(
    'REGISTRY_UNAVAILABLE',
    `registry ${subject.host} is unavailable: ${TRANSPORT_TEXT[kind]}${tries} (${subject.kind} ${subject.display})`,
    { cause, facts: { ...where(subject), transport: kind, attempts } },
  );
}

/** How a read overran its deadline (src/registry/read-deadline.ts), for the message and facts. */
export interface DeadlineOverrun {
  readonly elapsedMs: number;
  readonly allowanceMs: number;
  readonly receivedBytes: number;
  /** Blobs: the declared size and the minimum average rate. */
  readonly sizeBytes?: number;
  readonly minBytesPerSecond?: number;
}

function seconds(ms: number): string {
  return ms % 1000 === 0 ? `${ms / 1000} s` : `${ms} ms`;
}

function rate(bytesPerSecond: number): string {
  return bytesPerSecond >= 1024 && bytesPerSecond % 1024 === 0 ? `${bytesPerSecond / 1024} KiB/s` : `${bytesPerSecond} B/s`;
}

/**
 * A read that took too long overall: the registry counts as unavailable, as for a timeout. The
 * message names only the configured bounds (deterministic, as every message kubelet compares across
 * its credential retries); elapsed time and bytes received are facts.
 */
export function readDeadlineError(subject: RequestSubject, overrun: DeadlineOverrun, cause?: unknown): PullguardError {
  const how =
    overrun.minBytesPerSecond !== undefined && overrun.sizeBytes !== undefined
      ? `transfer slower than the minimum ${rate(overrun.minBytesPerSecond)} after a ${seconds(overrun.allowanceMs)} allowance`
      : `response not complete within ${seconds(overrun.allowanceMs)}`;
  return new PullguardError('REGISTRY_UNAVAILABLE', `registry ${subject.host} is unavailable: ${how} (${subject.kind} ${subject.display})`, {
    cause,
    facts: {
      ...where(subject),
      transport: 'deadline',
      elapsedMs: Math.round(overrun.elapsedMs),
      allowanceMs: overrun.allowanceMs,
      receivedBytes: overrun.receivedBytes,
      sizeBytes: overrun.sizeBytes,
      minBytesPerSecond: overrun.minBytesPerSecond,
    },
  });
}

/** The first distribution error code in a JSON error body, if any. */
export function distributionErrorCode(body: Uint8Array | undefined): string | undefined {
  if (body === undefined || body.length === 0) return undefined;
  try {
    const parsed = JSON.parse(Buffer.from(body).toString('utf8')) as { errors?: { code?: unknown }[] };
    const code = parsed.errors?.[0]?.code;
    return typeof code === 'string' ? code : undefined;
  } catch {
    return undefined;
  }
}

/** A non-success status (after any retries and re-authentication) as a coded error. */
export function statusError(subject: RequestSubject, status: number, body?: Uint8Array, attempts = 1): PullguardError {
  const registryCode = distributionErrorCode(body);
  const facts = { ...where(subject), status, registryCode, attempts };
  let code: ErrorCode;
  let message: string;
  if (status === 404 || registryCode === 'MANIFEST_UNKNOWN' || registryCode === 'BLOB_UNKNOWN' || registryCode === 'NAME_UNKNOWN') {
    code = 'REGISTRY_NOT_FOUND';
    const what = registryCode === 'NAME_UNKNOWN' ? 'repository name unknown' : `${subject.kind} unknown`;
    message = `${what}: ${subject.display} not found`;
  } else if (status === 401) {
    code = 'REGISTRY_UNAUTHORIZED';
    message = `unauthorized: authentication to ${subject.host} for ${subject.repository ?? subject.display} failed (${subject.kind} ${subject.display})`;
  } else if (status === 403 || registryCode === 'DENIED') {
    code = 'REGISTRY_DENIED';
    message = `denied: access to ${subject.display} on ${subject.host} is not allowed`;
  } else if (status === 429 || registryCode === 'TOOMANYREQUESTS') {
    code = 'REGISTRY_TOO_MANY_REQUESTS';
    message = `too many requests: ${subject.host} rate-limited ${subject.kind} ${subject.display}${attempts > 1 ? ` after ${attempts} attempts` : ''}`;
  } else if (status >= 500) {
    code = 'REGISTRY_UNAVAILABLE';
    message = `registry ${subject.host} is unavailable: HTTP ${status}${attempts > 1 ? ` after ${attempts} attempts` : ''} (${subject.kind} ${subject.display})`;
  } else {
    code = 'REGISTRY_PROTOCOL';
    message = `unexpected HTTP ${status} from ${subject.host} for ${subject.kind} ${subject.display}${registryCode !== undefined ? ` (${registryCode})` : ''}`;
  }
  return new PullguardError(code, message, { facts });
}
