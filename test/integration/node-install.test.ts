/**
 * The README's node install, run as written on a fresh copy of the repository: `npm ci` (which
 * builds dist/ through the `prepare` script) then `npm prune --omit=dev`. The node keeps only the
 * runtime dependencies, and the server starts from there and answers a client.
 *
 * npm runs with --offline: CI's own `npm ci` has just filled the npm cache with every package of the
 * lockfile, and the test must not reach any registry.
 */
import { execFile, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { cp, mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { SERVE_NODE_FLAGS } from '../../src/node-flags.js';
import { packageRoot } from '../../src/util/package-root.js';

const execFileAsync = promisify(execFile);
const INSTALL_TIMEOUT_MS = 10 * 60_000;

/** The files a fresh clone has: tracked ones plus new, not ignored ones (so uncommitted work is tested). */
async function copyCheckout(to: string): Promise<void> {
  const root = packageRoot();
  const { stdout } = await execFileAsync('git', ['ls-files', '-z', '--cached', '--others', '--exclude-standard'], { cwd: root, maxBuffer: 64 << 20 });
  for (const file of stdout.split('\0').filter((f) => f !== '')) {
    if (!existsSync(join(root, file))) continue; // deleted in the work tree, not yet committed
    await mkdir(dirname(join(to, file)), { recursive: true });
    await cp(join(root, file), join(to, file));
  }
}

async function npm(cwd: string, args: readonly string[]): Promise<void> {
  await execFileAsync('npm', [...args, '--offline', '--no-audit', '--no-fund'], { cwd, timeout: INSTALL_TIMEOUT_MS, maxBuffer: 64 << 20 });
}

describe('node install (README: npm ci && npm prune --omit=dev)', () => {
  let installDir: string;
  let stateDir: string;
  beforeAll(async () => {
    installDir = await mkdtemp(join(tmpdir(), 'pullguard-install-'));
    stateDir = await mkdtemp(join(tmpdir(), 'pullguard-install-state-'));
    await copyCheckout(installDir);
    await npm(installDir, ['ci']);
    await npm(installDir, ['prune', '--omit=dev']);
  }, INSTALL_TIMEOUT_MS);
  afterAll(async () => {
    await rm(installDir, { recursive: true, force: true });
    await rm(stateDir, { recursive: true, force: true });
  });

  test('builds dist/ and keeps no dev dependency', async () => {
    expect(existsSync(join(installDir, 'dist/src/main.js'))).toBe(true);
    const manifest = JSON.parse(await readFile(join(installDir, 'package.json'), 'utf8')) as { devDependencies: Record<string, string>; dependencies: Record<string, string> };
    for (const dev of Object.keys(manifest.devDependencies)) expect(existsSync(join(installDir, 'node_modules', dev)), dev).toBe(false);
    for (const dep of Object.keys(manifest.dependencies)) expect(existsSync(join(installDir, 'node_modules', dep)), dep).toBe(true);
  });

  test('the installed server starts, answers a client and stops on SIGTERM', async () => {
    const main = join(installDir, 'dist/src/main.js');
    const socket = join(stateDir, 'pullguard.sock');
    const server = spawn(process.execPath, [...SERVE_NODE_FLAGS, main, 'serve', '--state-dir', stateDir], {
      cwd: installDir,
      stdio: ['ignore', 'ignore', 'pipe'],
      env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/root' },
    });
    let log = '';
    server.stderr.on('data', (chunk: Buffer) => (log += chunk.toString('utf8')));
    const exited = new Promise<number | null>((resolve) => server.once('exit', resolve));
    try {
      while (!log.includes('CRI ImageService listening')) {
        if (server.exitCode !== null) throw new Error(`server exited ${server.exitCode}:\n${log}`);
        await new Promise((r) => setTimeout(r, 50));
      }
      const images = await execFileAsync(process.execPath, [main, 'images', '--socket', socket], { cwd: installDir });
      expect(images.stdout).toMatch(/^IMAGE ID/);
    } finally {
      server.kill('SIGTERM');
    }
    expect(await exited).toBe(0);
    expect(existsSync(socket)).toBe(false);
  });
});
