/**
 * The README's node install, read from the README and run as written on a fresh copy of the
 * repository: `npm ci` (which builds dist/ through the `prepare` script) then `npm prune --omit=dev`. The node keeps only the
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
import { clockEnv } from '../helpers/pullguard-server.js';

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

/** The install command exactly as README's "Running on a node" documents it. */
async function documentedInstallCommand(): Promise<string> {
  const readme = await readFile(join(packageRoot(), 'README.md'), 'utf8');
  const command = /in a checkout at `\/opt\/pullguard`, run\s+`([^`]+)`/.exec(readme)?.[1];
  if (command === undefined) throw new Error('README no longer documents the node install as "in a checkout at `/opt/pullguard`, run `…`"');
  return command;
}

describe('node install (README: npm ci && npm prune --omit=dev)', () => {
  let installDir: string;
  let stateDir: string;
  let installOutput = '';
  beforeAll(async () => {
    installDir = await mkdtemp(join(tmpdir(), 'pullguard-install-'));
    stateDir = await mkdtemp(join(tmpdir(), 'pullguard-install-state-'));
    await copyCheckout(installDir);
    const command = await documentedInstallCommand();
    expect(command).toBe('npm ci && npm prune --omit=dev');
    const install = await execFileAsync('bash', ['-c', command], {
      cwd: installDir,
      timeout: INSTALL_TIMEOUT_MS,
      maxBuffer: 64 << 20,
      env: { ...process.env, npm_config_offline: 'true', npm_config_audit: 'false', npm_config_fund: 'false' },
    });
    installOutput = `${install.stdout}${install.stderr}`;
  }, INSTALL_TIMEOUT_MS);
  afterAll(async () => {
    await rm(installDir, { recursive: true, force: true });
    await rm(stateDir, { recursive: true, force: true });
  });

  test('builds dist/ and keeps no dev-only package', async () => {
    expect(existsSync(join(installDir, 'dist/src/main.js'))).toBe(true);
    // The lockfile marks what only the dev dependencies need (`dev: true`); @types/node, say, stays
    // because a runtime dependency needs it too.
    const lock = JSON.parse(await readFile(join(installDir, 'package-lock.json'), 'utf8')) as { packages: Record<string, { dev?: boolean }> };
    const devOnly = Object.entries(lock.packages)
      .filter(([path, entry]) => path !== '' && entry.dev === true)
      .map(([path]) => path);
    expect(devOnly).toEqual(expect.arrayContaining(['node_modules/typescript', 'node_modules/vitest']));
    expect(devOnly.filter((path) => existsSync(join(installDir, path)))).toEqual([]);
    const manifest = JSON.parse(await readFile(join(installDir, 'package.json'), 'utf8')) as { dependencies: Record<string, string> };
    for (const dep of Object.keys(manifest.dependencies)) expect(existsSync(join(installDir, 'node_modules', dep)), dep).toBe(true);
  });

  test("npm has nothing to warn about install scripts (package.json decides on protobufjs's)", () => {
    expect(installOutput).not.toMatch(/install-scripts|not yet covered by allowScripts/);
  });

  test('the installed server starts, answers a client and stops on SIGTERM', async () => {
    const main = join(installDir, 'dist/src/main.js');
    const socket = join(stateDir, 'pullguard.sock');
    const server = spawn(process.execPath, [...SERVE_NODE_FLAGS, main, 'serve', '--state-dir', stateDir], {
      cwd: installDir,
      stdio: ['ignore', 'ignore', 'pipe'],
      env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/root', ...clockEnv() },
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
      expect(images.stdout).toMatch(/IMAGE ID/);
    } finally {
      server.kill('SIGTERM');
    }
    expect(await exited).toBe(0);
    expect(existsSync(socket)).toBe(false);
  });
});
