/**
 * Conformance suite every BlobStore implementation runs (after containerd's ContentSuite):
 *
 *   blobStoreSuite('FsBlobStore', async () => ({ store, reopen, plantStaleIngest, cleanup }));
 */
import { createHash, randomBytes } from 'node:crypto';
import type { Readable } from 'node:stream';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Digest } from '../../../src/domain/digest.js';
import { isPullguardError } from '../../../src/domain/errors.js';
import type { Descriptor } from '../../../src/domain/image.js';
import type { BlobStore } from '../../../src/store/blob-store.js';

export interface BlobStoreHarness {
  readonly store: BlobStore;
  /** The same store opened again, as after a restart. */
  reopen(): Promise<BlobStore>;
  /** Leaves a temp file as a crashed process would; absent for stores without temp files. */
  plantStaleIngest?(): Promise<void>;
  cleanup(): Promise<void>;
}

export function blobOf(bytes: Uint8Array, algorithm: 'sha256' | 'sha512' = 'sha256'): Descriptor {
  return {
    mediaType: 'application/octet-stream',
    digest: `${algorithm}:${createHash(algorithm).update(bytes).digest('hex')}` as Digest,
    size: bytes.length,
  };
}

export async function putBlob(store: BlobStore, bytes: Uint8Array, algorithm: 'sha256' | 'sha512' = 'sha256'): Promise<Descriptor> {
  const desc = blobOf(bytes, algorithm);
  const writer = await store.ingest(desc);
  await writer.write(bytes);
  await writer.commit();
  return desc;
}

export async function collect(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream as AsyncIterable<Buffer>) chunks.push(chunk);
  return Buffer.concat(chunks);
}

async function listAll(store: BlobStore): Promise<Digest[]> {
  const out: Digest[] = [];
  for await (const d of store.list()) out.push(d);
  return out;
}

async function codeOf(promise: Promise<unknown> | undefined): Promise<string> {
  try {
    await promise;
  } catch (err) {
    return isPullguardError(err) ? err.code : `not a PullguardError: ${String(err)}`;
  }
  return 'resolved';
}

export function blobStoreSuite(name: string, factory: () => Promise<BlobStoreHarness>): void {
  describe(`BlobStore conformance: ${name}`, () => {
    let h: BlobStoreHarness;
    beforeEach(async () => {
      h = await factory();
    });
    afterEach(async () => {
      await h.cleanup();
    });

    it('makes a blob visible only after commit verifies it', async () => {
      const bytes = randomBytes(100_000);
      const desc = blobOf(bytes);
      const writer = await h.store.ingest(desc);
      await writer.write(bytes.subarray(0, 40_000));
      expect(writer.offset).toBe(40_000);
      expect(await h.store.has(desc.digest)).toBe(false);
      await writer.write(bytes.subarray(40_000));
      expect(await h.store.has(desc.digest)).toBe(false);
      expect(await listAll(h.store)).toEqual([]);
      await writer.commit();
      expect(await h.store.has(desc.digest)).toBe(true);
      expect(await h.store.stat(desc.digest)).toEqual({ size: 100_000 });
      expect(Buffer.from(await h.store.readAll(desc.digest, 1 << 20)).equals(bytes)).toBe(true);
      expect(await listAll(h.store)).toEqual([desc.digest]);
      expect(h.store.fsInfo().usedBytes).toBe(100_000);
      expect(h.store.fsInfo().inodesUsed).toBe(1);
      await writer.commit(); // a second commit is a no-op
      await writer.abort(); // abort after commit is safe and keeps the blob
      expect(await h.store.has(desc.digest)).toBe(true);
    });

    it('rejects a wrong digest, naming both, and leaves nothing behind', async () => {
      const bytes = randomBytes(5000);
      const desc = { ...blobOf(randomBytes(5000)) };
      const writer = await h.store.ingest(desc);
      await writer.write(bytes);
      const err = await writer.commit().then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(isPullguardError(err, 'DIGEST_MISMATCH')).toBe(true);
      expect((err as Error).message).toContain(desc.digest);
      expect((err as Error).message).toContain(blobOf(bytes).digest);
      expect(await h.store.has(desc.digest)).toBe(false);
      expect(await h.store.has(blobOf(bytes).digest)).toBe(false);
      expect(await listAll(h.store)).toEqual([]);
      expect(h.store.fsInfo()).toMatchObject({ usedBytes: 0, inodesUsed: 0 });
      expect(await h.store.staleIngests()).toEqual([]);
    });

    it('rejects too few bytes at commit and too many at write, without writing them', async () => {
      const bytes = randomBytes(1000);
      const short = await h.store.ingest(blobOf(bytes));
      await short.write(bytes.subarray(0, 999));
      const shortErr = await short.commit().then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(isPullguardError(shortErr, 'SIZE_MISMATCH')).toBe(true);
      expect((shortErr as Error).message).toMatch(/1000.*999/);

      const long = await h.store.ingest(blobOf(bytes));
      await long.write(bytes.subarray(0, 600));
      expect(await codeOf(long.write(randomBytes(401)))).toBe('SIZE_MISMATCH');
      expect(long.offset).toBe(600);
      expect(await codeOf(long.write(bytes.subarray(600)))).toBe('INTERNAL'); // the ingest is over
      expect(await codeOf(long.commit())).toBe('INTERNAL');
      expect(await h.store.has(blobOf(bytes).digest)).toBe(false);
      expect(h.store.fsInfo().inodesUsed).toBe(0);
    });

    it('abort drops the ingest and may be repeated', async () => {
      const bytes = randomBytes(3000);
      const writer = await h.store.ingest(blobOf(bytes));
      await writer.write(bytes);
      await writer.abort();
      await writer.abort();
      expect(await h.store.has(blobOf(bytes).digest)).toBe(false);
      expect(await codeOf(writer.commit())).toBe('INTERNAL');
      expect(h.store.fsInfo().inodesUsed).toBe(0);
      expect(h.store.isPinned(blobOf(bytes).digest)).toBe(false);
    });

    it('resumes a dropped download at writer.offset', async () => {
      const bytes = randomBytes(64 * 1024);
      const writer = await h.store.ingest(blobOf(bytes));
      // First "connection" delivers an arbitrary prefix, then drops.
      for (let at = 0; at < 20_000; at += 7000) await writer.write(bytes.subarray(at, Math.min(at + 7000, 20_000)));
      // The resumed request asks for `Range: bytes=<offset>-`.
      await writer.write(bytes.subarray(writer.offset));
      await writer.commit();
      expect(Buffer.from(await h.store.readAll(blobOf(bytes).digest, 1 << 20)).equals(bytes)).toBe(true);
    });

    it('lets concurrent ingests of one digest all succeed and stores it once', async () => {
      const bytes = randomBytes(256 * 1024);
      const desc = blobOf(bytes);
      const writers = await Promise.all(Array.from({ length: 5 }, () => h.store.ingest(desc)));
      // Interleave the writes so every temp file is in progress at once.
      for (let at = 0; at < bytes.length; at += 32 * 1024) {
        await Promise.all(writers.map((w) => w.write(bytes.subarray(at, at + 32 * 1024))));
      }
      await Promise.all(writers.map((w) => w.commit()));
      expect(await listAll(h.store)).toEqual([desc.digest]);
      expect(h.store.fsInfo()).toMatchObject({ usedBytes: bytes.length, inodesUsed: 1 });
      expect(await h.store.staleIngests()).toEqual([]);
      // A later ingest of a blob that exists also commits (a no-op after verification).
      await putBlob(h.store, bytes);
      expect(h.store.fsInfo().usedBytes).toBe(bytes.length);
    });

    it('pins a digest while it is being ingested', async () => {
      const bytes = randomBytes(10);
      const writer = await h.store.ingest(blobOf(bytes));
      expect(h.store.isPinned(blobOf(bytes).digest)).toBe(true);
      await writer.write(bytes);
      await writer.commit();
      expect(h.store.isPinned(blobOf(bytes).digest)).toBe(false);
      await h.store.withLease([blobOf(bytes).digest], async () => {
        expect(h.store.isPinned(blobOf(bytes).digest)).toBe(true);
      });
      expect(h.store.isPinned(blobOf(bytes).digest)).toBe(false);
    });

    it('serves byte ranges (end inclusive) and refuses ranges outside the blob', async () => {
      const bytes = randomBytes(10_000);
      const { digest } = await putBlob(h.store, bytes);
      expect((await collect(await h.store.openRead(digest))).equals(bytes)).toBe(true);
      expect((await collect(await h.store.openRead(digest, { start: 100, end: 199 }))).equals(bytes.subarray(100, 200))).toBe(true);
      expect((await collect(await h.store.openRead(digest, { start: 9000 }))).equals(bytes.subarray(9000))).toBe(true);
      expect((await collect(await h.store.openRead(digest, { start: 9999, end: 9999 }))).length).toBe(1);
      expect(await codeOf(h.store.openRead(digest, { start: 10_000 }))).toBe('INVALID_ARGUMENT');
      expect(await codeOf(h.store.openRead(digest, { start: 5, end: 4 }))).toBe('INVALID_ARGUMENT');
      expect(await codeOf(h.store.openRead(digest, { end: 10_000 }))).toBe('INVALID_ARGUMENT');
      const empty = await putBlob(h.store, new Uint8Array(0));
      expect((await collect(await h.store.openRead(empty.digest))).length).toBe(0);
    });

    it('reports missing blobs and caps readAll', async () => {
      const missing = blobOf(randomBytes(8)).digest;
      expect(await h.store.has(missing)).toBe(false);
      expect(await h.store.stat(missing)).toBeUndefined();
      expect(await h.store.verify(missing)).toBeUndefined();
      expect(await codeOf(h.store.openRead(missing))).toBe('STORE_IO');
      expect(await codeOf(h.store.readAll(missing, 10))).toBe('STORE_IO');
      const { digest } = await putBlob(h.store, randomBytes(2048));
      expect(await codeOf(h.store.readAll(digest, 2047))).toBe('TOO_LARGE');
      expect((await h.store.readAll(digest, 2048)).length).toBe(2048);
    });

    it('supports sha512 digests', async () => {
      const bytes = randomBytes(777);
      const desc = await putBlob(h.store, bytes, 'sha512');
      expect(desc.digest.startsWith('sha512:')).toBe(true);
      expect(await listAll(h.store)).toEqual([desc.digest]);
      expect(await h.store.verify(desc.digest)).toEqual({ size: 777, actual: desc.digest });
    });

    it('refuses digests that are not digests (no path tricks)', async () => {
      expect(await codeOf(h.store.ingest({ mediaType: 'x', digest: 'sha256:../../etc/passwd' as Digest, size: 1 }))).toBe('INVALID_DIGEST');
      expect(await codeOf(h.store.has('md5:abcd' as Digest))).toBe('INVALID_DIGEST');
    });

    it('deletes blobs and keeps the running totals right', async () => {
      const a = await putBlob(h.store, randomBytes(100));
      const b = await putBlob(h.store, randomBytes(300));
      expect(h.store.fsInfo()).toMatchObject({ usedBytes: 400, inodesUsed: 2 });
      expect(await h.store.delete(a.digest)).toBe(true);
      expect(await h.store.delete(a.digest)).toBe(false);
      expect(h.store.fsInfo()).toMatchObject({ usedBytes: 300, inodesUsed: 1 });
      expect(await listAll(h.store)).toEqual([b.digest]);
    });

    it('keeps committed blobs across reopen and recounts them', async () => {
      const a = await putBlob(h.store, randomBytes(1234));
      const b = await putBlob(h.store, randomBytes(10), 'sha512');
      const reopened = await h.reopen();
      expect((await listAll(reopened)).sort()).toEqual([a.digest, b.digest].sort());
      expect(reopened.fsInfo()).toMatchObject({ usedBytes: 1244, inodesUsed: 2 });
    });

    it('removes temp files of crashed writers on open, keeping live ones', async () => {
      if (h.plantStaleIngest === undefined) return;
      await h.plantStaleIngest();
      const bytes = randomBytes(500);
      const live = await h.store.ingest(blobOf(bytes));
      await live.write(bytes.subarray(0, 100));
      expect((await h.store.staleIngests()).length).toBe(1);
      const reopened = await h.reopen();
      expect(await reopened.staleIngests()).toEqual([]);
      // The live writer (this process) was not disturbed by the other instance's cleanup.
      await live.write(bytes.subarray(100));
      await live.commit();
      expect(await reopened.has(blobOf(bytes).digest)).toBe(true);
    });
  });
}
