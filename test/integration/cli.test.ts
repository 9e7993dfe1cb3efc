/**
 * The `pullguard` command as a person runs it (the compiled dist/src/main.js, and `npm start`):
 * verify and fsck under the server's configuration, start-up refusing directories that are not
 * there, client messages without a server, `serve --help`, rmi/images against a running server,
 * and SIGTERM to `npm start` stopping the server.
 */
import { execFile, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLIENT_HELP } from '../../src/cli/commands.js';
import { SERVE_SETTINGS } from '../../src/config/flag-table.js';
import { packageRoot } from '../../src/util/package-root.js';
import { keyFixturePath } from '../fixtures/signatures/fixtures.js';
import { MAIN, startPullguard, type RunningPullguard } from '../helpers/pullguard-server.js';
import { FIXTURE_IMAGE, pullSignedFixture } from '../helpers/signed-fixture-store.js';

const execFileAsync = promisify(execFile);

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'pullguard-cli-e2e-'));
});
afterAll(async () => rm(dir, { recursive: true, force: true }));

interface Run {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** `pullguard ARGS` in `dir`, with only PATH, HOME and `env` in its environment. */
function pullguard(args: string[], env: Record<string, string> = {}): Promise<Run> {
  return execFileAsync(process.execPath, [MAIN, ...args], { cwd: dir, env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/root', ...env } }).then(
    (r) => ({ code: 0, stdout: r.stdout, stderr: r.stderr }),
    (e: { code: number; stdout: string; stderr: string }) => ({ code: e.code, stdout: e.stdout, stderr: e.stderr }),
  );
}

describe('verify and fsck read the configuration serve reads', () => {
  it('verify re-checks the signedBy policy of the server’s --config, not /etc/containers/policy.json, and says which', async () => {
    const state = join(dir, 'item5');
    const policy = join(dir, 'item5-policy.json');
    await writeFile(
      policy,
      JSON.stringify({
        default: [{ type: 'reject' }],
        transports: { docker: { 'registry.example': [{ type: 'signedBy', keyType: 'GPGKeys', keyPath: keyFixturePath('trusted.gpg') }] } },
      }),
    );
    const config = join(dir, 'item5-pullguard.json');
    await writeFile(config, JSON.stringify({ signaturePolicy: policy }));
    await pullSignedFixture(join(state, 'store'), { globalPath: policy });

    const same = await pullguard(['verify', FIXTURE_IMAGE, '--config', config], { PULLGUARD_STATE_DIR: state });
    expect(same.code).toBe(0);
    expect(same.stdout).toContain(`still satisfies ${policy} [registry.example]`);
    expect(same.stdout).toContain(`re-checked under: ${policy}, scope "registry.example"`);
    expect(same.stdout).toContain(`accepted under: ${policy}, scope "registry.example"`);
    expect(same.stdout).not.toContain('note:');

    // Without the server's configuration: the system default policy, and verify says it differs.
    const other = await pullguard(['verify', FIXTURE_IMAGE], { PULLGUARD_STATE_DIR: state });
    expect(other.stdout).not.toContain(`re-checked under: ${policy}`);
    expect(other.stdout).toContain(`accepted under: ${policy}, scope "registry.example"`);
    expect(other.stdout).toMatch(/note: this is not the policy and scope the image was accepted under/);
  });

  it('fsck --state-dir with a typo is an error and creates nothing', async () => {
    const typo = join(dir, 'no-such-state');
    const result = await pullguard(['fsck', '--state-dir', typo]);
    expect(result.code).toBe(1);
    expect(result.stdout).not.toContain('consistent');
    expect(result.stderr).toContain(`no pullguard store at ${join(typo, 'store')}`);
    expect(existsSync(typo)).toBe(false);
  });
});

describe('serve refuses directories that are not there', () => {
  it('reports a missing --registries-d and --signature-policy-dir together and does not start', async () => {
    const state = join(dir, 'item6');
    const result = await pullguard([
      'serve',
      '--state-dir',
      state,
      '--registries-d',
      join(dir, 'registries.dd'),
      '--signature-policy-dir',
      join(dir, 'policies'),
      '--layer-concurrency',
      '0',
    ]);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain(`registries.d directory ${join(dir, 'registries.dd')} does not exist (--registries-d)`);
    expect(result.stderr).toContain(`signature policy directory ${join(dir, 'policies')} does not exist (--signature-policy-dir)`);
    expect(result.stderr).toContain('--layer-concurrency must be an integer from 1 to 64');
    expect(existsSync(state)).toBe(false);
  });
});

describe('client commands', () => {
  it('without a server, say no pullguard is listening on the socket (from PULLGUARD_SOCKET) and how to name another', async () => {
    const socket = join(dir, 'nobody.sock');
    const result = await pullguard(['pull', 'registry.example/app:v1'], { PULLGUARD_SOCKET: socket });
    expect(result.code).toBe(1);
    expect(result.stderr).toBe(
      `pullguard pull: no pullguard is listening on ${socket} (start one with \`pullguard serve\`, or point at another with --socket PATH or PULLGUARD_SOCKET)\n`,
    );
  });

  it('with a mistyped flag, print a clean message and the usage', async () => {
    const result = await pullguard(['pull', '--sokcet', 'x.sock', 'registry.example/app:v1']);
    expect(result.code).toBe(2);
    expect(result.stderr).toBe(`pullguard pull: unknown option --sokcet\n\n${CLIENT_HELP['pull']}\n`);
  });

  describe('against a running server', () => {
    let server: RunningPullguard;
    beforeAll(async () => {
      server = await startPullguard();
    });
    afterAll(async () => server?.stop());

    it('rmi of an image that is not there does not claim to have deleted it', async () => {
      const result = await pullguard(['rmi', 'nonexistent:v9', '--socket', server.socket]);
      expect(result.stdout).not.toContain('Deleted');
      expect(result.stderr).toBe('pullguard rmi: no such image: nonexistent:v9\n');
      expect(result.code).toBe(1);
    });

    it('images prints the columns its --help lists', async () => {
      const help = (await pullguard(['images', '--help'])).stdout;
      const listed = /in the columns ([A-Z ,]+)\./.exec(help)?.[1]?.split(', ');
      const withDigests = /add the column DIGEST: ([A-Z ,]+)/.exec(help)?.[1]?.trim().split(', ');
      const header = async (args: string[]): Promise<string[]> =>
        (await pullguard(['images', ...args, '--socket', server.socket])).stdout.split('\n')[0]!.split(/ {2,}/);
      expect(await header([])).toEqual(listed);
      expect(await header(['--digests'])).toEqual(withDigests);
    });
  });
});

describe('serve --help', () => {
  it('gives every flag its meaning and default on one line', async () => {
    const { stdout, code } = await pullguard(['serve', '--help']);
    expect(code).toBe(0);
    const lines = stdout.split('\n');
    for (const setting of SERVE_SETTINGS) {
      const line = lines.find((l) => l.trimStart().startsWith(`--${setting.flag} `) || l.trim() === `--${setting.flag}`);
      expect(line, setting.flag).toBeDefined();
      expect(line, setting.flag).toMatch(/\S {2,}\S.*\(default: [^)]+/);
    }
  });
});

describe('npm start', () => {
  it('stops the server, and removes its socket, when npm gets SIGTERM', async () => {
    const state = await mkdtemp(join(tmpdir(), 'pullguard-npm-start-'));
    const socket = join(state, 'pullguard.sock');
    const npm = spawn('npm', ['start'], {
      cwd: packageRoot(),
      env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/root', PULLGUARD_STATE_DIR: state },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    npm.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString('utf8')));
    npm.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString('utf8')));
    const npmExited = new Promise<void>((resolve) => npm.once('exit', () => resolve()));
    let serverPid: number | undefined;
    const alive = (pid: number): boolean => {
      try {
        process.kill(pid, 0);
        return true;
      } catch {
        return false;
      }
    };
    try {
      const started = Date.now();
      while (serverPid === undefined) {
        const listening = output.split('\n').find((l) => l.includes('CRI ImageService listening'));
        if (listening !== undefined) serverPid = (JSON.parse(listening) as { pid: number }).pid;
        else if (npm.exitCode !== null || Date.now() - started > 30_000) throw new Error(`npm start did not start the server:\n${output}`);
        else await new Promise((r) => setTimeout(r, 50));
      }
      expect(existsSync(socket)).toBe(true);

      npm.kill('SIGTERM');
      await npmExited;
      const deadline = Date.now() + 15_000;
      while (alive(serverPid) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      expect(alive(serverPid), `server ${serverPid} still running after SIGTERM to npm start`).toBe(false);
      expect(existsSync(socket)).toBe(false);
    } finally {
      if (npm.exitCode === null) npm.kill('SIGKILL');
      // The server left behind by a start script that does not pass the signal on.
      if (serverPid !== undefined && alive(serverPid)) process.kill(serverPid, 'SIGKILL');
      await rm(state, { recursive: true, force: true });
    }
  });
});
