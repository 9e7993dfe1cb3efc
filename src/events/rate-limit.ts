/**
 * Bounded bookkeeping for the event recorder: an LRU map (so a node that sees thousands of pods
 * cannot grow memory without bound) and per-key token buckets (client-go's EventSourceObjectSpamFilter:
 * burst 25, then one event per 5 minutes for the same involved object).
 */

/** A Map that forgets its least recently used entry beyond `capacity`. */
export class LruMap<K, V> {
  readonly #entries = new Map<K, V>();
  readonly #capacity: number;

  constructor(capacity: number) {
    this.#capacity = Math.max(1, capacity);
  }

  get(key: K): V | undefined {
    const value = this.#entries.get(key);
    if (value !== undefined) {
      this.#entries.delete(key);
      this.#entries.set(key, value);
    }
    return value;
  }

  set(key: K, value: V): void {
    this.#entries.delete(key);
    this.#entries.set(key, value);
    while (this.#entries.size > this.#capacity) {
      const oldest = this.#entries.keys().next();
      if (oldest.done === true) break;
      this.#entries.delete(oldest.value);
    }
  }

  delete(key: K): void {
    this.#entries.delete(key);
  }

  get size(): number {
    return this.#entries.size;
  }
}

export interface TokenBucketOptions {
  /** Tokens a fresh key starts with. */
  readonly burst: number;
  /** One token comes back per this many milliseconds. */
  readonly refillIntervalMs: number;
  /** Keys remembered; a forgotten key starts full again. */
  readonly maxKeys: number;
}

export const DEFAULT_RATE_LIMIT: TokenBucketOptions = { burst: 25, refillIntervalMs: 5 * 60_000, maxKeys: 4096 };

interface Bucket {
  tokens: number;
  updatedMs: number;
}

export class KeyedTokenBuckets {
  readonly #buckets: LruMap<string, Bucket>;
  readonly #options: TokenBucketOptions;

  constructor(options: TokenBucketOptions) {
    this.#options = options;
    this.#buckets = new LruMap(options.maxKeys);
  }

  /** Takes one token for `key` at time `nowMs`; false when the key is out of tokens. */
  take(key: string, nowMs: number): boolean {
    const { burst, refillIntervalMs } = this.#options;
    const bucket = this.#buckets.get(key) ?? { tokens: burst, updatedMs: nowMs };
    const elapsed = Math.max(0, nowMs - bucket.updatedMs);
    bucket.tokens = Math.min(burst, bucket.tokens + elapsed / refillIntervalMs);
    bucket.updatedMs = nowMs;
    const allowed = bucket.tokens >= 1;
    if (allowed) bucket.tokens -= 1;
    this.#buckets.set(key, bucket);
    return allowed;
  }
}
