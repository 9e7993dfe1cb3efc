/** The store as the image queries (ListImages, ImageStatus, RemoveImage, ImageFsInfo) see it. */
import type { Digest } from '../domain/digest.js';
import type { ImageRecord } from '../domain/image-record.js';

export interface ImageIndexReader {
  list(): readonly ImageRecord[] | Promise<readonly ImageRecord[]>;
  /** By full id, unique id prefix, normalised tag or normalised digest reference. */
  resolve(name: string): ImageRecord | undefined | Promise<ImageRecord | undefined>;
  remove(id: Digest): Promise<unknown>;
}

export interface StoreMaintenance {
  collectGarbage(): Promise<unknown>;
  fsInfo(): Promise<{ mountpoint: string; usedBytes: number; inodesUsed: number }>;
}
