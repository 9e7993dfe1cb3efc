/**
 * containerd 2.x's image verifier on node, the fallback where no perl is installed (perl-client.ts
 * is the default: node takes ~100 ms to start, perl ~3 ms, and containerd runs a verifier for every
 * pull). An installed verifier script (install.ts) runs it for every pull containerd's transfer
 * service makes, after resolving and before fetching: containerd passes `-name <ref> -digest
 * <digest> -stdin-media-type <type>` and the descriptor as JSON on stdin; exit 0 allows, anything
 * else blocks, and stdout is the reason.
 *
 * It asks the running daemon (verifier-server.ts, protocol.ts) and prints its answer: allowed → exit
 * 0 with what allowed it; denied → exit 1 with pullguard's one-line denial (`SignatureValidationFailed: …`).
 * Anything that keeps it from a verdict — no daemon, a refused or garbled answer, no answer within
 * `--timeout-ms` (set below containerd's per-verifier timeout, so the reason is printed before
 * containerd kills the process) — blocks too: exit 2 with a line that says why. Fail closed. The
 * perl client says the same in the same words; test/unit/verifier holds both to it.
 *
 * Imports only node:http and the protocol: it starts as fast as node can.
 */
import { request } from 'node:http';
import {
  clientSays,
  EXIT_ALLOWED,
  EXIT_DENIED,
  EXIT_NO_VERDICT,
  MAX_ANSWER_BYTES,
  MAX_QUESTION_BYTES,
  MAX_REASON_BYTES,
  oneLineWithin,
  STATUS_ALLOWED,
  STATUS_DENIED,
  STDIN_WAIT_MS,
  VERIFY_PATH,
} from './protocol.js';

export interface VerifierClientIo {
  readonly stdout: NodeJS.WritableStream;
  /** containerd sends stderr to its debug log. */
  readonly stderr: NodeJS.WritableStream;
  /** The descriptor containerd writes; undefined: do not read one. */
  readonly stdin?: NodeJS.ReadableStream;
}

interface Arguments {
  readonly socket?: string;
  readonly timeoutMs: number;
  readonly name?: string;
  readonly digest?: string;
  readonly stdinMediaType?: string;
}

const DEFAULT_TIMEOUT_MS = 9000;

/** Go's flag syntax as containerd uses it (`-name X`, also `--name X` and `-name=X`); unknown flags are skipped with their value. */
export function parseVerifierArguments(argv: readonly string[]): Arguments | string {
  const values = new Map<string, string>();
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    const match = /^--?([A-Za-z][\w-]*)(?:=(.*))?$/.exec(arg);
    if (match === null) return `unexpected argument ${JSON.stringify(arg.slice(0, 128))}`;
    const flag = match[1]!;
    let value = match[2];
    if (value === undefined) {
      const next = argv[i + 1];
      if (next === undefined || (next.startsWith('-') && !['socket', 'timeout-ms', 'name', 'digest', 'stdin-media-type'].includes(flag))) {
        values.set(flag, '');
        continue;
      }
      value = next;
      i++;
    }
    values.set(flag, value);
  }
  const timeout = values.get('timeout-ms');
  const timeoutMs = timeout === undefined ? DEFAULT_TIMEOUT_MS : Number(timeout);
  if (!Number.isInteger(timeoutMs) || timeoutMs < 1) return `--timeout-ms ${JSON.stringify(timeout)} is not a positive integer`;
  const pick = (flag: string): Record<string, string> =>
    values.get(flag) !== undefined && values.get(flag) !== '' ? { [flag === 'stdin-media-type' ? 'stdinMediaType' : flag]: values.get(flag)! } : {};
  return { timeoutMs, ...pick('socket'), ...pick('name'), ...pick('digest'), ...pick('stdin-media-type') };
}

export async function runVerifierClient(argv: readonly string[], io: VerifierClientIo): Promise<number> {
  const parsed = parseVerifierArguments(argv);
  const block = (code: number, line: string): number => {
    // One line, within what containerd keeps of stdout.
    io.stdout.write(`${oneLineWithin(line, MAX_REASON_BYTES)}\n`);
    return code;
  };
  if (typeof parsed === 'string') return block(EXIT_NO_VERDICT, clientSays.blocked(parsed));
  if (parsed.socket === undefined) return block(EXIT_NO_VERDICT, clientSays.blocked('no --socket (reinstall it with `pullguard verifier install`)'));
  if (parsed.name === undefined || parsed.digest === undefined) return block(EXIT_NO_VERDICT, clientSays.blocked(clientSays.missingArguments));
  const deadline = Date.now() + parsed.timeoutMs;
  // The descriptor goes to the daemon as containerd wrote it; a stdin that is not containerd's pipe must not hold the verdict up.
  const descriptor =
    parsed.stdinMediaType !== undefined && io.stdin !== undefined ? await readStdin(io.stdin, Math.min(STDIN_WAIT_MS, parsed.timeoutMs / 4)) : undefined;
  const answer = await ask(parsed.socket, parsed.name, parsed.digest, descriptor ?? Buffer.alloc(0), Math.max(1, deadline - Date.now()));
  if ('failure' in answer) return block(EXIT_NO_VERDICT, clientSays.blocked(answer.failure));
  if (answer.status === STATUS_ALLOWED) return block(EXIT_ALLOWED, answer.line);
  if (answer.status === STATUS_DENIED) return block(EXIT_DENIED, answer.line);
  return block(EXIT_NO_VERDICT, clientSays.blocked(clientSays.answeredStatus(answer.status, answer.line)));
}

type Answer = { readonly status: number; readonly line: string } | { readonly failure: string };

function ask(socket: string, name: string, digest: string, descriptor: Buffer, timeoutMs: number): Promise<Answer> {
  return new Promise<Answer>((resolve) => {
    let settled = false;
    const settle = (answer: Answer): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      req.destroy();
      resolve(answer);
    };
    const timer = setTimeout(() => settle({ failure: clientSays.noVerdictWithin(socket, timeoutMs) }), timeoutMs);
    const req = request(
      {
        socketPath: socket,
        method: 'POST',
        path: `${VERIFY_PATH}?${new URLSearchParams({ name, digest }).toString()}`,
        headers: { host: 'pullguard', 'content-type': 'application/json', 'content-length': descriptor.byteLength, connection: 'close' },
      },
      (res) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (chunk: Buffer) => {
          size += chunk.byteLength;
          if (size > MAX_ANSWER_BYTES) settle({ failure: clientSays.answerTooLarge });
          else chunks.push(chunk);
        });
        res.once('error', (err) => settle({ failure: `reading pullguard's answer on ${socket}: ${err.message}` }));
        res.once('end', () => settle({ status: res.statusCode ?? 0, line: Buffer.concat(chunks).toString('utf8').trim() }));
      },
    );
    req.once('error', (err: NodeJS.ErrnoException) => {
      const why =
        err.code === 'ECONNRESET'
          ? clientSays.closedEarly(socket)
          : err.code === 'ENOENT' || err.code === 'ECONNREFUSED'
            ? clientSays.noDaemon(socket, err.code)
            : err.code === 'EACCES'
              ? clientSays.mayNotOpen(socket)
              : `asking pullguard on ${socket}: ${err.message}`;
      settle({ failure: why });
    });
    req.end(descriptor);
  });
}

/** What containerd wrote on stdin, once it is closed; undefined when it is larger than a question may be or not closed in time. */
function readStdin(stdin: NodeJS.ReadableStream, waitMs: number): Promise<Buffer | undefined> {
  return new Promise<Buffer | undefined>((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const done = (value: Buffer | undefined): void => {
      clearTimeout(timer);
      stdin.removeAllListeners('data');
      stdin.pause();
      resolve(value);
    };
    const timer = setTimeout(() => done(undefined), waitMs);
    stdin.on('data', (chunk: Buffer | string) => {
      const buffer = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
      size += buffer.byteLength;
      if (size > MAX_QUESTION_BYTES) done(undefined);
      else chunks.push(buffer);
    });
    stdin.once('end', () => done(Buffer.concat(chunks)));
    stdin.once('error', () => done(undefined));
  });
}
