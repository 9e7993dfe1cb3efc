/**
 * The wire between containerd's image verifier (verifier-client.ts, one short process per pull) and
 * the pullguard daemon (verifier-server.ts): one JSON request and one JSON answer over HTTP/1.1 on a
 * unix socket of its own (mode 0600, next to the CRI socket). Shared by both sides; imports nothing,
 * so the client starts fast.
 */

/** The one endpoint: POST a VerifyQuestion, get a VerifyAnswer (HTTP 200) or an ErrorAnswer. */
export const VERIFY_PATH = '/v1/verify';

/** A question is a name and a digest (and the descriptor containerd gave): far below this. */
export const MAX_QUESTION_BYTES = 64 * 1024;

/** An answer's message is one line of at most 2 KiB (cri/status.ts bounds it); this bounds the body. */
export const MAX_ANSWER_BYTES = 64 * 1024;

/** The daemon sends at most this much of a message, as one line (pullguard's own messages are ≤ 2 KiB). */
export const MAX_MESSAGE_BYTES = 8 * 1024;

/** containerd cuts a verifier's stdout at 32 KiB: the client never prints more than this. */
export const MAX_REASON_BYTES = 32 * 1024 - 64;

export interface VerifyQuestion {
  /** containerd's `-name`: the reference as the pull named it. */
  readonly name: string;
  /** containerd's `-digest`: what that name resolved to (an index digest for a multi-platform image). */
  readonly digest: string;
  /** The descriptor containerd wrote on stdin, when it parsed: media type and size (for the log). */
  readonly mediaType?: string;
  readonly size?: number;
}

export interface VerifyAnswer {
  readonly allowed: boolean;
  /**
   * One line. Denied: pullguard's denial line, as its CRI socket would answer PullImage
   * (`SignatureValidationFailed: Source image rejected: …`, `RegistryUnavailable: …`).
   * Allowed: what allowed it.
   */
  readonly message: string;
  /** True when pullguard had already allowed that digest (its index or a pull in flight): no new signature phase. */
  readonly cached: boolean;
}

/** Any status but 200: the question was not judged (malformed, too large, server shutting down). */
export interface ErrorAnswer {
  readonly error: string;
}
