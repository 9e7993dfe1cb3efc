/**
 * ImageIndex kept in memory (ListImages over 10,000 records is a cached array) and persisted as a
 * checksummed journal plus periodic snapshot (see index-persistence.ts), under `<root>/index/`.
 * Mutations are serialised by one mutex; a mutation's journal line is fsynced before it resolves,
 * with concurrent mutations sharing one fsync (group commit).
 */
import { join } from 'node:path';
import { parseDigest, type Digest } from '../domain/digest.js';
import { PullguardError } from '../domain/errors.js';
import { imageIdConflict } from '../domain/image-record.js';
import { parseReference } from '../domain/reference.js';
import { AsyncMutex } from './async-mutex.js';
import { nodeStoreFs, writeFully, type StoreFileHandle, type StoreFs } from './fs-facade.js';
import { MIN_ID_PREFIX, type GarbageReport, type ImageIndex } from './image-index.js';
import { referencedBlobs, validateImageRecord } from './image-record.js';
import { encodeOp, journalName, loadIndexFiles, unlinkIfPresent, writeSnapshot, type IndexOp } from './index-persistence.js';
import { freezeRecord, IndexState } from './index-state.js';
import { storeError } from './store-errors.js';
import type { ImageRecord } from '../domain/image-record.js';

/** What the index needs of the blob store: existence checks on put, and GC. */
export interface IndexBlobs {
  has(digest: Digest): Promise<boolean>;
  stat(digest: Digest): Promise<{ readonly size: number } | undefined>;
  delete(digest: Digest): Promise<boolean>;
  list(): AsyncIterable<Digest>;
  isPinned(digest: Digest): boolean;
}

export interface FsImageIndexOptions {
  /** The store root; the index lives in `<root>/index/`. */
  readonly root: string;
  readonly blobs: IndexBlobs;
  readonly fs?: StoreFs;
  /** Journal lines before a snapshot is written (at least the number of records). Default 1000. */
  readonly compactAfter?: number;
}

export interface IndexLoadReport {
  readonly replayedOps: number;
  /** Bytes of a torn/corrupt journal tail that were cut off at open (a crash mid-append). */
  readonly droppedJournalBytes: number;
}

export class FsImageIndex implements ImageIndex {
  readonly loadReport: IndexLoadReport;
  readonly #dir: string;
  readonly #fs: StoreFs;
  readonly #blobs: IndexBlobs;
  readonly #compactAfter: number;
  readonly #state: IndexState;
  readonly #mutex = new AsyncMutex();
  #generation: number;
  #journal: Journal;
  #opsSinceSnapshot: number;
  #closed = false;

  private constructor(parts: {
    dir: string;
    fs: StoreFs;
    blobs: IndexBlobs;
    compactAfter: number;
    state: IndexState;
    generation: number;
    journal: Journal;
    opsSinceSnapshot: number;
    loadReport: IndexLoadReport;
  }) {
    this.#dir = parts.dir;
    this.#fs = parts.fs;
    this.#blobs = parts.blobs;
    this.#compactAfter = parts.compactAfter;
    this.#state = parts.state;
    this.#generation = parts.generation;
    this.#journal = parts.journal;
    this.#opsSinceSnapshot = parts.opsSinceSnapshot;
    this.loadReport = parts.loadReport;
  }

  static async open(options: FsImageIndexOptions): Promise<FsImageIndex> {
    const fs = options.fs ?? nodeStoreFs;
    const dir = join(options.root, 'index');
    try {
      await fs.mkdir(dir);
      const loaded = await loadIndexFiles(fs, dir);
      const state = new IndexState();
      for (const record of loaded.records) state.apply({ op: 'put', record });
      for (const op of loaded.ops) state.apply(op);
      const handle = await fs.open(join(dir, journalName(loaded.generation)), 'a', 0o644);
      return new FsImageIndex({
        dir,
        fs,
        blobs: options.blobs,
        compactAfter: Math.max(1, options.compactAfter ?? 1000),
        state,
        generation: loaded.generation,
        journal: new Journal(handle, loaded.journalBytes),
        opsSinceSnapshot: loaded.ops.length,
        loadReport: { replayedOps: loaded.ops.length, droppedJournalBytes: loaded.droppedBytes },
      });
    } catch (err) {
      throw storeError(err, options.root, 'opening the image index');
    }
  }

  list(): readonly ImageRecord[] {
    return this.#state.list();
  }

  get(id: Digest): ImageRecord | undefined {
    return this.#state.get(id);
  }

  resolve(name: string): ImageRecord | undefined {
    const input = name.trim();
    if (/^sha256:[0-9a-f]{64}$/.test(input)) return this.#state.get(input as Digest);
    if (/^[0-9a-f]{64}$/.test(input)) return this.#state.get(`sha256:${input}` as Digest);
    const byName = this.#resolveName(input);
    if (byName !== undefined) return byName;
    const prefix = new RegExp(`^(?:sha256:)?([0-9a-f]{${MIN_ID_PREFIX},63})$`).exec(input);
    if (prefix === null) return undefined;
    const ids = this.#state.idsWithPrefix(`sha256:${prefix[1]}`);
    return ids.length === 1 && ids[0] !== undefined ? this.#state.get(ids[0]) : undefined;
  }

  #resolveName(input: string): ImageRecord | undefined {
    let ref;
    try {
      ref = parseReference(input);
    } catch {
      return undefined;
    }
    // name:tag@digest means the digest, as containerd and CRI-O treat it.
    if (ref.digest !== undefined) return this.#state.byRepoDigest(`${ref.name}@${ref.digest}`);
    return ref.tag === undefined ? undefined : this.#state.byTag(`${ref.name}:${ref.tag}`);
  }

  async put(record: ImageRecord): Promise<ImageRecord> {
    validateImageRecord(record);
    // A JSON round trip: memory holds exactly what a replay would rebuild.
    const copy = freezeRecord(JSON.parse(JSON.stringify(record)) as ImageRecord);
    const ticket = await this.#mutex.run(async () => {
      this.#assertOpen();
      const missing: Digest[] = [];
      for (const digest of referencedBlobs(copy)) if (!(await this.#blobs.has(digest))) missing.push(digest);
      if (missing.length > 0) {
        // The invariant fsck checks: no record ever points at a missing blob.
        throw new PullguardError('STORE_IO', `image ${copy.id} references blobs missing from the store: ${missing.join(', ')}`, {
          facts: { id: copy.id, missing: missing.join(',') },
        });
      }
      const holder = this.#state.get(copy.id);
      if (holder !== undefined && holder.manifestDigest !== copy.manifestDigest)
        throw imageIdConflict(holder, { manifestDigest: copy.manifestDigest, name: copy.repoTags[0] ?? copy.repoDigests[0] ?? copy.id });
      return this.#mutate({ op: 'put', record: copy });
    });
    await ticket.journal.syncThrough(ticket.seq, this.#dir);
    const stored = this.#state.get(copy.id);
    if (stored === undefined) throw new PullguardError('INTERNAL', `image ${copy.id} vanished after put`);
    return stored;
  }

  async remove(id: Digest): Promise<boolean> {
    parseDigest(id);
    const ticket = await this.#mutex.run(async () => {
      this.#assertOpen();
      if (!this.#state.has(id)) return undefined;
      return this.#mutate({ op: 'remove', id });
    });
    if (ticket === undefined) return false;
    await ticket.journal.syncThrough(ticket.seq, this.#dir);
    return true;
  }

  /** Appends the op, applies it, compacts when due. Runs under the mutex. */
  async #mutate(op: IndexOp): Promise<{ journal: Journal; seq: number }> {
    const journal = this.#journal;
    const seq = await journal.append(encodeOp(op), this.#dir);
    this.#state.apply(op);
    this.#opsSinceSnapshot += 1;
    if (this.#opsSinceSnapshot >= Math.max(this.#compactAfter, this.#state.size)) await this.#compact();
    return { journal, seq };
  }

  async #compact(): Promise<void> {
    const next = this.#generation + 1;
    try {
      await writeSnapshot(this.#fs, this.#dir, next, this.#state.list());
    } catch {
      // The journal still holds every op; retry after as many more rather than failing the mutation.
      this.#opsSinceSnapshot = 0;
      return;
    }
    const old = this.#journal;
    const oldGeneration = this.#generation;
    // From here the snapshot is the truth; a crash before the new journal exists loads it with no ops.
    old.retire();
    this.#generation = next;
    this.#opsSinceSnapshot = 0;
    this.#journal = new Journal(await this.#fs.open(join(this.#dir, journalName(next)), 'a', 0o644), 0);
    await old.close();
    await unlinkIfPresent(this.#fs, join(this.#dir, journalName(oldGeneration)));
  }

  async collectGarbage(): Promise<GarbageReport> {
    // Under the mutex: no put can add a reference between computing the set and deleting.
    return this.#mutex.run(async () => {
      this.#assertOpen();
      const referenced = new Set<Digest>();
      for (const record of this.#state.list()) for (const digest of referencedBlobs(record)) referenced.add(digest);
      const deleted: Digest[] = [];
      let freedBytes = 0;
      for await (const digest of this.#blobs.list()) {
        if (referenced.has(digest) || this.#blobs.isPinned(digest)) continue;
        const size = (await this.#blobs.stat(digest))?.size ?? 0;
        if (await this.#blobs.delete(digest)) {
          deleted.push(digest);
          freedBytes += size;
        }
      }
      return { deleted, freedBytes };
    });
  }

  async close(): Promise<void> {
    await this.#mutex.run(async () => {
      if (this.#closed) return;
      this.#closed = true;
      await this.#journal.close();
    });
  }

  #assertOpen(): void {
    if (this.#closed) throw new PullguardError('STORE_IO', `image index ${this.#dir} is closed`);
  }
}

/** The append side of one journal file, with group fsync. */
class Journal {
  readonly #handle: StoreFileHandle;
  #bytes: number;
  #written = 0;
  #synced = 0;
  #syncing: Promise<void> | undefined;
  #retired = false;
  #broken: unknown;

  constructor(handle: StoreFileHandle, bytes: number) {
    this.#handle = handle;
    this.#bytes = bytes;
  }

  /** Appends one line; returns its sequence number for syncThrough. Callers are serialised. */
  async append(line: Buffer, dir: string): Promise<number> {
    if (this.#broken !== undefined) throw storeError(this.#broken, dir, 'appending to the image index journal (earlier write failed)');
    try {
      await writeFully(this.#handle, line);
    } catch (err) {
      // Cut a partial line off so later appends are not hidden behind it at replay.
      try {
        await this.#handle.truncate(this.#bytes);
      } catch (truncateErr) {
        this.#broken = truncateErr;
      }
      throw storeError(err, dir, 'appending to the image index journal');
    }
    this.#bytes += line.length;
    this.#written += 1;
    return this.#written;
  }

  /** Resolves once line `seq` is on disk; concurrent callers share one datasync. */
  async syncThrough(seq: number, dir: string): Promise<void> {
    while (this.#synced < seq && !this.#retired) {
      if (this.#syncing === undefined) {
        const target = this.#written;
        this.#syncing = this.#handle
          .datasync()
          .then(() => {
            this.#synced = Math.max(this.#synced, target);
          })
          .finally(() => {
            this.#syncing = undefined;
          });
      }
      try {
        await this.#syncing;
      } catch (err) {
        throw storeError(err, dir, 'syncing the image index journal');
      }
    }
  }

  /** A snapshot now covers everything in this journal: syncs of it are moot. */
  retire(): void {
    this.#retired = true;
  }

  async close(): Promise<void> {
    await this.#handle.close();
  }
}
