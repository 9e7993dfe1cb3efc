import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readdir, rm, writeFile, appendFile, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { digestHex } from '../../../src/domain/digest.js';
import { isPullguardError, type PullguardError } from '../../../src/domain/errors.js';
import { CoalescedDirectorySync, nodeStoreFs, type StoreFs } from '../../../src/store/fs-facade.js';
import { FsBlobStore } from '../../../src/store/fs-blob-store.js';
import type { ContentStore } from '../../../src/pull/ports.js';
import { blobOf, blobStoreSuite, putBlob } from './blob-store-suite.js';

blobStoreSuite('FsBlobStore', async () => {
  const root = await mkdtemp(join(tmpdir(), 'pg-blobs-'));
  return {
    store: await FsBlobStore.open({ root }),
    reopen: () => FsBlobStore.open({ root }),
    plantStaleIngest: async () => {
      // A temp file named by a writer whose process is gone (a child that has exited).
      const child = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' });
      await writeFile(join(root, 'ingest', `${child.stdout}-0badf00d-0011223344556677`), 'half a layer');
    },
    cleanup: () => rm(root, { recursive: true, force: true }),
  };
});

/** The real fs, except that writes fail with `code` once `budget` bytes have been written. */
function failingFs(code: string, budget: number): StoreFs {
  let left = budget;
  return {
    ...nodeStoreFs,
    open: async (path, flags, mode) => {
      const handle = await nodeStoreFs.open(path, flags, mode);
      return {
        ...handle,
        write: async (buffer, offset, length, position) => {
          if (length > left) {
            const err = Object.assign(new Error(`${code}: injected`), { code });
            throw err;
          }
          left -= length;
          return handle.write(buffer, offset, length, position);
        },
        sync: () => handle.sync(),
        datasync: () => handle.datasync(),
        truncate: (n) => handle.truncate(n),
        close: () => handle.close(),
      };
    },
  };
}

describe('FsBlobStore on disk', () => {
  const roots: string[] = [];
  afterEach(async () => {
    await Promise.all(roots.splice(0).map((r) => rm(r, { recursive: true, force: true })));
  });
  async function newRoot(): Promise<string> {
    const root = await mkdtemp(join(tmpdir(), 'pg-blobs-'));
    roots.push(root);
    return root;
  }

  it('uses the OCI layout and never shows a partial blob at its final path', async () => {
    const root = await newRoot();
    const store = await FsBlobStore.open({ root });
    const bytes = randomBytes(50_000);
    const desc = blobOf(bytes);
    const finalPath = join(root, 'blobs', 'sha256', digestHex(desc.digest));
    const writer = await store.ingest(desc);
    await writer.write(bytes.subarray(0, 25_000));
    await expect(stat(finalPath)).rejects.toMatchObject({ code: 'ENOENT' });
    expect((await readdir(join(root, 'ingest'))).length).toBe(1);
    await writer.write(bytes.subarray(25_000));
    await writer.commit();
    expect((await stat(finalPath)).size).toBe(50_000);
    expect(await readdir(join(root, 'ingest'))).toEqual([]);
  });

  it('takes network-sized chunks without waiting, and asks the writer to wait only when a 1 MiB batch is written', async () => {
    const root = await newRoot();
    const store = await FsBlobStore.open({ root });
    const bytes = randomBytes(2.5 * 1024 * 1024);
    const writer = await store.ingest(blobOf(bytes));
    let waits = 0;
    for (let at = 0; at < bytes.length; at += 64 * 1024) {
      const pending = writer.write(bytes.subarray(at, at + 64 * 1024));
      if (pending !== undefined) {
        waits += 1;
        await pending;
      }
    }
    expect(waits).toBe(2); // the two full batches; the last half batch is written by commit
    await writer.commit();
    expect(Buffer.from(await store.readAll(blobOf(bytes).digest, bytes.length)).equals(bytes)).toBe(true);
  });

  it('maps ENOSPC and EDQUOT to STORE_FULL naming the store root, and drops the temp file', async () => {
    for (const code of ['ENOSPC', 'EDQUOT']) {
      const root = await newRoot();
      const store = await FsBlobStore.open({ root, fs: failingFs(code, 10_000) });
      const bytes = randomBytes(30_000);
      const writer = await store.ingest(blobOf(bytes));
      // Writes are batched: the failure surfaces at a later write or at commit, never as success.
      const err = (await (async () => {
        await writer.write(bytes.subarray(0, 8000));
        await writer.write(bytes.subarray(8000));
        await writer.commit();
      })().then(
        () => undefined,
        (e: unknown) => e,
      )) as PullguardError;
      expect(isPullguardError(err, 'STORE_FULL')).toBe(true);
      expect(err.message).toContain(root);
      expect(err.message).toContain(code);
      expect(err.facts.root).toBe(root);
      expect(await readdir(join(root, 'ingest'))).toEqual([]);
      expect(await store.has(blobOf(bytes).digest)).toBe(false);
    }
  });

  it('maps other fs errors to STORE_IO with the cause', async () => {
    const root = await newRoot();
    const store = await FsBlobStore.open({ root, fs: failingFs('EIO', 0) });
    const bytes = randomBytes(10);
    const writer = await store.ingest(blobOf(bytes));
    const err = (await Promise.resolve(writer.write(bytes))
      .then(() => writer.commit())
      .then(
        () => undefined,
        (e: unknown) => e,
      )) as PullguardError;
    expect(isPullguardError(err, 'STORE_IO')).toBe(true);
    expect((err.cause as { code?: string }).code).toBe('EIO');
  });

  it('keeps temp files of other live processes and removes foreign names', async () => {
    const root = await newRoot();
    await FsBlobStore.open({ root });
    const liveOther = `${process.ppid}-12345678-aa`;
    await writeFile(join(root, 'ingest', liveOther), 'x');
    await writeFile(join(root, 'ingest', 'not-ours.tmp'), 'x');
    // Our own pid with another process token: a previous run that had the same pid (containers).
    await writeFile(join(root, 'ingest', `${process.pid}-00000000-bb`), 'x');
    const store = await FsBlobStore.open({ root });
    expect(await readdir(join(root, 'ingest'))).toEqual([liveOther]);
    expect(await store.staleIngests()).toEqual([]);
  });

  it('detects a blob corrupted on disk when reading it whole', async () => {
    const root = await newRoot();
    const store = await FsBlobStore.open({ root });
    const desc = await putBlob(store, randomBytes(100));
    await appendFile(join(root, 'blobs', 'sha256', digestHex(desc.digest)), 'rot');
    await expect(store.readAll(desc.digest, 1000)).rejects.toMatchObject({ code: 'DIGEST_MISMATCH' });
    const v = await store.verify(desc.digest);
    expect(v?.size).toBe(103);
    expect(v?.actual).not.toBe(desc.digest);
  });

  it("serves as the pull use case's ContentStore port", async () => {
    const port: ContentStore = await FsBlobStore.open({ root: await newRoot() });
    const bytes = randomBytes(64);
    const writer = await port.ingest(blobOf(bytes));
    await writer.write(bytes);
    await writer.commit();
    expect(await port.has(blobOf(bytes).digest)).toBe(true);
  });

  it('reports the real path of the root as the mountpoint', async () => {
    const root = await newRoot();
    const store = await FsBlobStore.open({ root: join(root, '.', 'sub', '..', 'store') });
    expect(store.fsInfo().mountpoint).toBe(join(root, 'store'));
  });

  it('reports STORE_IO when the root cannot be created', async () => {
    const root = await newRoot();
    await writeFile(join(root, 'file'), 'x');
    const err = await FsBlobStore.open({ root: join(root, 'file', 'store') }).catch((e: unknown) => e);
    expect(isPullguardError(err, 'STORE_IO')).toBe(true);
  });
});

describe('CoalescedDirectorySync', () => {
  it('lets callers that arrive during a sync share the next one, which starts after them', async () => {
    const opened: number[] = [];
    let release: () => void = () => undefined;
    const gate = new Promise<void>((r) => (release = r));
    const fs = {
      ...nodeStoreFs,
      open: async (path: string, flags: string) => {
        opened.push(Date.now());
        const handle = await nodeStoreFs.open(path, flags);
        return { ...handle, sync: async () => (opened.length === 1 ? gate : undefined) };
      },
    };
    const dir = await mkdtemp(join(tmpdir(), 'pg-dirsync-'));
    const sync = new CoalescedDirectorySync(fs, dir);
    const first = sync.sync();
    await new Promise((r) => setTimeout(r, 10));
    const waiting = [sync.sync(), sync.sync(), sync.sync()];
    expect(opened).toHaveLength(1);
    release();
    await Promise.all([first, ...waiting]);
    expect(opened).toHaveLength(2);
    await rm(dir, { recursive: true, force: true });
  });
});
