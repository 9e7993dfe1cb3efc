import type { Digest } from '../domain/digest.js';

/** A pin on some blobs; garbage collection skips pinned blobs until `release`. */
export interface BlobLease {
  release(): void;
}

/**
 * In-process pins. A pull holds a lease from before its first ingest until its record is written,
 * so a blob committed but not yet referenced by a record is not collected in between.
 */
export class BlobLeases {
  readonly #counts = new Map<string, number>();

  acquire(digests: Iterable<Digest>): BlobLease {
    const held = [...new Set(digests)];
    for (const digest of held) this.#counts.set(digest, (this.#counts.get(digest) ?? 0) + 1);
    let released = false;
    return {
      release: () => {
        if (released) return;
        released = true;
        for (const digest of held) {
          const next = (this.#counts.get(digest) ?? 1) - 1;
          if (next <= 0) this.#counts.delete(digest);
          else this.#counts.set(digest, next);
        }
      },
    };
  }

  async with<T>(digests: Iterable<Digest>, fn: () => Promise<T>): Promise<T> {
    const lease = this.acquire(digests);
    try {
      return await fn();
    } finally {
      lease.release();
    }
  }

  isPinned(digest: Digest): boolean {
    return this.#counts.has(digest);
  }
}
