/**
 * Starts the real `pullguard serve` (compiled dist/src/main.js) as a child process on a unix socket
 * in a temp dir, and gives a grpc-js CRI client for it. Use:
 *   const server = await startPullguard({ args: ['--insecure-registry', registry.host] });
 *   const status = await server.client.call('ImageStatus', { image: { image: 'busybox' } });
 *   await server.stop();
 * `server.logs()` returns every JSON log line so far (for credential scans and warning checks).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createCriImageClient, type CriImageClient } from '../../src/cli/cri-client.js';
import { SERVE_NODE_FLAGS } from '../../src/node-flags.js';
import { packageRoot } from '../../src/util/package-root.js';

/** The compiled server, whether this helper runs from test/ (vitest) or dist/test/ (benchmarks). */
export const MAIN = join(packageRoot(), 'dist/src/main.js');

export interface RunningPullguard {
  readonly stateDir: string;
  readonly socket: string;
  readonly client: CriImageClient;
  readonly process: ChildProcess;
  logs(): string[];
  logRecords(): Record<string, unknown>[];
  /** SIGTERM and wait; removes the state dir unless keepState. */
  stop(options?: { keepState?: boolean; signal?: NodeJS.Signals }): Promise<number | null>;
}

/**
 * What a child started with a clean environment still needs to share the test's clock: libfaketime's
 * variables, when the suite runs under `faketime` (npm run test:clock-ahead, or a whole run moved a
 * year ahead). Without them the server would judge certificates and signatures the test made "in
 * the future" at the real time.
 */
export function clockEnv(): Record<string, string> {
  return Object.fromEntries(Object.entries(process.env).filter((e): e is [string, string] => e[1] !== undefined && /^(LD_PRELOAD|FAKETIME\w*)$/.test(e[0])));
}

const running = new Set<ChildProcess>();
process.once('exit', () => {
  for (const child of running) child.kill('SIGKILL');
});

export async function startPullguard(options: { args?: string[]; stateDir?: string; env?: Record<string, string> } = {}): Promise<RunningPullguard> {
  const stateDir = options.stateDir ?? (await mkdtemp(join(tmpdir(), 'pullguard-')));
  const socket = join(stateDir, 'pullguard.sock');
  const child = spawn(
    process.execPath,
    [...SERVE_NODE_FLAGS, MAIN, 'serve', '--state-dir', stateDir, '--socket', socket, '--log-level', 'debug', ...(options.args ?? [])],
    {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/root', ...clockEnv(), ...(options.env ?? {}) },
    },
  );
  running.add(child);
  const lines: string[] = [];
  let buffered = '';
  const collect = (chunk: Buffer): void => {
    buffered += chunk.toString('utf8');
    const parts = buffered.split('\n');
    buffered = parts.pop() ?? '';
    lines.push(...parts.filter((l) => l !== ''));
  };
  child.stderr!.on('data', collect);
  child.stdout!.on('data', collect);
  const exited = new Promise<number | null>((resolve) =>
    child.once('exit', (code) => {
      running.delete(child);
      resolve(code);
    }),
  );

  const deadline = Date.now() + 20_000;
  while (!lines.some((l) => l.includes('CRI ImageService listening'))) {
    if (child.exitCode !== null || Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`pullguard did not start (exit ${child.exitCode}):\n${lines.join('\n')}${buffered}`);
    }
    await new Promise((r) => setTimeout(r, 25));
  }
  const client = createCriImageClient(socket);
  return {
    stateDir,
    socket,
    client,
    process: child,
    logs: () => [...lines],
    logRecords: () =>
      lines.flatMap((l) => {
        try {
          return [JSON.parse(l) as Record<string, unknown>];
        } catch {
          return [];
        }
      }),
    async stop({ keepState = false, signal = 'SIGTERM' } = {}) {
      client.close();
      if (child.exitCode === null) child.kill(signal);
      const code = await exited;
      if (!keepState && options.stateDir === undefined && existsSync(stateDir)) await rm(stateDir, { recursive: true, force: true });
      return code;
    },
  };
}
