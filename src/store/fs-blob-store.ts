/**
 * BlobStore on a plain directory in OCI image-layout style:
 *
 *   <root>/blobs/<alg>/<hex>     committed, verified blobs (read-only once there)
 *   <root>/ingest/<pid>-<token>-<random>   temp files of in-progress ingests
 *
 * Commit = fsync the temp file, hard-link it to its final name (atomic, and fails with EEXIST
 * if another writer got there first, so a blob is counted once), unlink the temp, fsync the
 * directory. A crash at any point leaves either no final file or a complete, verified one.
 * Temp names carry the writer's pid and a per-process token so a later process can tell a live
 * writer's temp file from one orphaned by a crash (pid reuse in containers included).
 */
import { createHash, randomBytes, type Hash } from 'node:crypto';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { digestAlgorithm, digestHex, parseDigest, type Digest } from '../domain/digest.js';
import { PullguardError } from '../domain/errors.js';
import type { Descriptor } from '../domain/image.js';
import type { BlobWriter } from '../pull/ports.js';
import { BlobLeases, type BlobLease } from './blob-leases.js';
import type { BlobStore, BlobVerification, ReadRange, StoreFsInfo } from './blob-store.js';
import { CoalescedDirectorySync, errnoCode, nodeStoreFs, writeFully, type StoreFileHandle, type StoreFs } from './fs-facade.js';
import { blobNotFound, storeError } from './store-errors.js';

const ALGORITHMS = ['sha256', 'sha512'] as const;
const HEX_LENGTH = { sha256: 64, sha512: 128 } as const;
/** Distinguishes this process from an earlier one that had the same pid. */
const PROCESS_TOKEN = randomBytes(4).toString('hex');
const TEMP_NAME_RE = /^(\d+)-([0-9a-f]{8})-[0-9a-f]+$/;

export interface FsBlobStoreOptions {
  readonly root: string;
  readonly fs?: StoreFs;
}

export class FsBlobStore implements BlobStore {
  readonly root: string;
  readonly #fs: StoreFs;
  readonly #realRoot: string;
  readonly #leases = new BlobLeases();
  /** Committed blobs and their sizes: the running totals for fsInfo. */
  readonly #sizes = new Map<Digest, number>();
  #usedBytes = 0;
  #activeIngests = 0;

  private constructor(root: string, realRoot: string, fs: StoreFs) {
    this.root = root;
    this.#realRoot = realRoot;
    this.#fs = fs;
  }

  /** Creates the layout if needed, removes orphaned temp files, and counts what is stored. */
  static async open(options: FsBlobStoreOptions): Promise<FsBlobStore> {
    const fs = options.fs ?? nodeStoreFs;
    const root = options.root;
    try {
      for (const alg of ALGORITHMS) await fs.mkdir(join(root, 'blobs', alg));
      await fs.mkdir(join(root, 'ingest'));
      const store = new FsBlobStore(root, await fs.realpath(root), fs);
      await store.removeStaleIngests();
      await store.#recount();
      return store;
    } catch (err) {
      throw storeError(err, root, 'opening the store');
    }
  }

  async #recount(): Promise<void> {
    this.#sizes.clear();
    this.#usedBytes = 0;
    for await (const digest of this.#scan()) {
      try {
        const { size } = await this.#fs.stat(this.#blobPath(digest));
        this.#sizes.set(digest, size);
        this.#usedBytes += size;
      } catch (err) {
        if (errnoCode(err) !== 'ENOENT') throw err;
      }
    }
  }

  #blobPath(digest: Digest): string {
    // Re-validated here because the digest becomes a path: no traversal, ever.
    const valid = parseDigest(digest);
    return join(this.root, 'blobs', digestAlgorithm(valid), digestHex(valid));
  }

  async has(digest: Digest): Promise<boolean> {
    return (await this.stat(digest)) !== undefined;
  }

  async stat(digest: Digest): Promise<{ size: number } | undefined> {
    const path = this.#blobPath(digest);
    try {
      const st = await this.#fs.stat(path);
      return { size: st.size };
    } catch (err) {
      if (errnoCode(err) === 'ENOENT') return undefined;
      throw storeError(err, this.root, `stat of blob ${digest}`, { digest });
    }
  }

  async openRead(digest: Digest, range: ReadRange = {}): Promise<Readable> {
    const st = await this.stat(digest);
    if (st === undefined) throw blobNotFound(this.root, digest);
    const start = range.start ?? 0;
    const end = range.end ?? st.size - 1;
    const validRange = Number.isSafeInteger(start) && Number.isSafeInteger(end) && start >= 0 && (st.size === 0 ? start === 0 : start <= end && end < st.size);
    if (!validRange) {
      throw new PullguardError('INVALID_ARGUMENT', `range ${start}-${end} is outside blob ${digest} of ${st.size} bytes`, {
        facts: { digest, size: st.size, start, end },
      });
    }
    // fs.createReadStream cannot express an empty range.
    if (st.size === 0) return Readable.from([]);
    return this.#fs.createReadStream(this.#blobPath(digest), { start, end });
  }

  async readAll(digest: Digest, maxBytes: number): Promise<Uint8Array> {
    const st = await this.stat(digest);
    if (st === undefined) throw blobNotFound(this.root, digest);
    if (st.size > maxBytes) {
      throw new PullguardError('TOO_LARGE', `blob ${digest} is ${st.size} bytes, more than the ${maxBytes} allowed`, {
        facts: { digest, size: st.size, maxBytes },
      });
    }
    let bytes: Buffer;
    try {
      bytes = await this.#fs.readFile(this.#blobPath(digest));
    } catch (err) {
      if (errnoCode(err) === 'ENOENT') throw blobNotFound(this.root, digest);
      throw storeError(err, this.root, `reading blob ${digest}`, { digest });
    }
    if (bytes.length > maxBytes) {
      throw new PullguardError('TOO_LARGE', `blob ${digest} is more than the ${maxBytes} bytes allowed`, { facts: { digest, maxBytes } });
    }
    // Small blobs (manifests, configs) are cheap to re-hash; it catches on-disk corruption before it is trusted.
    const actual = hashOf(digestAlgorithm(digest), bytes);
    if (actual !== digest) {
      throw new PullguardError('DIGEST_MISMATCH', `stored blob ${digest} is corrupt: its content has digest ${actual}`, {
        facts: { digest, actualDigest: actual, root: this.root },
      });
    }
    return new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.length);
  }

  async delete(digest: Digest): Promise<boolean> {
    try {
      await this.#fs.unlink(this.#blobPath(digest));
    } catch (err) {
      if (errnoCode(err) === 'ENOENT') {
        this.#forget(digest);
        return false;
      }
      throw storeError(err, this.root, `deleting blob ${digest}`, { digest });
    }
    this.#forget(digest);
    return true;
  }

  #forget(digest: Digest): void {
    const size = this.#sizes.get(digest);
    if (size === undefined) return;
    this.#sizes.delete(digest);
    this.#usedBytes -= size;
  }

  async *list(): AsyncIterable<Digest> {
    try {
      yield* this.#scan();
    } catch (err) {
      throw storeError(err, this.root, 'listing blobs');
    }
  }

  async *#scan(): AsyncIterable<Digest> {
    for (const alg of ALGORITHMS) {
      const names = await this.#fs.readdir(join(this.root, 'blobs', alg));
      const re = new RegExp(`^[0-9a-f]{${HEX_LENGTH[alg]}}$`);
      for (const name of names.sort()) {
        if (re.test(name)) yield `${alg}:${name}` as Digest;
      }
    }
  }

  async ingest(expected: Descriptor): Promise<BlobWriter> {
    const digest = parseDigest(expected.digest);
    if (!Number.isSafeInteger(expected.size) || expected.size < 0) {
      throw new PullguardError('INVALID_ARGUMENT', `blob ${digest}: invalid size ${String(expected.size)}`, { facts: { digest } });
    }
    const tempPath = join(this.root, 'ingest', `${process.pid}-${PROCESS_TOKEN}-${randomBytes(8).toString('hex')}`);
    let handle: StoreFileHandle;
    try {
      handle = await this.#fs.open(tempPath, 'wx', 0o644);
    } catch (err) {
      throw storeError(err, this.root, `starting ingest of blob ${digest}`, { digest });
    }
    this.#activeIngests += 1;
    const lease = this.#leases.acquire([digest]);
    return new FsBlobWriter({
      digest,
      size: expected.size,
      tempPath,
      handle,
      fs: this.#fs,
      root: this.root,
      publish: (path) => this.#publish(path, digest, expected.size),
      done: () => {
        this.#activeIngests -= 1;
        lease.release();
      },
    });
  }

  readonly #directorySyncs = new Map<string, CoalescedDirectorySync>();

  #directorySync(algorithm: string): CoalescedDirectorySync {
    let sync = this.#directorySyncs.get(algorithm);
    if (sync === undefined) {
      sync = new CoalescedDirectorySync(this.#fs, join(this.root, 'blobs', algorithm));
      this.#directorySyncs.set(algorithm, sync);
    }
    return sync;
  }

  /** Moves a verified, fsynced temp file to its digest path; returns when that is durable. */
  async #publish(tempPath: string, digest: Digest, size: number): Promise<void> {
    const finalPath = this.#blobPath(digest);
    try {
      await this.#fs.link(tempPath, finalPath);
    } catch (err) {
      const code = errnoCode(err);
      if (code === 'EEXIST') {
        // Another writer committed the same verified content first: nothing to do.
      } else if (code === 'EPERM' || code === 'ENOTSUP' || code === 'EOPNOTSUPP' || code === 'ENOSYS' || code === 'EMLINK') {
        // No hard links here: rename is atomic too, it just may replace an identical file.
        await this.#fs.rename(tempPath, finalPath);
      } else {
        throw err;
      }
    }
    await unlinkIfPresent(this.#fs, tempPath);
    await this.#directorySync(digestAlgorithm(digest)).sync();
    // Counted once however many writers committed it (EEXIST above means someone else did).
    if (!this.#sizes.has(digest)) {
      this.#sizes.set(digest, size);
      this.#usedBytes += size;
    }
  }

  async verify(digest: Digest): Promise<BlobVerification | undefined> {
    const path = this.#blobPath(digest);
    const hash = createHash(digestAlgorithm(digest));
    let size = 0;
    try {
      const stream = this.#fs.createReadStream(path, {});
      for await (const chunk of stream as AsyncIterable<Buffer>) {
        hash.update(chunk);
        size += chunk.length;
      }
    } catch (err) {
      if (errnoCode(err) === 'ENOENT') return undefined;
      throw storeError(err, this.root, `verifying blob ${digest}`, { digest });
    }
    return { size, actual: `${digestAlgorithm(digest)}:${hash.digest('hex')}` as Digest };
  }

  async staleIngests(): Promise<string[]> {
    let names: string[];
    try {
      names = await this.#fs.readdir(join(this.root, 'ingest'));
    } catch (err) {
      throw storeError(err, this.root, 'listing ingests');
    }
    return names.filter(isStaleTempName).sort();
  }

  async removeStaleIngests(): Promise<string[]> {
    const stale = await this.staleIngests();
    for (const name of stale) {
      try {
        await unlinkIfPresent(this.#fs, join(this.root, 'ingest', name));
      } catch (err) {
        throw storeError(err, this.root, `removing stale temp file ingest/${name}`);
      }
    }
    return stale;
  }

  acquireLease(digests: Iterable<Digest>): BlobLease {
    return this.#leases.acquire(digests);
  }

  withLease<T>(digests: Iterable<Digest>, fn: () => Promise<T>): Promise<T> {
    return this.#leases.with(digests, fn);
  }

  isPinned(digest: Digest): boolean {
    return this.#leases.isPinned(digest);
  }

  fsInfo(): StoreFsInfo {
    return { mountpoint: this.#realRoot, usedBytes: this.#usedBytes, inodesUsed: this.#sizes.size + this.#activeIngests };
  }
}

/** A temp file whose writer is gone: not ours by name, its pid is dead, or its pid was reused. */
function isStaleTempName(name: string): boolean {
  const match = TEMP_NAME_RE.exec(name);
  if (match === null) return true;
  const pid = Number(match[1]);
  if (pid === process.pid) return match[2] !== PROCESS_TOKEN;
  try {
    process.kill(pid, 0);
    return false;
  } catch (err) {
    return errnoCode(err) === 'ESRCH';
  }
}

function hashOf(algorithm: 'sha256' | 'sha512', bytes: Uint8Array): Digest {
  return `${algorithm}:${createHash(algorithm).update(bytes).digest('hex')}` as Digest;
}

async function unlinkIfPresent(fs: StoreFs, path: string): Promise<void> {
  try {
    await fs.unlink(path);
  } catch (err) {
    if (errnoCode(err) !== 'ENOENT') throw err;
  }
}

interface WriterParts {
  readonly digest: Digest;
  readonly size: number;
  readonly tempPath: string;
  readonly handle: StoreFileHandle;
  readonly fs: StoreFs;
  readonly root: string;
  readonly publish: (tempPath: string) => Promise<void>;
  readonly done: () => void;
}

type WriterState = 'open' | 'committed' | 'discarded';

const WRITE_BATCH_BYTES = 1024 * 1024;

class FsBlobWriter implements BlobWriter {
  readonly #parts: WriterParts;
  readonly #hash: Hash;
  #offset = 0;
  #state: WriterState = 'open';
  /**
   * Accepted bytes not yet written (the first #pendingBytes of #batch): network chunks are ~64 KiB,
   * and one awaited write per chunk costs more than the copy that batches them into 1 MiB writes.
   */
  #batch: Buffer | undefined;
  #pendingBytes = 0;
  /** Writes, commit and abort run one at a time, in call order. */
  #queue: Promise<unknown> = Promise.resolve();
  /** Operations in #queue not yet finished (a synchronous write may only go ahead when none are). */
  #queued = 0;

  constructor(parts: WriterParts) {
    this.#parts = parts;
    this.#hash = createHash(digestAlgorithm(parts.digest));
  }

  get offset(): number {
    return this.#offset;
  }

  write(chunk: Uint8Array): Promise<void> | undefined {
    // The common case: nothing queued and the chunk fits in the batch without filling it, so it is
    // hashed and copied now, with no promise.
    if (this.#queued === 0 && this.#state === 'open' && this.#offset + chunk.length <= this.#parts.size) {
      const batch = this.#batchBuffer();
      if (this.#pendingBytes + chunk.length < batch.length) {
        this.#hash.update(chunk);
        this.#offset += chunk.length;
        batch.set(chunk, this.#pendingBytes);
        this.#pendingBytes += chunk.length;
        return undefined;
      }
    }
    return this.#serial(() => this.#write(chunk));
  }

  commit(): Promise<void> {
    return this.#serial(() => this.#commit());
  }

  abort(): Promise<void> {
    return this.#serial(() => this.#discard());
  }

  /** Allocated on first use and reused for the whole ingest; never larger than the blob. */
  #batchBuffer(): Buffer {
    this.#batch ??= Buffer.allocUnsafeSlow(Math.min(WRITE_BATCH_BYTES, this.#parts.size));
    return this.#batch;
  }

  #serial<T>(fn: () => Promise<T>): Promise<T> {
    this.#queued += 1;
    const result = this.#queue.then(fn).finally(() => {
      this.#queued -= 1;
    });
    this.#queue = result.catch(() => undefined);
    return result;
  }

  async #write(chunk: Uint8Array): Promise<void> {
    const { digest, size } = this.#parts;
    if (this.#state !== 'open') {
      throw new PullguardError('INTERNAL', `blob ${digest}: write after the ingest was ${this.#state}`, { facts: { digest } });
    }
    if (this.#offset + chunk.length > size) {
      const attempted = this.#offset + chunk.length;
      await this.#discard();
      throw new PullguardError('SIZE_MISMATCH', `blob ${digest}: expected ${size} bytes, received at least ${attempted}`, {
        facts: { digest, expectedSize: size, actualSize: attempted },
      });
    }
    this.#hash.update(chunk);
    this.#offset += chunk.length;
    // Copied into one reused buffer: no per-batch allocation, and the caller's chunk is free at once.
    let consumed = 0;
    while (consumed < chunk.length) {
      const batch = this.#batchBuffer();
      const n = Math.min(chunk.length - consumed, batch.length - this.#pendingBytes);
      batch.set(chunk.subarray(consumed, consumed + n), this.#pendingBytes);
      this.#pendingBytes += n;
      consumed += n;
      if (this.#pendingBytes === batch.length) await this.#flush();
    }
  }

  async #flush(): Promise<void> {
    if (this.#pendingBytes === 0 || this.#batch === undefined) return;
    const data = this.#batch.subarray(0, this.#pendingBytes);
    this.#pendingBytes = 0;
    try {
      await writeFully(this.#parts.handle, data);
    } catch (err) {
      await this.#discard();
      throw storeError(err, this.#parts.root, `writing blob ${this.#parts.digest}`, { digest: this.#parts.digest });
    }
  }

  async #commit(): Promise<void> {
    const { digest, size, root } = this.#parts;
    if (this.#state === 'committed') return;
    if (this.#state === 'discarded') {
      throw new PullguardError('INTERNAL', `blob ${digest}: commit after the ingest was aborted`, { facts: { digest } });
    }
    await this.#flush();
    if (this.#offset !== size) {
      const actualSize = this.#offset;
      await this.#discard();
      throw new PullguardError('SIZE_MISMATCH', `blob ${digest}: expected ${size} bytes, received ${actualSize}`, {
        facts: { digest, expectedSize: size, actualSize },
      });
    }
    const actual = `${digestAlgorithm(digest)}:${this.#hash.digest('hex')}`;
    if (actual !== digest) {
      await this.#discard();
      throw new PullguardError('DIGEST_MISMATCH', `blob digest mismatch: expected ${digest}, content has ${actual}`, {
        facts: { digest, actualDigest: actual },
      });
    }
    try {
      await this.#parts.handle.sync();
      await this.#parts.handle.close();
    } catch (err) {
      await this.#discard(true);
      throw storeError(err, root, `syncing blob ${digest}`, { digest });
    }
    try {
      await this.#parts.publish(this.#parts.tempPath);
    } catch (err) {
      await this.#discard(true);
      throw storeError(err, root, `committing blob ${digest}`, { digest });
    }
    this.#state = 'committed';
    this.#parts.done();
  }

  async #discard(handleClosed = false): Promise<void> {
    if (this.#state !== 'open') return;
    this.#state = 'discarded';
    this.#batch = undefined;
    this.#pendingBytes = 0;
    try {
      if (!handleClosed) await this.#parts.handle.close().catch(() => undefined);
      await unlinkIfPresent(this.#parts.fs, this.#parts.tempPath).catch(() => undefined);
    } finally {
      this.#parts.done();
    }
  }
}
