/**
 * Images whose signature verdict is *allowed* but whose blobs are still being fetched. In front of a
 * runtime, pullguard asks the runtime to pull as soon as the verdict is known, and the local mirror
 * serves each blob the moment it is committed (verified) — the runtime's download overlaps
 * pullguard's instead of following it. A blob is still served only once pullguard has verified it;
 * this registry only says which blobs may become servable and when they are ready.
 */
import type { Digest } from '../domain/digest.js';

export interface InFlightImage {
  /** The repository pulled from (`domain/path`), as in the record's repo_digests. */
  readonly repository: string;
  /** Manifest and index digests → media type (already in the store when the image is listed). */
  readonly manifests: ReadonlyMap<Digest, string>;
  readonly blobs: ReadonlySet<Digest>;
  /**
   * True once `digest` is committed in the store; false when the pull ended without it (failed or
   * cancelled). A digest not in `blobs` is false at once.
   */
  ready(digest: Digest): Promise<boolean>;
}

/** The pull's side of an entry: report blobs as they are committed, then end the entry. */
export interface InFlightEntry {
  committed(digest: Digest): void;
  /** Removes the entry; waiters of blobs not committed get false. Idempotent. */
  end(): void;
}

export class InFlightImages {
  readonly #entries = new Set<InFlightImage>();

  add(image: { readonly repository: string; readonly manifests: ReadonlyMap<Digest, string>; readonly blobs: ReadonlySet<Digest> }): InFlightEntry {
    const waiters = new Map<Digest, { promise: Promise<boolean>; resolve: (ready: boolean) => void }>();
    for (const digest of image.blobs) {
      let resolve!: (ready: boolean) => void;
      const promise = new Promise<boolean>((r) => (resolve = r));
      waiters.set(digest, { promise, resolve });
    }
    const entry: InFlightImage = {
      repository: image.repository,
      manifests: new Map(image.manifests),
      blobs: new Set(image.blobs),
      ready: (digest) => waiters.get(digest)?.promise ?? Promise.resolve(false),
    };
    this.#entries.add(entry);
    return {
      committed: (digest) => waiters.get(digest)?.resolve(true),
      end: () => {
        this.#entries.delete(entry);
        for (const waiter of waiters.values()) waiter.resolve(false);
      },
    };
  }

  list(): readonly InFlightImage[] {
    return [...this.#entries];
  }
}
