import type { Digest } from '../domain/digest.js';
import type { ImageRecord } from '../domain/image-record.js';

export interface GarbageReport {
  readonly deleted: readonly Digest[];
  readonly freedBytes: number;
}

/**
 * The records of pulled images. Reads come from memory; mutations are serialised and persisted
 * before they resolve.
 */
export interface ImageIndex {
  list(): readonly ImageRecord[];
  get(id: Digest): ImageRecord | undefined;
  /**
   * Adds or updates the record with `record.id`: its tags and digests are merged with those already
   * recorded, other fields replaced. A tag moves off any other image that had it (an image left
   * with no tags keeps its digests). Every referenced blob must already be in the store. A record
   * whose id is held by another manifest is refused (IMAGE_ID_CONFLICT): records never merge across
   * manifests.
   */
  put(record: ImageRecord): Promise<ImageRecord>;
  /** Removes the record (its blobs go at the next collectGarbage). False if absent. */
  remove(id: Digest): Promise<boolean>;
  /**
   * Finds an image by full id (`sha256:<hex>` or bare 64 hex), normalised tag
   * (`docker.io/library/nginx:latest`), digest reference (`name@sha256:…`, matched against
   * repoDigests), or a unique id prefix of at least MIN_ID_PREFIX hex characters (with or without
   * `sha256:`). Names are tried before prefixes; an ambiguous prefix finds nothing.
   */
  resolve(name: string): ImageRecord | undefined;
  /** Deletes blobs no record references and no lease pins. Record-first order makes it crash-safe. */
  collectGarbage(): Promise<GarbageReport>;
}

export const MIN_ID_PREFIX = 6;
