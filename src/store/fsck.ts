/**
 * Checks the store against itself: every blob re-hashed (streamed), every record against its blobs,
 * orphaned temp files, unreachable blobs. With `repair`, it removes exactly what is unsound, in a
 * crash-safe order: broken records first, then corrupt blobs, stale temp files and unreachable
 * blobs (a crash in the middle leaves only garbage, never a record pointing at a missing blob).
 */
import type { Digest } from '../domain/digest.js';
import type { BlobStore } from './blob-store.js';
import type { ImageIndex } from './image-index.js';
import { referencedBlobs } from './image-record.js';
import type { ImageRecord } from '../domain/image-record.js';

export interface CorruptBlob {
  readonly digest: Digest;
  /** The digest the content hashes to. */
  readonly actual: Digest;
  readonly size: number;
}

export interface BrokenRecord {
  readonly id: Digest;
  readonly repoTags: readonly string[];
  readonly problems: readonly string[];
}

export interface FsckReport {
  readonly blobsChecked: number;
  readonly recordsChecked: number;
  readonly corruptBlobs: readonly CorruptBlob[];
  readonly brokenRecords: readonly BrokenRecord[];
  /** Temp files under ingest/ whose writer is gone. */
  readonly staleIngests: readonly string[];
  /** Sound blobs no sound record references and no lease pins. */
  readonly unreachableBlobs: readonly Digest[];
  readonly repaired?: {
    readonly removedRecords: readonly Digest[];
    readonly deletedBlobs: readonly Digest[];
    readonly removedIngests: readonly string[];
  };
  /** True when nothing unsound was found (unreachable blobs are garbage, not damage). */
  readonly ok: boolean;
}

export async function fsck(store: BlobStore, index: ImageIndex, options: { readonly repair?: boolean } = {}): Promise<FsckReport> {
  const staleIngests = await store.staleIngests();

  const sizes = new Map<Digest, number>();
  const corruptBlobs: CorruptBlob[] = [];
  let blobsChecked = 0;
  for await (const digest of store.list()) {
    const result = await store.verify(digest);
    if (result === undefined) continue; // deleted while we looked
    blobsChecked += 1;
    if (result.actual === digest) sizes.set(digest, result.size);
    else corruptBlobs.push({ digest, actual: result.actual, size: result.size });
  }
  const corrupt = new Set(corruptBlobs.map((c) => c.digest));

  const records = index.list();
  const brokenRecords: BrokenRecord[] = [];
  const referenced = new Set<Digest>();
  for (const record of records) {
    const problems: string[] = [];
    for (const digest of referencedBlobs(record)) {
      if (corrupt.has(digest)) problems.push(`blob ${digest} is corrupt`);
      else if (!sizes.has(digest)) problems.push(`blob ${digest} is missing`);
    }
    for (const layer of record.layers) {
      const size = sizes.get(layer.digest);
      if (size !== undefined && size !== layer.size) problems.push(`layer ${layer.digest} is ${size} bytes, the record says ${layer.size}`);
    }
    if (problems.length === 0) problems.push(...(await disagreements(store, record)));
    if (problems.length > 0) brokenRecords.push({ id: record.id, repoTags: record.repoTags, problems });
    else for (const digest of referencedBlobs(record)) referenced.add(digest);
  }
  const unreachableBlobs = [...sizes.keys()].filter((d) => !referenced.has(d) && !store.isPinned(d));

  const found = { blobsChecked, recordsChecked: records.length, corruptBlobs, brokenRecords, staleIngests, unreachableBlobs };
  const ok = corruptBlobs.length === 0 && brokenRecords.length === 0 && staleIngests.length === 0;
  if (options.repair !== true) return { ...found, ok };

  const removedRecords: Digest[] = [];
  for (const broken of brokenRecords) if (await index.remove(broken.id)) removedRecords.push(broken.id);
  const deletedBlobs: Digest[] = [];
  for (const { digest } of corruptBlobs) if (await store.delete(digest)) deletedBlobs.push(digest);
  const removedIngests = await store.removeStaleIngests();
  // GC re-reads the records under the index lock, so a concurrent pull's new blobs are safe.
  const garbage = await index.collectGarbage();
  deletedBlobs.push(...garbage.deleted);
  return { ...found, ok, repaired: { removedRecords, deletedBlobs, removedIngests } };
}

/** The largest manifest or index fsck reads (the registry client's own cap is the same order). */
const MAX_MANIFEST_BYTES = 4 * 1024 * 1024;

interface StoredDescriptor {
  readonly digest?: unknown;
  readonly size?: unknown;
}

/**
 * Where the record and the manifest it was verified under disagree: the manifest names another
 * config or other layers, or the index (top) does not list the manifest. Such a record is what a
 * merge of two images would leave, and what a runtime would be served through the mirror.
 */
async function disagreements(store: BlobStore, record: ImageRecord): Promise<string[]> {
  const problems: string[] = [];
  let manifest: { config?: StoredDescriptor; layers?: StoredDescriptor[] };
  try {
    manifest = JSON.parse(Buffer.from(await store.readAll(record.manifestDigest, MAX_MANIFEST_BYTES)).toString('utf8')) as typeof manifest;
  } catch (err) {
    return [`manifest ${record.manifestDigest} cannot be read as a manifest: ${(err as Error).message}`];
  }
  if (manifest.config?.digest !== record.configDigest) {
    problems.push(`manifest ${record.manifestDigest} names config ${String(manifest.config?.digest)}, the record says ${record.configDigest}`);
  }
  const named = (manifest.layers ?? []).map((l) => `${String(l.digest)}/${String(l.size)}`);
  const recorded = record.layers.map((l) => `${l.digest}/${l.size}`);
  if (named.join(',') !== recorded.join(',')) {
    problems.push(`manifest ${record.manifestDigest} names layers [${named.join(', ')}], the record says [${recorded.join(', ')}]`);
  }
  if (record.topDigest !== record.manifestDigest) {
    try {
      const index = JSON.parse(Buffer.from(await store.readAll(record.topDigest, MAX_MANIFEST_BYTES)).toString('utf8')) as { manifests?: StoredDescriptor[] };
      if (!(index.manifests ?? []).some((m) => m.digest === record.manifestDigest)) {
        problems.push(`index ${record.topDigest} does not list manifest ${record.manifestDigest}`);
      }
    } catch (err) {
      problems.push(`index ${record.topDigest} cannot be read as an index: ${(err as Error).message}`);
    }
  }
  return problems;
}
