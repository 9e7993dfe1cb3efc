/**
 * The content-addressable blob store. Visibility rule (containerd's): a blob is written to a
 * private temp file (ingest), verified against its descriptor (commit), and only then appears at
 * its digest (visible). Nothing unverified is ever readable through this interface.
 */
import type { Readable } from 'node:stream';
import type { Digest } from '../domain/digest.js';
import type { Descriptor } from '../domain/image.js';
import type { BlobWriter } from '../pull/ports.js';
import type { BlobLease } from './blob-leases.js';

export interface ReadRange {
  readonly start?: number;
  /** Inclusive, like an HTTP Range header. */
  readonly end?: number;
}

export interface BlobVerification {
  readonly size: number;
  /** The digest the content actually hashes to (same algorithm as the name). */
  readonly actual: Digest;
}

export interface StoreFsInfo {
  /** The store root's real path (kubelet/cadvisor stat it). */
  readonly mountpoint: string;
  /** Sum of committed blob sizes. */
  readonly usedBytes: number;
  /** Files in the store: committed blobs plus in-progress ingests. */
  readonly inodesUsed: number;
}

export interface BlobStore {
  has(digest: Digest): Promise<boolean>;
  stat(digest: Digest): Promise<{ readonly size: number } | undefined>;
  /** Throws STORE_IO (facts.notFound) for a missing blob, INVALID_ARGUMENT for a range outside it. */
  openRead(digest: Digest, range?: ReadRange): Promise<Readable>;
  /** The whole blob, verified against its digest; TOO_LARGE above `maxBytes`. */
  readAll(digest: Digest, maxBytes: number): Promise<Uint8Array>;
  /** Removes a blob; false if it was not there. Does not consult leases (GC does). */
  delete(digest: Digest): Promise<boolean>;
  list(): AsyncIterable<Digest>;
  /** Starts an ingest. The writer pins `expected.digest` until it commits or aborts. */
  ingest(expected: Descriptor): Promise<BlobWriter>;
  /** Re-hashes a stored blob (for fsck); undefined if it is missing. */
  verify(digest: Digest): Promise<BlobVerification | undefined>;
  /** Temp files left by processes that are gone (names under ingest/). */
  staleIngests(): Promise<string[]>;
  removeStaleIngests(): Promise<string[]>;
  acquireLease(digests: Iterable<Digest>): BlobLease;
  withLease<T>(digests: Iterable<Digest>, fn: () => Promise<T>): Promise<T>;
  isPinned(digest: Digest): boolean;
  fsInfo(): StoreFsInfo;
}
