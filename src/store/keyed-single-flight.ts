/**
 * Shares one promise among concurrent callers with the same key, so a layer wanted by several
 * concurrent pulls is downloaded once. The entry is dropped when the work settles; a later call
 * starts afresh (a failure is not cached).
 */
export class KeyedSingleFlight<K, T> {
  readonly #inFlight = new Map<K, Promise<T>>();

  run(key: K, work: () => Promise<T>): Promise<T> {
    const existing = this.#inFlight.get(key);
    if (existing !== undefined) return existing;
    const promise = Promise.resolve()
      .then(work)
      .finally(() => this.#inFlight.delete(key));
    this.#inFlight.set(key, promise);
    return promise;
  }

  has(key: K): boolean {
    return this.#inFlight.has(key);
  }

  get size(): number {
    return this.#inFlight.size;
  }
}
