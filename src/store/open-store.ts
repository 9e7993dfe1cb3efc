import { mkdir } from 'node:fs/promises';
import { FsBlobStore } from './fs-blob-store.js';
import { FsImageIndex } from './fs-image-index.js';
import type { StoreFs } from './fs-facade.js';
import { lockStore } from './store-lock.js';

export interface OpenedStore {
  readonly blobs: FsBlobStore;
  readonly images: FsImageIndex;
  /** Closes the index and releases the store lock. */
  close(): Promise<void>;
}

/** Opens blobs then index under one root (stale temp files are cleaned by the blob store's open). */
export async function openStore(root: string, options: { fs?: StoreFs; compactAfter?: number } = {}): Promise<OpenedStore> {
  await mkdir(root, { recursive: true });
  const lock = await lockStore(root);
  try {
    const blobs = await FsBlobStore.open({ root, ...(options.fs !== undefined ? { fs: options.fs } : {}) });
    const images = await FsImageIndex.open({
      root,
      blobs,
      ...(options.fs !== undefined ? { fs: options.fs } : {}),
      ...(options.compactAfter !== undefined ? { compactAfter: options.compactAfter } : {}),
    });
    return {
      blobs,
      images,
      async close() {
        await images.close();
        await lock.release();
      },
    };
  } catch (err) {
    await lock.release();
    throw err;
  }
}
