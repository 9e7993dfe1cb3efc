/**
 * Disk full: the store lives on an 8 MiB tmpfs. An image that fits is pulled; one that does not is
 * refused with an error naming the store, its temp files are gone, the first image is intact, and
 * the server keeps answering every RPC (and pulls again once space is freed).
 */
import { execFile } from 'node:child_process';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildOciImage, type BuiltImage } from '../helpers/oci-image.js';
import { MAIN, startPullguard, type RunningPullguard } from '../helpers/pullguard-server.js';
import { pushImage, startRegistry, type StartedRegistry } from '../helpers/registry.js';
import { mountTmpfs, type MountedTmpfs } from '../helpers/tmpfs.js';
import { figure } from './fuzz-support.js';

const execFileAsync = promisify(execFile);
const STORE_SIZE = 8 * 1024 * 1024;

let work: string;
let stateDir: string;
let tmpfs: MountedTmpfs;
let registry: StartedRegistry;
let small: BuiltImage;
let big: BuiltImage;
let server: RunningPullguard | undefined;

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'pullguard-diskfull-'));
  stateDir = join(work, 'state');
  tmpfs = await mountTmpfs(join(stateDir, 'store'), STORE_SIZE);
  if (!tmpfs.mounted) return;
  const policy = join(work, 'policy.json');
  await writeFile(policy, JSON.stringify({ default: [{ type: 'insecureAcceptAnything' }] }));
  registry = await startRegistry();
  small = await buildOciImage(join(work, 'small'), { tag: 'v1', seed: 70, layers: [{ size: 1_000_000 }, { files: { 'etc/small': 'fits' } }] });
  // Random (incompressible) content: 3 × 3 MB gzip'd is 9 MB, more than the whole store.
  big = await buildOciImage(join(work, 'big'), { tag: 'v1', seed: 71, layers: [{ size: 3_000_000 }, { size: 3_000_000 }, { size: 3_000_000 }] });
  await pushImage(small.dir, 'small:v1', registry);
  await pushImage(big.dir, 'big:v1', registry);
  server = await startPullguard({ stateDir, args: ['--signature-policy', policy, '--insecure-registry', registry.host] });
}, 120_000);

afterAll(async () => {
  await server?.stop({ keepState: true });
  await registry?.stop();
  if (tmpfs?.mounted) await tmpfs.unmount();
  await rm(work, { recursive: true, force: true });
});

describe('a full store (8 MiB tmpfs)', () => {
  it('refuses the image that does not fit with an error naming the store, and keeps everything else', async (ctx) => {
    if (!tmpfs.mounted) return ctx.skip(tmpfs.reason);
    const pg = server!;
    const storeRoot = join(stateDir, 'store');
    const fits = await pg.client.call<{ image_ref: string }>('PullImage', { image: { image: `${registry.host}/small:v1` } });
    expect(fits.image_ref).toBe(small.configDigest);

    const err = (await pg.client.call('PullImage', { image: { image: `${registry.host}/big:v1` } }).then(
      () => undefined,
      (e: grpc.ServiceError) => e,
    ))!;
    expect(err, 'a 9 MB image cannot fit an 8 MiB store').toBeDefined();
    expect(err.details).toContain(storeRoot);
    expect(err.details).toMatch(/full/i);
    console.log(`disk-full error: ${err.details}`);
    // The ENOSPC'd temp file is gone, and no partial blob of the big image is visible.
    expect(await readdir(join(storeRoot, 'ingest'))).toEqual([]);
    const blobs = await readdir(join(storeRoot, 'blobs', 'sha256'));
    for (const layer of big.layers) expect(blobs).not.toContain(layer.digest.slice(7));

    // The server keeps serving, and the first image is untouched.
    const status = await pg.client.call<{ image: { id: string } | null }>('ImageStatus', { image: { image: `${registry.host}/small:v1` } });
    expect(status.image?.id).toBe(small.configDigest);
    const list = await pg.client.call<{ images: { id: string }[] }>('ListImages', {});
    expect(list.images.map((i) => i.id)).toEqual([small.configDigest]);
    const fsInfo = await pg.client.call<{ image_filesystems: { fs_id: { mountpoint: string }; used_bytes: { value: string } }[] }>('ImageFsInfo', {});
    expect(fsInfo.image_filesystems[0]!.fs_id.mountpoint).toBe(storeRoot);

    // Space freed: the small image comes back after a removal (the failed pull left nothing that blocks it).
    await pg.client.call('RemoveImage', { image: { image: `${registry.host}/small:v1` } });
    expect((await pg.client.call<{ image_ref: string }>('PullImage', { image: { image: `${registry.host}/small:v1` } })).image_ref).toBe(small.configDigest);
    const again = await pg.client.call('PullImage', { image: { image: `${registry.host}/big:v1` } }).then(
      () => undefined,
      (e: grpc.ServiceError) => e,
    );
    expect(again?.details).toContain(storeRoot);

    await pg.stop({ keepState: true });
    server = undefined;
    const fsck = await execFileAsync(process.execPath, [MAIN, 'fsck', '--state-dir', stateDir, '--json']);
    const report = JSON.parse(fsck.stdout) as { ok: boolean; recordsChecked: number; corruptBlobs: unknown[]; brokenRecords: unknown[] };
    expect(report).toMatchObject({ ok: true, recordsChecked: 1, corruptBlobs: [], brokenRecords: [] });
    figure('disk_full.faults_injected', 2);
  });
});
