/**
 * The daemon's endpoint for containerd's image verifier: HTTP/1.1, the name and digest in the query,
 * containerd's descriptor as the body, one line of text as the answer whose status is the verdict
 * (protocol.ts), on a unix socket of its own, mode 0600 (bound under umask 0177, so never wider even
 * for an instant).
 *
 * Why its own socket and not a method on the CRI socket: the CRI socket is mode 0660 for kubelet's
 * group, and its model is "whoever may open it may pull". A verifier question makes pullguard
 * resolve and verify an arbitrary name, so it must be asked only by the runtime that runs verifiers
 * (root); a separate 0600 socket keeps it to the daemon's own user without touching the CRI socket.
 * Why HTTP and not gRPC: the client is a process containerd starts for every pull, within its
 * per-verifier timeout; node:http starts in a few milliseconds where loading grpc-js and the CRI
 * protos costs far more.
 *
 * Bounds: a question over MAX_QUESTION_BYTES is refused (413) unread; headers and body must arrive
 * within `requestTimeoutMs`; at most `maxConnections` connections at once; an answer not ready
 * within `answerTimeoutMs` is a 504 (the verification itself goes on, bounded by the registry and
 * signature deadlines, and its verdict then answers the retry at once).
 */
import { unlink } from 'node:fs/promises';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { Logger } from '../log/logger.js';
import { listenOnUnixSocket, prepareSocketPath } from '../util/unix-socket.js';
import { MAX_MESSAGE_BYTES, MAX_QUESTION_BYTES, oneLineWithin, STATUS_ALLOWED, STATUS_DENIED, VERIFY_PATH } from './protocol.js';
import type { JudgedQuestion } from './verifier-verdicts.js';

export interface VerifierServerOptions {
  readonly socketPath: string;
  readonly logger: Logger;
  /** Judges one question (judgeVerifierQuestion bound to the daemon's pulls, index and in-flight images). */
  readonly judge: (question: {
    readonly name: string;
    readonly digest: string;
    readonly logFields: Readonly<Record<string, unknown>>;
  }) => Promise<JudgedQuestion>;
  /** Headers and body of a question must arrive within this; default 5 s. */
  readonly requestTimeoutMs?: number;
  /** A 504 after this; default 120 s. */
  readonly answerTimeoutMs?: number;
  /** Default 64. */
  readonly maxConnections?: number;
}

export interface RunningVerifierServer {
  readonly socketPath: string;
  /** Refuses new questions (503), waits up to graceMs for answers in progress, then closes every connection and removes the socket. */
  close(graceMs: number): Promise<void>;
}

const MAX_LOGGED_NAME = 512;

export async function startVerifierServer(options: VerifierServerOptions): Promise<RunningVerifierServer> {
  const { socketPath, logger } = options;
  const answerTimeoutMs = options.answerTimeoutMs ?? 120_000;
  await prepareSocketPath(socketPath, 'verifier socket');
  let closing = false;
  let active = 0;
  let idle: (() => void) | undefined;
  const sockets = new Set<Socket>();

  /** One line of text; the status is the verdict (protocol.ts). */
  const send = (res: ServerResponse, status: number, line: string): void => {
    if (res.headersSent || res.destroyed) return;
    const bytes = Buffer.from(`${oneLineWithin(line, MAX_MESSAGE_BYTES)}\n`);
    res.writeHead(status, { 'content-type': 'text/plain; charset=utf-8', 'content-length': bytes.byteLength, connection: 'close' });
    res.end(bytes);
  };

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    if (closing) return send(res, 503, 'pullguard is shutting down');
    const url = new URL(req.url ?? '/', 'http://pullguard');
    if (url.pathname !== VERIFY_PATH) return send(res, 404, `no such endpoint ${JSON.stringify(url.pathname.slice(0, 64))}`);
    if (req.method !== 'POST') return send(res, 405, 'POST only');
    const declared = Number(req.headers['content-length'] ?? NaN);
    if (declared > MAX_QUESTION_BYTES) return send(res, 413, `descriptor larger than ${MAX_QUESTION_BYTES} bytes`);
    const body = await readBounded(req, MAX_QUESTION_BYTES);
    if (body === undefined) return send(res, 413, `descriptor larger than ${MAX_QUESTION_BYTES} bytes`);
    const question = parseQuestion(url.searchParams, body);
    if (typeof question === 'string') return send(res, 400, question);
    const started = performance.now();
    const logFields = {
      verifier: {
        name: question.name.slice(0, MAX_LOGGED_NAME),
        digest: question.digest,
        ...(question.mediaType !== undefined ? { mediaType: question.mediaType } : {}),
      },
    };
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<undefined>((resolve) => (timer = setTimeout(() => resolve(undefined), answerTimeoutMs)));
    const judged = options.judge({ name: question.name, digest: question.digest, logFields });
    // The verification goes on if we stop waiting: its verdict answers the retry.
    judged.catch(() => undefined);
    const answer = await Promise.race([judged, late]).finally(() => clearTimeout(timer));
    const ms = Math.round(performance.now() - started);
    if (answer === undefined) {
      logger.warn({ ...logFields, ms }, 'image verifier: no verdict in time; the verification goes on');
      return send(res, 504, `no verdict within ${answerTimeoutMs / 1000} s; the verification goes on and answers the next attempt`);
    }
    logger.info(
      {
        ...logFields,
        allowed: answer.allowed,
        cached: answer.cached,
        ms,
        ...(answer.manifestDigest !== undefined ? { manifestDigest: answer.manifestDigest } : {}),
        ...(answer.allowed ? {} : { reason: answer.message }),
      },
      answer.allowed ? 'image verifier: allowed' : 'image verifier: blocked',
    );
    send(res, answer.allowed ? STATUS_ALLOWED : STATUS_DENIED, answer.message);
  };

  const server = createServer(
    { requestTimeout: options.requestTimeoutMs ?? 5000, headersTimeout: options.requestTimeoutMs ?? 5000, maxHeaderSize: 8192, keepAliveTimeout: 1000 },
    (req, res) => {
      active += 1;
      handle(req, res)
        .catch((err: unknown) => {
          logger.error({ err: err instanceof Error ? err.message : String(err) }, 'image verifier endpoint failed');
          send(res, 500, 'internal error');
        })
        .finally(() => {
          active -= 1;
          if (active === 0) idle?.();
        });
    },
  );
  server.maxConnections = options.maxConnections ?? 64;
  server.on('connection', (socket: Socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });
  server.on('clientError', (_err, socket) => socket.destroy());

  await listenOnUnixSocket(server, socketPath, 0o600);
  logger.info({ socket: socketPath }, 'image verifier endpoint listening');

  let closed: Promise<void> | undefined;
  return {
    socketPath,
    close(graceMs: number): Promise<void> {
      closed ??= (async () => {
        closing = true;
        const listenerClosed = new Promise<void>((resolve) => server.close(() => resolve()));
        if (active > 0) {
          await new Promise<void>((resolve) => {
            const timer = setTimeout(resolve, graceMs);
            idle = () => {
              clearTimeout(timer);
              resolve();
            };
          });
        }
        for (const socket of sockets) socket.destroy();
        await listenerClosed;
        await unlink(socketPath).catch(() => undefined);
      })();
      return closed;
    },
  };
}

/** The body, or undefined once it passes `max` bytes (the rest is not read). */
function readBounded(req: IncomingMessage, max: number): Promise<Buffer | undefined> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.byteLength;
      if (size > max) {
        req.destroy();
        resolve(undefined);
        return;
      }
      chunks.push(chunk);
    });
    req.once('end', () => resolve(Buffer.concat(chunks)));
    req.once('error', reject);
  });
}

/**
 * The name and digest from the query; containerd's descriptor from the body, when it parses (its
 * media type goes to the log). A descriptor that names another digest than `digest` is refused:
 * containerd never sends one, so something else is asking.
 */
function parseQuestion(query: URLSearchParams, body: Buffer): { name: string; digest: string; mediaType?: string } | string {
  const name = query.get('name');
  const digest = query.get('digest');
  if (name === null || name === '') return 'name: a non-empty query parameter expected';
  if (digest === null || digest === '') return 'digest: a non-empty query parameter expected';
  let descriptor: Record<string, unknown> = {};
  try {
    const parsed: unknown = body.byteLength === 0 ? {} : JSON.parse(body.toString('utf8'));
    if (typeof parsed === 'object' && parsed !== null) descriptor = parsed as Record<string, unknown>;
  } catch {
    // Not containerd's descriptor: judged by name and digest alone, as when there is none.
  }
  const { digest: described, mediaType } = descriptor;
  if (typeof described === 'string' && described !== digest)
    return `the descriptor on stdin names ${described.slice(0, 100)}, not -digest ${digest.slice(0, 100)}`;
  return { name, digest, ...(typeof mediaType === 'string' && mediaType.length <= 256 ? { mediaType } : {}) };
}
