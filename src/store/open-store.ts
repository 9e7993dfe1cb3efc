import { mkdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { PullguardError } from '../domain/errors.js';
import { FsBlobStore } from './fs-blob-store.js';
import { FsImageIndex } from './fs-image-index.js';
import type { StoreFs } from './fs-facade.js';
import { storeError } from './store-errors.js';
import { lockStore } from './store-lock.js';

export interface OpenedStore {
  readonly blobs: FsBlobStore;
  readonly images: FsImageIndex;
  /** Closes the index and releases the store lock. */
  close(): Promise<void>;
}

export interface OpenStoreOptions {
  readonly fs?: StoreFs;
  readonly compactAfter?: number;
  /**
   * `false` for the offline commands (fsck, verify): a store that is not there is an error, and
   * nothing is created, so a mistyped --state-dir is not reported as an empty, consistent store.
   */
  readonly create?: boolean;
}

/** Opens blobs then index under one root (stale temp files are cleaned by the blob store's open). */
export async function openStore(root: string, options: OpenStoreOptions = {}): Promise<OpenedStore> {
  if (options.create === false) await requireExistingStore(root);
  else await mkdir(root, { recursive: true });
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

/** A store has its blobs directory from its first open on; without it there is no store here. */
async function requireExistingStore(root: string): Promise<void> {
  const blobs = await stat(join(root, 'blobs')).catch((err: unknown) => {
    if ((err as { code?: unknown }).code === 'ENOENT' || (err as { code?: unknown }).code === 'ENOTDIR') return undefined;
    throw storeError(err, root, 'checking the store');
  });
  if (blobs?.isDirectory() !== true) {
    throw new PullguardError('STORE_IO', `no pullguard store at ${root} (nothing was created); is the state directory right?`, {
      facts: { root, notFound: true },
    });
  }
}
