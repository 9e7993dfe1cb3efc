/**
 * `pullguard verifier install`: the script goes where containerd looks, aimed at the socket `serve`
 * uses under the same configuration, waiting 1 s less than containerd's per-verifier timeout.
 */
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { loadDaemonConfig, type Environment } from '../../../src/config/daemon-config.js';
import { readInstalledVerifier, verifierClientPath } from '../../../src/verifier/install.js';
import { runVerifierCommand } from '../../../src/verifier/verifier-command.js';

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'pullguard-verifier-cmd-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function verifier(args: string[], perlPath: string | null = '/usr/bin/perl'): Promise<{ code: number; stdout: string; stderr: string }> {
  const environment: Environment = {
    cwd: dir,
    env: {},
    exists: (p) => !p.startsWith('/etc/') && existsSync(p),
    isDirectory: () => true,
    readFile: (p) => readFileSync(p, 'utf8'),
    hostArch: 'x64',
    hostname: 'n',
  };
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  let out = '';
  let err = '';
  stdout.on('data', (c: Buffer) => (out += c.toString()));
  stderr.on('data', (c: Buffer) => (err += c.toString()));
  const code = await runVerifierCommand(args, { stdout, stderr, environment, nodePath: process.execPath, perlPath });
  return { code, stdout: out, stderr: err };
}

describe('pullguard verifier install', () => {
  it("writes the script aimed at the configuration's verifier socket and prints containerd's settings", async () => {
    const result = await verifier(['install', '--bin-dir', 'bin', '--state-dir', 'state', '--per-verifier-timeout', '45s']);
    expect(result.code).toBe(0);
    const script = readInstalledVerifier(await readFile(join(dir, 'bin', 'pullguard'), 'utf8'));
    expect(script).toEqual({ client: 'perl', socket: join(dir, 'state', 'verifier.sock'), timeoutMs: 44_000, runs: ['/usr/bin/perl'] });
    expect(result.stdout).toContain(
      `installed ${join(dir, 'bin', 'pullguard')} (perl, /usr/bin/perl): asks pullguard on ${join(dir, 'state', 'verifier.sock')}, waits 44 s for a verdict`,
    );
    expect(result.stdout).toContain(`    bin_dir = "${join(dir, 'bin')}"\n    per_verifier_timeout = "45s"\n`);
    expect(result.stdout).not.toContain('note:');
  });

  it('installs the node client where there is no perl, or when asked, and says what that costs', async () => {
    const socketPath = join(dir, 'state', 'verifier.sock');
    const nodeClient = { client: 'node', socket: socketPath, timeoutMs: 9000, runs: [process.execPath, verifierClientPath()] };
    const noPerl = await verifier(['install', '--bin-dir', 'bin', '--state-dir', 'state'], null);
    expect(noPerl.code).toBe(0);
    expect(noPerl.stdout).toContain('(node: no perl on PATH; a pull takes ~100 ms longer than with perl)');
    expect(readInstalledVerifier(await readFile(join(dir, 'bin', 'pullguard'), 'utf8'))).toEqual(nodeClient);
    expect((await verifier(['install', '--bin-dir', 'bin', '--state-dir', 'state', '--client', 'node'])).code).toBe(0);
    expect(readInstalledVerifier(await readFile(join(dir, 'bin', 'pullguard'), 'utf8'))).toEqual(nodeClient);
    expect(await verifier(['install', '--bin-dir', 'bin', '--client', 'perl'], null)).toMatchObject({
      code: 1,
      stderr: expect.stringContaining('--client perl: no perl on PATH'),
    });
    expect(await verifier(['install', '--bin-dir', 'bin', '--client', 'go'])).toMatchObject({
      code: 1,
      stderr: expect.stringContaining('--client "go": perl or node'),
    });
  });

  it("says when containerd's timeout is shorter than the signature budget, and refuses what cannot work", async () => {
    const short = await verifier(['install', '--bin-dir', 'bin', '--state-dir', 'state', '--verifier-socket', '/run/pg/v.sock']);
    expect(short.code).toBe(0);
    expect(short.stdout).toContain("note: that is shorter than pullguard's signature budget (30 s)");
    expect(readInstalledVerifier(await readFile(join(dir, 'bin', 'pullguard'), 'utf8'))).toMatchObject({ socket: '/run/pg/v.sock', timeoutMs: 9000 });
    expect(await verifier(['install', '--bin-dir', 'bin', '--verifier-socket', 'off'])).toMatchObject({
      code: 1,
      stderr: expect.stringContaining('the verifier socket is off'),
    });
    expect(await verifier(['install', '--bin-dir', 'bin', '--per-verifier-timeout', '1s'])).toMatchObject({
      code: 1,
      stderr: expect.stringContaining('is not a duration above 1s'),
    });
    expect((await verifier(['uninstall'])).code).toBe(2);
    expect((await verifier(['install', '--bogus'])).code).toBe(2);
  });
});

describe('--verifier-socket', () => {
  const environment: Environment = {
    cwd: '/srv',
    env: {},
    exists: () => false,
    isDirectory: () => true,
    readFile: () => '{"verifierSocket":"off"}',
    hostArch: 'x64',
    hostname: 'n',
  };
  it("defaults to verifier.sock in the state dir; a relative path is the working directory's; off turns it off", () => {
    expect(loadDaemonConfig(['--state-dir', '/var/lib/pullguard'], environment).verifierSocket).toBe('/var/lib/pullguard/verifier.sock');
    expect(loadDaemonConfig(['--verifier-socket', 'run/v.sock'], environment).verifierSocket).toBe('/srv/run/v.sock');
    expect(loadDaemonConfig(['--verifier-socket', 'off'], environment).verifierSocket).toBeUndefined();
    expect(loadDaemonConfig(['--config', '/c.json'], { ...environment, exists: (p) => p === '/c.json' }).verifierSocket).toBeUndefined();
  });
});
