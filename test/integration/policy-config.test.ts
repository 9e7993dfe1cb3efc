/**
 * Policy configuration as an operator meets it: per-namespace policies chosen from the pod's
 * namespace (as CRI-O), reload on SIGHUP that keeps the old policy when the new one is invalid, and
 * start-up failures for an invalid policy or a missing key file.
 */
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildOciImage } from '../helpers/oci-image.js';
import { MAIN, startPullguard, type RunningPullguard } from '../helpers/pullguard-server.js';
import { pushImage, startRegistry, type StartedRegistry } from '../helpers/registry.js';

const execFileAsync = promisify(execFile);
const ACCEPT = JSON.stringify({ default: [{ type: 'insecureAcceptAnything' }] });
const REJECT = JSON.stringify({ default: [{ type: 'reject' }] });

let work: string;
let registry: StartedRegistry;
let image: string;

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'pullguard-policy-'));
  registry = await startRegistry();
  const built = await buildOciImage(join(work, 'img'), { tag: 'v1', layers: [{ size: 2_000 }], seed: 51 });
  await pushImage(built.dir, 'app:v1', registry);
  image = `${registry.host}/app:v1`;
}, 120_000);

afterAll(async () => {
  await registry?.stop();
  await rm(work, { recursive: true, force: true });
});

async function pullIn(server: RunningPullguard, namespace?: string): Promise<grpc.ServiceError | undefined> {
  return server.client
    .call('PullImage', { image: { image }, ...(namespace ? { sandbox_config: { metadata: { name: 'pod-0', uid: 'u-1', namespace } } } : {}) })
    .then(
      () => undefined,
      (e: grpc.ServiceError) => e,
    );
}

async function waitForLog(server: RunningPullguard, text: string, after: number): Promise<void> {
  const deadline = Date.now() + 5000;
  while (
    !server
      .logs()
      .slice(after)
      .some((l) => l.includes(text))
  ) {
    if (Date.now() > deadline) throw new Error(`no log line containing ${JSON.stringify(text)}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

describe('policy configuration', () => {
  it('chooses <policy-dir>/<namespace>.json from the pod namespace, else the global policy', async () => {
    const dir = join(work, 'ns');
    await mkdir(dir, { recursive: true });
    await writeFile(join(dir, 'global.json'), ACCEPT);
    await mkdir(join(dir, 'policies'), { recursive: true });
    await writeFile(join(dir, 'policies', 'locked.json'), REJECT);
    const server = await startPullguard({
      args: ['--signature-policy', join(dir, 'global.json'), '--signature-policy-dir', join(dir, 'policies'), '--insecure-registry', registry.host],
    });
    try {
      const locked = await pullIn(server, 'locked');
      expect(locked?.details).toBe(`SignatureValidationFailed: Source image rejected: Running image docker://${image} is rejected by policy.`);
      expect(await pullIn(server, 'open')).toBeUndefined();
      expect(await pullIn(server)).toBeUndefined();
      const bad = await pullIn(server, '../locked');
      expect(bad?.details).toMatch(/invalid namespace/);
    } finally {
      await server.stop();
    }
  });

  it('reloads on SIGHUP, and keeps the previous policy when the new one is invalid', async () => {
    const policy = join(work, 'reload.json');
    await writeFile(policy, REJECT);
    const server = await startPullguard({ args: ['--signature-policy', policy, '--insecure-registry', registry.host] });
    try {
      expect((await pullIn(server))?.details).toMatch(/is rejected by policy/);
      await writeFile(policy, ACCEPT);
      expect((await pullIn(server))?.details).toMatch(/is rejected by policy/);
      let mark = server.logs().length;
      server.process.kill('SIGHUP');
      await waitForLog(server, 'configuration reloaded', mark);
      expect(await pullIn(server)).toBeUndefined();

      await writeFile(policy, '{"default":[{"type":"insecureAcceptAnything","extra":1}]}');
      mark = server.logs().length;
      server.process.kill('SIGHUP');
      await waitForLog(server, 'configuration reload failed', mark);
      expect(server.logs().slice(mark).join('\n')).toMatch(/Unknown key \\"extra\\"|Unknown key "extra"/);
      expect(await pullIn(server)).toBeUndefined();
    } finally {
      await server.stop();
    }
  });

  it.each([
    ['an invalid policy', '{"default":[]}', /List of verification policy requirements must not be empty/],
    ['a missing key file', JSON.stringify({ default: [{ type: 'signedBy', keyType: 'GPGKeys', keyPath: '/nonexistent/key.gpg' }] }), /\/nonexistent\/key\.gpg/],
    [
      'two key sources',
      JSON.stringify({ default: [{ type: 'signedBy', keyType: 'GPGKeys', keyPath: '/a', keyData: 'AA==' }] }),
      /exactly one of keyPath, keyPaths and keyData/i,
    ],
  ])('refuses to start with %s, saying why', async (_name, text, expected) => {
    const policy = join(work, `bad-${Math.random().toString(16).slice(2)}.json`);
    await writeFile(policy, text);
    const result = await execFileAsync(process.execPath, [MAIN, 'serve', '--state-dir', join(work, 'never'), '--signature-policy', policy]).then(
      () => ({ code: 0, stderr: '' }),
      (e: { code: number; stderr: string }) => e,
    );
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(expected);
  });

  it('a registry cannot be named around its scope: other spellings of host or port are invalid references', async () => {
    // A permissive default and a reject for this registry: every other spelling of 127.0.0.1:PORT
    // would fall to the default, and the HTTP stack would reach the same registry.
    const policy = join(work, 'scoped.json');
    await writeFile(
      policy,
      JSON.stringify({ default: [{ type: 'insecureAcceptAnything' }], transports: { docker: { [registry.host]: [{ type: 'reject' }] } } }),
    );
    const port = registry.host.split(':')[1] as string;
    const spellings = [`127.0.0.1:0${port}`, `127.1:${port}`, `2130706433:${port}`, `0x7f.0.0.1:${port}`, `[::ffff:127.0.0.1]:${port}`];
    const server = await startPullguard({ args: ['--signature-policy', policy, '--insecure-registry', registry.host] });
    try {
      const direct = await server.client.call('PullImage', { image: { image } }).then(
        () => undefined,
        (e: grpc.ServiceError) => e,
      );
      expect(direct?.details).toMatch(/^SignatureValidationFailed: .*rejected by policy/);
      for (const host of spellings) {
        const err = await server.client.call('PullImage', { image: { image: `${host}/app:v1` } }).then(
          () => undefined,
          (e: grpc.ServiceError) => e,
        );
        expect(err?.code, host).toBe(3); // INVALID_ARGUMENT
        expect(err?.details, host).toMatch(/not written canonically|IPv4 address written as IPv6/);
      }
    } finally {
      await server.stop();
    }
  });

  it('reports every invalid flag at once', async () => {
    const result = await execFileAsync(process.execPath, [
      MAIN,
      'serve',
      '--state-dir',
      join(work, 'never'),
      '--platform',
      'linux',
      '--insecure-registry',
      'bad host',
      '--lookaside-timeout',
      'soon',
    ]).then(
      () => ({ code: 0, stderr: '' }),
      (e: { code: number; stderr: string }) => e,
    );
    expect(result.code).toBe(1);
    // One problem per line, all three in one run.
    expect(result.stderr).toMatch(
      /invalid configuration:\n {2}- --insecure-registry "bad host".*\n {2}- --platform "linux".*\n {2}- --lookaside-timeout "soon"/,
    );
  });
});
