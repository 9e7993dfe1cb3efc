/**
 * Image queries as kubelet and crictl expect them: lookups by id, id prefix, tag (normalised, with
 * `:latest` default) or digest reference; unknown images are "absent", not errors; removal is
 * idempotent and removes every tag of the image, then unreferenced blobs are collected.
 */
import { isPullguardError } from '../domain/errors.js';
import { formatReference, parseReference } from '../domain/reference.js';
import type { ImageIndexReader, StoreMaintenance } from './ports.js';
import type { ImageRecord } from '../domain/image-record.js';

const ID_PREFIX_RE = /^(?:sha256:)?[0-9a-f]{3,64}$/;

export class ImageCatalog {
  readonly #index: ImageIndexReader;
  readonly #maintenance: StoreMaintenance;

  constructor(index: ImageIndexReader, maintenance: StoreMaintenance) {
    this.#index = index;
    this.#maintenance = maintenance;
  }

  async list(filter?: string): Promise<readonly ImageRecord[]> {
    if (filter === undefined || filter === '') return this.#index.list();
    const found = await this.find(filter);
    return found === undefined ? [] : [found];
  }

  /** The image `name` refers to, or undefined. Malformed names throw INVALID_REFERENCE. */
  async find(name: string): Promise<ImageRecord | undefined> {
    if (ID_PREFIX_RE.test(name)) {
      const byId = await this.#index.resolve(name.startsWith('sha256:') ? name : `sha256:${name}`);
      if (byId !== undefined) return byId;
      // A short hex string may also be a repository name (`docker.io/library/abc`): fall through.
    }
    let normalised: string;
    try {
      const ref = parseReference(name);
      normalised = formatReference(ref.digest !== undefined ? { ...ref, tag: undefined } : ref);
    } catch (err) {
      if (isPullguardError(err) && ID_PREFIX_RE.test(name)) return undefined;
      throw err;
    }
    return this.#index.resolve(normalised);
  }

  /** Idempotent: removing an absent image succeeds. */
  async remove(name: string): Promise<boolean> {
    const found = await this.find(name);
    if (found === undefined) return false;
    await this.#index.remove(found.id);
    await this.#maintenance.collectGarbage();
    return true;
  }

  fsInfo(): Promise<{ mountpoint: string; usedBytes: number; inodesUsed: number }> {
    return this.#maintenance.fsInfo();
  }
}
