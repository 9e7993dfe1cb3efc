/**
 * The node harness's processes: each one spawned here is remembered by PID, logs to a file of its
 * own, and is stopped by that PID (SIGTERM, then SIGKILL after a grace period). Whatever is still
 * running when the test process exits is SIGKILLed by PID.
 *
 *   const etcd = await spawnLogged('etcd', '/…/etcd', ['--data-dir', …], logDir);
 *   etcd.pid; etcd.log()                  // the whole log so far (a file, so it survives restarts)
 *   await etcd.stop();                    // SIGTERM, 10 s, SIGKILL
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, readFileSync, type WriteStream } from 'node:fs';
import { join } from 'node:path';

export interface LoggedProcess {
  readonly name: string;
  readonly pid: number;
  readonly child: ChildProcess;
  readonly logPath: string;
  /** The log file's content (every start of this name appends to it). */
  log(): string;
  /** The last `chars` characters of the log. */
  tail(chars?: number): string;
  exited(): boolean;
  /** Resolves with the exit code (or the signal) once the process is gone. */
  readonly exit: Promise<number | string>;
  /** SIGTERM (or `signal`), then SIGKILL after `graceMs`; resolves when the process is gone. */
  stop(options?: { signal?: NodeJS.Signals; graceMs?: number }): Promise<void>;
}

const live = new Map<number, ChildProcess>();
function killAll(): void {
  for (const [pid, child] of live) {
    if (child.exitCode === null && child.signalCode === null) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
  }
}
process.once('exit', killAll);
// A runner stopped by a signal would not run 'exit' handlers (the other helpers' too): exit instead.
for (const [signal, code] of [
  ['SIGINT', 130],
  ['SIGTERM', 143],
  ['SIGHUP', 129],
] as const) {
  process.once(signal, () => process.exit(code));
}

/** PIDs of the processes this module started that are still running (for leak checks). */
export function livePids(): number[] {
  return [...live.keys()];
}

export function spawnLogged(
  name: string,
  command: string,
  args: readonly string[],
  logDir: string,
  options: { env?: NodeJS.ProcessEnv; cwd?: string } = {},
): LoggedProcess {
  const logPath = join(logDir, `${name}.log`);
  const stream: WriteStream = createWriteStream(logPath, { flags: 'a' });
  stream.write(`=== ${new Date().toISOString()} ${command} ${args.join(' ')}\n`);
  const child = spawn(command, [...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: options.env ?? process.env,
    ...(options.cwd !== undefined ? { cwd: options.cwd } : {}),
  });
  if (child.pid === undefined) throw new Error(`${name}: could not start ${command}`);
  const pid = child.pid;
  live.set(pid, child);
  child.stdout?.pipe(stream, { end: false });
  child.stderr?.pipe(stream, { end: false });
  const exit = new Promise<number | string>((resolve) => {
    child.once('exit', (code, signal) => {
      live.delete(pid);
      // Let the pipes drain into the file before closing it.
      setTimeout(() => {
        stream.end(`=== exited ${code ?? signal}\n`);
        resolve(code ?? signal ?? 'unknown');
      }, 50);
    });
  });
  const read = (): string => {
    try {
      return readFileSync(logPath, 'utf8');
    } catch {
      return '';
    }
  };
  return {
    name,
    pid,
    child,
    logPath,
    log: read,
    tail: (chars = 4000) => read().slice(-chars),
    exited: () => child.exitCode !== null || child.signalCode !== null,
    exit,
    async stop({ signal = 'SIGTERM', graceMs = 10_000 } = {}) {
      if (child.exitCode !== null || child.signalCode !== null) {
        await exit;
        return;
      }
      process.kill(pid, signal);
      const timer = new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), graceMs));
      if ((await Promise.race([exit, timer])) === 'timeout' && child.exitCode === null && child.signalCode === null) {
        process.kill(pid, 'SIGKILL');
      }
      await exit;
    },
  };
}

/** Polls `probe` until it returns a value other than undefined, or throws with `describe()`'s text after `timeoutMs`. */
export async function waitFor<T>(
  what: string,
  probe: () => Promise<T | undefined> | T | undefined,
  options: { timeoutMs?: number; intervalMs?: number; describe?: () => string } = {},
): Promise<T> {
  const deadline = Date.now() + (options.timeoutMs ?? 60_000);
  let lastError = '';
  for (;;) {
    try {
      const value = await probe();
      if (value !== undefined) return value;
    } catch (err) {
      lastError = (err as Error).message;
    }
    if (Date.now() > deadline) {
      throw new Error(
        `timed out waiting for ${what}${lastError !== '' ? ` (last error: ${lastError})` : ''}${options.describe !== undefined ? `\n${options.describe()}` : ''}`,
      );
    }
    await new Promise((r) => setTimeout(r, options.intervalMs ?? 250));
  }
}
