/**
 * The image index in memory, and the one function that changes it. Replay at load and live
 * mutations both go through `apply`, so what a reopen rebuilds is what was there before.
 */
import type { Digest } from '../domain/digest.js';
import type { IndexOp } from './index-persistence.js';
import type { ImageRecord } from '../domain/image-record.js';

export class IndexState {
  readonly #byId = new Map<Digest, ImageRecord>();
  /** `name:tag` → the one image that has it. */
  readonly #tagOwner = new Map<string, Digest>();
  /** `name@digest` → the image it resolves to (the latest put, if several list it). */
  readonly #digestOwner = new Map<string, Digest>();
  #listCache: readonly ImageRecord[] | undefined;

  apply(op: IndexOp): void {
    this.#listCache = undefined;
    if (op.op === 'put') this.#put(op.record);
    else this.#remove(op.id);
  }

  #put(record: ImageRecord): void {
    const previous = this.#byId.get(record.id);
    for (const tag of record.repoTags) {
      const owner = this.#tagOwner.get(tag);
      if (owner === undefined || owner === record.id) continue;
      const other = this.#byId.get(owner);
      if (other !== undefined) this.#byId.set(owner, freezeRecord({ ...other, repoTags: other.repoTags.filter((t) => t !== tag) }));
    }
    const merged: ImageRecord =
      previous === undefined
        ? record
        : { ...record, repoTags: union(previous.repoTags, record.repoTags), repoDigests: union(previous.repoDigests, record.repoDigests) };
    this.#byId.set(record.id, freezeRecord(merged));
    for (const tag of merged.repoTags) this.#tagOwner.set(tag, record.id);
    for (const ref of record.repoDigests) this.#digestOwner.set(ref, record.id);
  }

  #remove(id: Digest): void {
    const record = this.#byId.get(id);
    if (record === undefined) return;
    this.#byId.delete(id);
    for (const tag of record.repoTags) if (this.#tagOwner.get(tag) === id) this.#tagOwner.delete(tag);
    for (const ref of record.repoDigests) {
      if (this.#digestOwner.get(ref) !== id) continue;
      this.#digestOwner.delete(ref);
      // Rare (two platforms of one index on a node): hand the digest ref to another image that lists it.
      for (const other of this.#byId.values()) if (other.repoDigests.includes(ref)) this.#digestOwner.set(ref, other.id);
    }
  }

  get(id: Digest): ImageRecord | undefined {
    return this.#byId.get(id);
  }

  has(id: Digest): boolean {
    return this.#byId.has(id);
  }

  byTag(tag: string): ImageRecord | undefined {
    const id = this.#tagOwner.get(tag);
    return id === undefined ? undefined : this.#byId.get(id);
  }

  byRepoDigest(ref: string): ImageRecord | undefined {
    const id = this.#digestOwner.get(ref);
    return id === undefined ? undefined : this.#byId.get(id);
  }

  /** Ids starting with `prefix`; stops at two (enough to know it is ambiguous). */
  idsWithPrefix(prefix: string): Digest[] {
    const found: Digest[] = [];
    for (const id of this.#byId.keys()) {
      if (id.startsWith(prefix)) {
        found.push(id);
        if (found.length > 1) break;
      }
    }
    return found;
  }

  list(): readonly ImageRecord[] {
    this.#listCache ??= Object.freeze([...this.#byId.values()]);
    return this.#listCache;
  }

  get size(): number {
    return this.#byId.size;
  }
}

function union(a: readonly string[], b: readonly string[]): string[] {
  return [...new Set([...a, ...b])];
}

/** Records handed out are immutable, so list() can share one array with every caller. */
export function freezeRecord(record: ImageRecord): ImageRecord {
  return deepFreeze(record);
}

function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const child of Object.values(value)) deepFreeze(child);
  }
  return value;
}
