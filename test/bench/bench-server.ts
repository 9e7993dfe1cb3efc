/**
 * Starts the real `pullguard serve` for a benchmark. The minimal logic of
 * test/helpers/pullguard-server.ts, copied because that helper resolves dist/src/main.js relative
 * to its source location and so looks for dist/dist/src/main.js when run compiled under plain node.
 * Keeps only the last lines of output (a load run must not grow the bench's own memory).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createCriImageClient, type CriImageClient } from '../../src/cli/cri-client.js';

/** dist/test/bench/bench-server.js → dist/src/main.js */
const MAIN = fileURLToPath(new URL('../../src/main.js', import.meta.url));

export interface BenchServer {
  readonly stateDir: string;
  readonly socket: string;
  readonly client: CriImageClient;
  readonly pid: number;
  /** The last output lines (for error reports). */
  tail(): string[];
  /** SIGTERM and wait; removes the state dir unless it was given by the caller. */
  stop(): Promise<void>;
}

const running = new Set<ChildProcess>();
process.once('exit', () => {
  for (const child of running) child.kill('SIGKILL');
});

export async function spawnPullguard(args: readonly string[], options: { stateDir?: string; keepLines?: number } = {}): Promise<BenchServer> {
  const keepLines = options.keepLines ?? 200;
  const stateDir = options.stateDir ?? (await mkdtemp(join(tmpdir(), 'pullguard-bench-state-')));
  const socket = join(stateDir, 'pullguard.sock');
  const child = spawn(process.execPath, [MAIN, 'serve', '--state-dir', stateDir, '--socket', socket, ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/root' },
  });
  running.add(child);
  const lines: string[] = [];
  let ready = false;
  let partial = '';
  const collect = (chunk: Buffer): void => {
    partial += chunk.toString('utf8');
    const parts = partial.split('\n');
    partial = parts.pop() ?? '';
    for (const line of parts) {
      if (line === '') continue;
      if (!ready && line.includes('CRI ImageService listening')) ready = true;
      lines.push(line);
      if (lines.length > keepLines) lines.shift();
    }
  };
  child.stdout!.on('data', collect);
  child.stderr!.on('data', collect);
  const exited = new Promise<void>((resolve) => child.once('exit', () => {
    running.delete(child);
    resolve();
  }));

  const deadline = Date.now() + 60_000;
  while (!ready) {
    if (child.exitCode !== null || Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`pullguard did not start (exit ${child.exitCode}):\n${lines.join('\n')}${partial}`);
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  const client = createCriImageClient(socket);
  return {
    stateDir,
    socket,
    client,
    pid: child.pid!,
    tail: () => [...lines],
    async stop() {
      client.close();
      if (child.exitCode === null) child.kill('SIGTERM');
      const killer = setTimeout(() => child.kill('SIGKILL'), 15_000);
      await exited;
      clearTimeout(killer);
      if (options.stateDir === undefined) await rm(stateDir, { recursive: true, force: true });
    },
  };
}
