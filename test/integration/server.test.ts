/**
 * The foundation through the real server process and a real grpc-js client over the unix socket:
 * every ImageService RPC, kubelet's lookup semantics, bad input, the socket's life cycle, graceful
 * shutdown, crash consistency (kill -9 mid-pull) and concurrent pulls of images sharing layers.
 */
import { execFile } from 'node:child_process';
import { existsSync, statSync } from 'node:fs';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadCriPackageDefinition } from '../../src/transport/cri-proto.js';
import { startFaultRegistry, type FaultRegistry } from '../helpers/fault-registry.js';
import { buildOciImage, type BuiltImage } from '../helpers/oci-image.js';
import { MAIN, startPullguard, type RunningPullguard } from '../helpers/pullguard-server.js';
import { pushImage, startRegistry, type StartedRegistry } from '../helpers/registry.js';

const execFileAsync = promisify(execFile);

let work: string;
let policy: string;
let registry: StartedRegistry;
let base: BuiltImage;
let named: BuiltImage;
let server: RunningPullguard;

type CriImage = { id: string; repo_tags: string[]; repo_digests: string[]; size: string; uid: { value: string } | null; username: string };

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'pullguard-server-'));
  policy = join(work, 'policy.json');
  await writeFile(policy, JSON.stringify({ default: [{ type: 'insecureAcceptAnything' }] }));
  registry = await startRegistry();
  base = await buildOciImage(join(work, 'base'), {
    tag: 'v1',
    layers: [{ size: 200_000 }, { size: 5_000 }, { files: { 'etc/os-release': 'ID=test' } }],
    user: '1000:1000',
    seed: 21,
  });
  named = await buildOciImage(join(work, 'named'), { tag: 'v2', layers: [{ size: 10_000 }], user: 'nobody', seed: 22 });
  await pushImage(base.dir, 'team/base:v1', registry);
  await pushImage(named.dir, 'named:v2', registry);
  server = await startPullguard({ args: ['--signature-policy', policy, '--insecure-registry', registry.host] });
}, 120_000);

afterAll(async () => {
  await server?.stop();
  await registry?.stop();
  await rm(work, { recursive: true, force: true });
});

const status = (image: string): Promise<{ image: CriImage | null; info: Record<string, string> }> => server.client.call('ImageStatus', { image: { image } });
const pull = (image: string): Promise<{ image_ref: string }> => server.client.call('PullImage', { image: { image } });

async function blobFiles(stateDir: string): Promise<string[]> {
  const dir = join(stateDir, 'store', 'blobs', 'sha256');
  return existsSync(dir) ? readdir(dir) : [];
}

describe('ImageService over the unix socket', () => {
  it('answers ImageFsInfo with the store mountpoint, and Version for crictl-style probes', async () => {
    const fs = await server.client.call<{ image_filesystems: { timestamp: string; fs_id: { mountpoint: string }; used_bytes: { value: string } }[] }>(
      'ImageFsInfo',
      {},
    );
    expect(fs.image_filesystems).toHaveLength(1);
    expect(fs.image_filesystems[0]!.fs_id.mountpoint).toBe(join(server.stateDir, 'store'));
    expect(BigInt(fs.image_filesystems[0]!.timestamp)).toBeGreaterThan(0n);
    const pkg = grpc.loadPackageDefinition(loadCriPackageDefinition()) as unknown as {
      runtime: {
        v1: {
          RuntimeService: new (
            a: string,
            c: grpc.ChannelCredentials,
          ) => grpc.Client & { Version: (r: unknown, cb: (e: Error | null, v: Record<string, string>) => void) => void };
        };
      };
    };
    const runtime = new pkg.runtime.v1.RuntimeService(`unix://${server.socket}`, grpc.credentials.createInsecure());
    const version = await new Promise<Record<string, string>>((ok, fail) => runtime.Version({ version: 'v1' }, (e, v) => (e ? fail(e) : ok(v))));
    runtime.close();
    expect(version).toMatchObject({ runtime_name: 'pullguard', runtime_api_version: 'v1' });
  });

  it('lets the CLI reach the server through a relative --socket path', async () => {
    const { stdout } = await execFileAsync(process.execPath, [MAIN, 'images', '--socket', 'pullguard.sock'], { cwd: server.stateDir });
    expect(stdout).toMatch(/^IMAGE\s+TAG\s+IMAGE ID\s+SIZE/);
  });

  it('reports an unknown image as absent (empty response), not as an error', async () => {
    expect((await status('busybox')).image).toBeNull();
    expect((await status(`sha256:${'0'.repeat(64)}`)).image).toBeNull();
    expect((await server.client.call<{ images: unknown[] }>('ListImages', { filter: { image: { image: 'nothing:here' } } })).images).toEqual([]);
  });

  it('pulls by tag: image_ref is the config digest; finds the image by id, id prefix, tag and digest', async () => {
    const { image_ref } = await pull(`${registry.host}/team/base:v1`);
    expect(image_ref).toBe(base.configDigest);
    const byTag = (await status(`${registry.host}/team/base:v1`)).image!;
    expect(byTag).toMatchObject({ id: base.configDigest, repo_tags: [`${registry.host}/team/base:v1`], uid: { value: '1000' }, username: '' });
    expect(byTag.repo_digests).toContain(`${registry.host}/team/base@${base.manifestDigest}`);
    const expectedSize = base.config.size + base.manifest.size + base.layers.reduce((s, l) => s + l.size, 0);
    expect(Number(byTag.size)).toBe(expectedSize);
    const hex = base.configDigest.slice(7);
    for (const name of [base.configDigest, hex, hex.slice(0, 12), `sha256:${hex.slice(0, 12)}`, `${registry.host}/team/base@${base.manifestDigest}`]) {
      expect((await status(name)).image?.id, name).toBe(base.configDigest);
    }
    const filtered = await server.client.call<{ images: CriImage[] }>('ListImages', { filter: { image: { image: `${registry.host}/team/base:v1` } } });
    expect(filtered.images.map((i) => i.id)).toEqual([base.configDigest]);
  });

  it('pulls by digest and maps a named config User to username', async () => {
    const { image_ref } = await pull(`${registry.host}/named@${named.manifestDigest}`);
    expect(image_ref).toBe(named.configDigest);
    const image = (await status(named.configDigest)).image!;
    expect(image).toMatchObject({ username: 'nobody', uid: null, repo_tags: [] });
    const all = await server.client.call<{ images: CriImage[] }>('ListImages', {});
    expect(all.images.map((i) => i.id).sort()).toEqual([base.configDigest, named.configDigest].sort());
  });

  it('removes an image by any name, with all its tags, collects its blobs, and is idempotent', async () => {
    await pull(`${registry.host}/named:v2`);
    expect((await status(`${registry.host}/named:v2`)).image?.id).toBe(named.configDigest);
    await server.client.call('RemoveImage', { image: { image: `${registry.host}/named:v2` } });
    expect((await status(named.configDigest)).image).toBeNull();
    expect(await blobFiles(server.stateDir)).not.toContain(named.layers[0]!.digest.slice(7));
    await server.client.call('RemoveImage', { image: { image: `${registry.host}/named:v2` } });
    await server.client.call('RemoveImage', { image: { image: named.configDigest } });
  });

  const badNames = [
    '',
    'UPPER/Case:v1',
    `app@md5:${'a'.repeat(32)}`,
    `app@sha256:${'a'.repeat(10)}`,
    '../../etc/passwd',
    'a/../b',
    'app\u0000evil',
    `${'a'.repeat(300)}/x`,
  ];
  it.each(badNames)('refuses %j with INVALID_ARGUMENT and writes nothing', async (name) => {
    const before = await blobFiles(server.stateDir);
    const err = await pull(name).then(
      () => undefined,
      (e: grpc.ServiceError) => e,
    );
    expect(err?.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(err?.details.length).toBeGreaterThan(0);
    expect(err?.details).not.toMatch(/\n/);
    expect(await blobFiles(server.stateDir)).toEqual(before);
  });

  it('reports a missing image and an unreachable registry with distinct messages', async () => {
    const missing = await pull(`${registry.host}/team/base:nope`).catch((e: grpc.ServiceError) => e);
    expect((missing as grpc.ServiceError).code).toBe(grpc.status.UNKNOWN);
    expect((missing as grpc.ServiceError).details).toMatch(/not found|unknown/i);
    const unreachable = (await pull('127.0.0.1:9/app:v1').catch((e: grpc.ServiceError) => e)) as grpc.ServiceError;
    expect(unreachable.code).toBe(grpc.status.UNKNOWN);
    expect(unreachable.details).toMatch(/^RegistryUnavailable: /);
  });

  it('keeps offline store commands away from a store the server is using', async () => {
    const fsck = await execFileAsync(process.execPath, [MAIN, 'fsck', '--state-dir', server.stateDir]).then(
      () => ({ code: 0, stderr: '' }),
      (e: { code: number; stderr: string }) => e,
    );
    expect(fsck.code).toBe(1);
    expect(fsck.stderr).toMatch(/is in use by process \d+ \(a running pullguard serve, fsck or verify\); stop it first/);
  });

  it('binds the socket with mode 0660 and refuses to start beside a live server', async () => {
    expect(statSync(server.socket).mode & 0o777).toBe(0o660);
    const second = await execFileAsync(process.execPath, [MAIN, 'serve', '--state-dir', join(work, 'other'), '--socket', server.socket]).then(
      () => ({ code: 0, stderr: '' }),
      (e: { code: number; stderr: string }) => e,
    );
    expect(second.code).not.toBe(0);
    expect(second.stderr).toMatch(/another server is already listening/);
    expect((await status('busybox')).image).toBeNull();
  });
});

describe('server life cycle and crash consistency (fault registry)', () => {
  let faults: FaultRegistry;
  let images: BuiltImage[];

  beforeAll(async () => {
    faults = await startFaultRegistry();
    // Three images sharing a 300 kB base layer and a middle layer; one unique layer each.
    images = await Promise.all(
      [0, 1, 2].map((i) =>
        buildOciImage(join(work, `shared-${i}`), {
          tag: 'v1',
          seed: 40,
          layers: [{ size: 300_000 }, { size: 50_000 }, { files: { [`etc/unique-${i}`]: `image ${i}` } }],
        }),
      ),
    );
    for (const [i, img] of images.entries()) faults.addImage(`shared${i}`, 'v1', img);
  });
  afterAll(() => faults?.stop());

  it('pulls images that share layers concurrently, downloading each shared layer once', async () => {
    const pg = await startPullguard({ args: ['--signature-policy', policy, '--insecure-registry', faults.host] });
    try {
      faults.requests.length = 0;
      const refs = await Promise.all(
        [0, 1, 2, 0, 1, 2].map((i) => pg.client.call<{ image_ref: string }>('PullImage', { image: { image: `${faults.host}/shared${i}:v1` } })),
      );
      expect(new Set(refs.map((r) => r.image_ref)).size).toBe(3);
      const shared = images[0]!.layers[0]!.digest;
      const gets = faults.requests.filter((r) => r.method === 'GET' && r.path.endsWith(`/blobs/${shared}`));
      expect(gets).toHaveLength(1);
      const list = await pg.client.call<{ images: CriImage[] }>('ListImages', {});
      expect(list.images).toHaveLength(3);
    } finally {
      await pg.stop();
    }
  });

  it('survives kill -9 mid-pull: the store checks clean and the retried pull succeeds', async () => {
    const stateDir = await mkdtemp(join(tmpdir(), 'pullguard-crash-'));
    const victim = images[2]!;
    const big = await buildOciImage(join(work, 'big'), { tag: 'v1', seed: 77, layers: [{ size: 400_000 }, { size: 400_000 }] });
    faults.addImage('big', 'v1', big);
    faults.fault(big.layers[1]!.digest, { kind: 'stall-after', bytes: 100_000 });
    const pg = await startPullguard({ stateDir, args: ['--signature-policy', policy, '--insecure-registry', faults.host] });
    await pg.client.call('PullImage', { image: { image: `${faults.host}/shared2:v1` } });
    const pending = pg.client.call('PullImage', { image: { image: `${faults.host}/big:v1` } }).catch((e: unknown) => e);
    const deadline = Date.now() + 10_000;
    while (!faults.requests.some((r) => r.path.endsWith(big.layers[1]!.digest)) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    await new Promise((r) => setTimeout(r, 100));
    await pg.stop({ keepState: true, signal: 'SIGKILL' });
    await pending;

    const fsck = await execFileAsync(process.execPath, [MAIN, 'fsck', '--state-dir', stateDir, '--json']);
    const report = JSON.parse(fsck.stdout) as { corruptBlobs: unknown[]; brokenRecords: unknown[]; recordsChecked: number };
    expect(report.corruptBlobs).toEqual([]);
    expect(report.brokenRecords).toEqual([]);
    expect(report.recordsChecked).toBe(1);
    expect(existsSync(join(stateDir, 'store', 'blobs', 'sha256', big.layers[1]!.digest.slice(7)))).toBe(false);

    const restarted = await startPullguard({ stateDir, args: ['--signature-policy', policy, '--insecure-registry', faults.host] });
    try {
      expect((await restarted.client.call<{ image: CriImage | null }>('ImageStatus', { image: { image: `${faults.host}/shared2:v1` } })).image?.id).toBe(
        victim.configDigest,
      );
      const { image_ref } = await restarted.client.call<{ image_ref: string }>('PullImage', { image: { image: `${faults.host}/big:v1` } });
      expect(image_ref).toBe(big.configDigest);
      expect(await readdir(join(stateDir, 'store', 'ingest'))).toEqual([]);
    } finally {
      await restarted.stop({ keepState: true });
      await rm(stateDir, { recursive: true, force: true });
    }
  });

  it('on SIGTERM stops accepting, cancels a stalled pull after the grace period, and leaves no partial blob', async () => {
    const stalled = await buildOciImage(join(work, 'stalled'), { tag: 'v1', seed: 88, layers: [{ size: 300_000 }] });
    faults.addImage('stalled', 'v1', stalled);
    faults.fault(stalled.layers[0]!.digest, { kind: 'stall-after', bytes: 50_000 });
    const pg = await startPullguard({ args: ['--signature-policy', policy, '--insecure-registry', faults.host, '--shutdown-grace', '500ms'] });
    const pending = pg.client.call('PullImage', { image: { image: `${faults.host}/stalled:v1` } }).then(
      () => undefined,
      (e: grpc.ServiceError) => e,
    );
    const deadline = Date.now() + 10_000;
    while (!faults.requests.some((r) => r.path.endsWith(stalled.layers[0]!.digest)) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    const started = Date.now();
    const code = await pg.stop({ keepState: true });
    const err = await pending;
    expect(code).toBe(0);
    expect(Date.now() - started).toBeLessThan(5000);
    expect(err).toBeDefined();
    expect(existsSync(pg.socket)).toBe(false);
    expect(await readdir(join(pg.stateDir, 'store', 'ingest'))).toEqual([]);
    expect(existsSync(join(pg.stateDir, 'store', 'blobs', 'sha256', stalled.layers[0]!.digest.slice(7)))).toBe(false);
    await rm(pg.stateDir, { recursive: true, force: true });
  });

  it('removes a stale socket left by a killed server', async () => {
    const stateDir = await mkdtemp(join(tmpdir(), 'pullguard-stale-'));
    const first = await startPullguard({ stateDir, args: ['--signature-policy', policy] });
    await first.stop({ keepState: true, signal: 'SIGKILL' });
    expect(existsSync(first.socket)).toBe(true);
    const second = await startPullguard({ stateDir, args: ['--signature-policy', policy] });
    expect((await second.client.call<{ images: unknown[] }>('ListImages', {})).images).toEqual([]);
    await second.stop();
    await rm(stateDir, { recursive: true, force: true });
  });
});
