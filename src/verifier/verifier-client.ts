/**
 * containerd 2.x's image verifier, the pullguard side: the program an installed verifier script
 * (install.ts) runs for every pull containerd's transfer service makes, after resolving and before
 * fetching. containerd passes `-name <ref> -digest <digest> -stdin-media-type <type>` and the
 * descriptor as JSON on stdin; exit 0 allows, anything else blocks, and stdout is the reason.
 *
 * It asks the running daemon (verifier-server.ts) and prints its answer: allowed → exit 0 with what
 * allowed it; denied → exit 1 with pullguard's one-line denial (`SignatureValidationFailed: …`).
 * Anything that keeps it from a verdict — no daemon, a refused or garbled answer, no answer within
 * `--timeout-ms` (set below containerd's per-verifier timeout, so the reason is printed before
 * containerd kills the process) — blocks too: exit 2 with a line that says why. Fail closed.
 *
 * Imports only node:http and the protocol: it starts in a few milliseconds.
 */
import { request } from 'node:http';
import { MAX_ANSWER_BYTES, MAX_QUESTION_BYTES, MAX_REASON_BYTES, VERIFY_PATH, type VerifyQuestion } from './protocol.js';

export const EXIT_ALLOWED = 0;
export const EXIT_DENIED = 1;
export const EXIT_NO_VERDICT = 2;

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
/** The descriptor is written at once; a stdin that is not containerd's pipe must not hold the verdict up. */
const STDIN_WAIT_MS = 1000;

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
    io.stdout.write(`${bounded(line)}\n`);
    return code;
  };
  if (typeof parsed === 'string') return block(EXIT_NO_VERDICT, `pullguard verifier: ${parsed}; the pull is blocked`);
  if (parsed.socket === undefined)
    return block(EXIT_NO_VERDICT, 'pullguard verifier: no --socket (reinstall it with `pullguard verifier install`); the pull is blocked');
  if (parsed.name === undefined || parsed.digest === undefined)
    return block(EXIT_NO_VERDICT, 'pullguard verifier: -name and -digest are required (containerd passes them); the pull is blocked');
  const deadline = Date.now() + parsed.timeoutMs;
  const descriptor =
    parsed.stdinMediaType !== undefined && io.stdin !== undefined ? await readDescriptor(io.stdin, Math.min(STDIN_WAIT_MS, parsed.timeoutMs / 4)) : undefined;
  if (descriptor?.digest !== undefined && descriptor.digest !== parsed.digest) {
    return block(
      EXIT_NO_VERDICT,
      `pullguard verifier: the descriptor on stdin names ${descriptor.digest.slice(0, 100)}, not -digest ${parsed.digest.slice(0, 100)}; the pull is blocked`,
    );
  }
  const question: VerifyQuestion = {
    name: parsed.name,
    digest: parsed.digest,
    ...(descriptor?.mediaType !== undefined ? { mediaType: descriptor.mediaType } : {}),
    ...(descriptor?.size !== undefined ? { size: descriptor.size } : {}),
  };
  const answer = await ask(parsed.socket, question, Math.max(1, deadline - Date.now()));
  if ('failure' in answer) return block(EXIT_NO_VERDICT, `pullguard verifier: ${answer.failure}; the pull is blocked`);
  if (answer.allowed) {
    io.stdout.write(`${bounded(answer.message)}\n`);
    return EXIT_ALLOWED;
  }
  return block(EXIT_DENIED, answer.message);
}

type Answer = { readonly allowed: boolean; readonly message: string } | { readonly failure: string };

function ask(socket: string, question: VerifyQuestion, timeoutMs: number): Promise<Answer> {
  const body = Buffer.from(JSON.stringify(question));
  if (body.byteLength > MAX_QUESTION_BYTES) return Promise.resolve({ failure: `the question is larger than ${MAX_QUESTION_BYTES} bytes` });
  return new Promise<Answer>((resolve) => {
    let settled = false;
    const settle = (answer: Answer): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      req.destroy();
      resolve(answer);
    };
    const timer = setTimeout(
      () =>
        settle({
          failure: `no verdict from pullguard on ${socket} within ${formatSeconds(timeoutMs)} (pullguard finishes a verification it started and answers the next attempt)`,
        }),
      timeoutMs,
    );
    const req = request(
      {
        socketPath: socket,
        method: 'POST',
        path: VERIFY_PATH,
        headers: { 'content-type': 'application/json', 'content-length': body.byteLength, connection: 'close' },
      },
      (res) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (chunk: Buffer) => {
          size += chunk.byteLength;
          if (size > MAX_ANSWER_BYTES) settle({ failure: `pullguard's answer is larger than ${MAX_ANSWER_BYTES} bytes` });
          else chunks.push(chunk);
        });
        res.once('error', (err) => settle({ failure: `reading pullguard's answer on ${socket}: ${err.message}` }));
        res.once('end', () => {
          let parsed: unknown;
          try {
            parsed = JSON.parse(Buffer.concat(chunks).toString('utf8'));
          } catch {
            settle({ failure: `pullguard answered HTTP ${res.statusCode} with something that is not JSON` });
            return;
          }
          const object = (typeof parsed === 'object' && parsed !== null ? parsed : {}) as Record<string, unknown>;
          if (res.statusCode !== 200) {
            settle({ failure: `pullguard answered HTTP ${res.statusCode}: ${typeof object['error'] === 'string' ? object['error'] : 'no reason given'}` });
          } else if (typeof object['allowed'] !== 'boolean' || typeof object['message'] !== 'string') {
            settle({ failure: 'pullguard answered without a verdict' });
          } else {
            settle({ allowed: object['allowed'], message: object['message'] });
          }
        });
      },
    );
    req.once('error', (err: NodeJS.ErrnoException) => {
      const why =
        err.code === 'ENOENT' || err.code === 'ECONNREFUSED'
          ? `no pullguard daemon answers on ${socket} (${err.code}): is \`pullguard serve\` running with this --verifier-socket?`
          : err.code === 'EACCES'
            ? `may not open ${socket} (EACCES): the verifier must run as the daemon's user (containerd runs it as root)`
            : `asking pullguard on ${socket}: ${err.message}`;
      settle({ failure: why });
    });
    req.end(body);
  });
}

/** The descriptor containerd wrote: media type, digest and size when it parses; undefined otherwise. */
async function readDescriptor(stdin: NodeJS.ReadableStream, waitMs: number): Promise<{ mediaType?: string; digest?: string; size?: number } | undefined> {
  const text = await new Promise<string | undefined>((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const done = (value: string | undefined): void => {
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
    stdin.once('end', () => done(Buffer.concat(chunks).toString('utf8')));
    stdin.once('error', () => done(undefined));
  });
  if (text === undefined) return undefined;
  try {
    const parsed = JSON.parse(text) as Record<string, unknown>;
    return {
      ...(typeof parsed['mediaType'] === 'string' ? { mediaType: parsed['mediaType'] } : {}),
      ...(typeof parsed['digest'] === 'string' ? { digest: parsed['digest'] } : {}),
      ...(typeof parsed['size'] === 'number' ? { size: parsed['size'] } : {}),
    };
  } catch {
    return undefined;
  }
}

/** One line, within what containerd keeps of stdout. */
function bounded(text: string): string {
  const line = text.replace(/[\r\n]+/g, ' ');
  if (Buffer.byteLength(line) <= MAX_REASON_BYTES) return line;
  return `${Buffer.from(line)
    .subarray(0, MAX_REASON_BYTES - 4)
    .toString('utf8')
    .replace(/\uFFFD$/, '')}…`;
}

function formatSeconds(ms: number): string {
  return ms % 1000 === 0 ? `${ms / 1000} s` : `${(ms / 1000).toFixed(1)} s`;
}
