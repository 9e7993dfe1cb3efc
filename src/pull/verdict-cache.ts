/**
 * Verdicts already reached, for re-pulls of an image already verified (kubelet's
 * ensure-secret-pulled-images check, KEP-2535, and image volumes pulled again). The registry is
 * still asked with the caller's credentials (the pull resolves the manifest first); only the
 * signature phase — lookaside reads, sigstore attachments, GPG and sigstore verification — is
 * answered from here.
 *
 * A verdict depends on the manifest digest, the reference the policy judged (its tag included:
 * `matchRepoDigestOrExact` reads it), the policy that decided (a per-namespace file may appear
 * within one configuration, so the loaded policy object itself is part of the key) and the trust
 * configuration in force (policies, keys, registries.d: a reload is a new revision). Entries of
 * earlier revisions are dropped as soon as a newer one is seen.
 */
import type { Digest } from '../domain/digest.js';
import type { UntrustedSignatureBlob, Verdict } from '../domain/signature.js';
import type { PolicySource } from './verification-record.js';

/** One verdict as the signature phase reached it. */
export interface CachedVerdict {
  readonly verdict: Verdict;
  readonly signatures: readonly UntrustedSignatureBlob[];
  readonly policySource: PolicySource;
  /** Wall time the verdict was reached (kept in the verification record of a cache hit). */
  readonly decidedAt: Date;
}

export interface VerdictCacheKey {
  readonly revision: number;
  /** Any object that stands for the policy that decided; compared by identity. */
  readonly policy: object;
  /** The reference the policy judged, formatted (name, tag, digest). */
  readonly reference: string;
  readonly manifestDigest: Digest;
}

export interface VerdictCacheOptions {
  /** How long an allowed verdict is answered from the cache. 0 turns the cache off. */
  readonly ttlMs: number;
  /**
   * How long a denial is: never longer than one signature phase may take, so a lookaside outage
   * is not remembered past its own budget. Capped at ttlMs.
   */
  readonly denialTtlMs: number;
  /** At most this many entries; the least recently used go first. */
  readonly maxEntries?: number;
  /** Milliseconds on a monotonic clock; default performance.now. */
  readonly monotonicMs?: () => number;
}

const DEFAULT_MAX_ENTRIES = 4096;

interface Entry {
  readonly value: CachedVerdict;
  readonly expiresAtMs: number;
}

export class VerdictCache {
  readonly #ttlMs: number;
  readonly #denialTtlMs: number;
  readonly #maxEntries: number;
  readonly #monotonicMs: () => number;
  /** Insertion order is recency order: a hit moves its entry to the end. */
  readonly #entries = new Map<string, Entry>();
  readonly #policyIds = new WeakMap<object, number>();
  #nextPolicyId = 1;
  #revision = -Infinity;

  constructor(options: VerdictCacheOptions) {
    this.#ttlMs = Math.max(0, options.ttlMs);
    this.#denialTtlMs = Math.min(this.#ttlMs, Math.max(0, options.denialTtlMs));
    this.#maxEntries = Math.max(1, options.maxEntries ?? DEFAULT_MAX_ENTRIES);
    this.#monotonicMs = options.monotonicMs ?? (() => performance.now());
  }

  get enabled(): boolean {
    return this.#ttlMs > 0;
  }

  get size(): number {
    return this.#entries.size;
  }

  /** The verdict for this key while it is fresh and its revision is still the newest seen. */
  get(key: VerdictCacheKey): CachedVerdict | undefined {
    if (!this.enabled || !this.#current(key.revision)) return undefined;
    const id = this.#id(key);
    const entry = this.#entries.get(id);
    if (entry === undefined) return undefined;
    this.#entries.delete(id);
    if (entry.expiresAtMs <= this.#monotonicMs()) return undefined;
    this.#entries.set(id, entry);
    return entry.value;
  }

  /** Keeps a verdict reached under `key.revision`; one of an older revision than seen is dropped. */
  set(key: VerdictCacheKey, value: CachedVerdict): void {
    if (!this.enabled || !this.#current(key.revision)) return;
    const ttlMs = value.verdict.allowed ? this.#ttlMs : this.#denialTtlMs;
    if (ttlMs <= 0) return;
    const id = this.#id(key);
    this.#entries.delete(id);
    this.#entries.set(id, { value, expiresAtMs: this.#monotonicMs() + ttlMs });
    for (const oldest of this.#entries.keys()) {
      if (this.#entries.size <= this.#maxEntries) break;
      this.#entries.delete(oldest);
    }
  }

  /** False for a revision older than one already seen; a newer one empties the cache. */
  #current(revision: number): boolean {
    if (revision < this.#revision) return false;
    if (revision > this.#revision) {
      this.#entries.clear();
      this.#revision = revision;
    }
    return true;
  }

  #id(key: VerdictCacheKey): string {
    let policyId = this.#policyIds.get(key.policy);
    if (policyId === undefined) {
      policyId = this.#nextPolicyId++;
      this.#policyIds.set(key.policy, policyId);
    }
    return `${policyId}\0${key.reference}\0${key.manifestDigest}`;
  }
}
