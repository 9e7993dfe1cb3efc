/**
 * The wire between containerd's image verifier (a short process per pull: perl-client.ts, or
 * verifier-client.ts on node) and the pullguard daemon (verifier-server.ts): HTTP/1.1 on a unix
 * socket of its own (mode 0600, next to the CRI socket), plain enough for a client that has no JSON
 * parser and starts in a few milliseconds.
 *
 *   POST /v1/verify?name=<containerd's -name>&digest=<containerd's -digest>   (percent-encoded)
 *   body: the descriptor containerd wrote on stdin, as it wrote it (may be empty)
 *
 * The answer is one line of text/plain. Its status is the verdict:
 *   200  allowed: what allowed it                           → the verifier exits 0
 *   403  denied: pullguard's denial line, as its CRI socket would answer PullImage
 *        (`SignatureValidationFailed: Source image rejected: …`, `RegistryUnavailable: …`) → exit 1
 *   any other: not judged (malformed, too large, late, shutting down): why   → exit 2
 * Shared by both sides; imports nothing, so the node client starts fast.
 */

/** The one endpoint. */
export const VERIFY_PATH = '/v1/verify';

/** The descriptor containerd writes is a few hundred bytes: far below this. */
export const MAX_QUESTION_BYTES = 64 * 1024;

/** An answer (status line, headers, one line of body) is far below this. */
export const MAX_ANSWER_BYTES = 64 * 1024;

/** The daemon sends at most this much of a message, as one line (pullguard's own messages are ≤ 2 KiB). */
export const MAX_MESSAGE_BYTES = 8 * 1024;

/** containerd cuts a verifier's stdout at 32 KiB: a client never prints more than this. */
export const MAX_REASON_BYTES = 32 * 1024 - 64;

/** A client reads the descriptor on stdin for at most this long (or a quarter of its timeout): containerd writes it at once. */
export const STDIN_WAIT_MS = 1000;

/** The statuses that carry a verdict. */
export const STATUS_ALLOWED = 200;
export const STATUS_DENIED = 403;

/** The verifier's exit codes, as containerd reads them: 0 allows, anything else blocks. */
export const EXIT_ALLOWED = 0;
export const EXIT_DENIED = 1;
export const EXIT_NO_VERDICT = 2;

/** What the daemon decided on one question. */
export interface VerifyAnswer {
  readonly allowed: boolean;
  /** One line: what allowed it, or pullguard's denial line. */
  readonly message: string;
  /** True when pullguard had already allowed that digest (its index or a pull in flight): no new signature phase. */
  readonly cached: boolean;
}

/**
 * What a client says when it gives containerd no verdict: the node client calls these, and the perl
 * client has them written into it at install (perl-client.ts), so both say the same in the same words.
 */
export const clientSays = {
  /** Every line that blocks a pull without a verdict (exit 2). */
  blocked: (why: string): string => `pullguard verifier: ${why}; the pull is blocked`,
  missingArguments: '-name and -digest are required (containerd passes them)',
  noDaemon: (socket: string, code: 'ENOENT' | 'ECONNREFUSED'): string =>
    `no pullguard daemon answers on ${socket} (${code}): is \`pullguard serve\` running with this --verifier-socket?`,
  mayNotOpen: (socket: string): string => `may not open ${socket} (EACCES): the verifier must run as the daemon's user (containerd runs it as root)`,
  closedEarly: (socket: string): string => `pullguard on ${socket} closed the connection without an answer (did it stop?)`,
  noVerdictWithin: (socket: string, timeoutMs: number): string =>
    `no verdict from pullguard on ${socket} within ${formatSeconds(timeoutMs)} (pullguard finishes a verification it started and answers the next attempt)`,
  answerTooLarge: `pullguard's answer is larger than ${MAX_ANSWER_BYTES} bytes`,
  noReason: 'no reason given',
  answeredStatus: (status: number | string, line: string): string => `pullguard answered HTTP ${status}: ${line || clientSays.noReason}`,
} as const;

/** `text` as one line of at most `maxBytes` of UTF-8, cut with `…` (never inside a character): what the daemon sends, what a client prints. */
export function oneLineWithin(text: string, maxBytes: number): string {
  const line = text.replace(/[\r\n]+/g, ' ');
  if (Buffer.byteLength(line) <= maxBytes) return line;
  return `${Buffer.from(line)
    .subarray(0, maxBytes - 4)
    .toString('utf8')
    .replace(/\uFFFD$/, '')}…`;
}

/** `1 s`, `0.3 s`: how a client says how long it waited. */
function formatSeconds(ms: number): string {
  return ms % 1000 === 0 ? `${ms / 1000} s` : `${(ms / 1000).toFixed(1)} s`;
}
