/**
 * Shares one in-flight operation among concurrent callers with the same key. The shared work gets
 * its own AbortSignal, aborted only when every caller that joined has given up — one impatient
 * caller must not cancel a pull another caller still waits for. Each flight may also carry state
 * of type S (made by `createShared`) that the work and every caller joining it see, and that ends
 * with the flight.
 */
interface Flight<T, S> {
  readonly promise: Promise<T>;
  readonly controller: AbortController;
  readonly shared: S;
  waiters: number;
}

export class SingleFlight<T, S = undefined> {
  readonly #inFlight = new Map<string, Flight<T, S>>();
  readonly #createShared: () => S;

  constructor(...createShared: S extends undefined ? [] : [() => S]) {
    this.#createShared = createShared[0] ?? ((): S => undefined as S);
  }

  /** `join` sees the flight's shared state before this caller starts waiting on it. */
  run(key: string, callerSignal: AbortSignal | undefined, work: (signal: AbortSignal, shared: S) => Promise<T>, join?: (shared: S) => void): Promise<T> {
    let entry = this.#inFlight.get(key);
    if (entry === undefined) {
      const controller = new AbortController();
      const shared = this.#createShared();
      const created: Flight<T, S> = {
        controller,
        shared,
        waiters: 0,
        // Started on the next tick; a caller that gave up before then must not start the work.
        promise: Promise.resolve().then(() => {
          if (controller.signal.aborted) throw controller.signal.reason instanceof Error ? controller.signal.reason : new Error('aborted');
          return work(controller.signal, shared);
        }),
      };
      created.promise.then(
        () => this.#inFlight.delete(key),
        () => this.#inFlight.delete(key),
      );
      this.#inFlight.set(key, created);
      entry = created;
    }
    join?.(entry.shared);
    return this.#wait(entry, callerSignal);
  }

  get size(): number {
    return this.#inFlight.size;
  }

  #wait(entry: Flight<T, S>, signal: AbortSignal | undefined): Promise<T> {
    entry.waiters += 1;
    if (signal === undefined) return entry.promise;
    return new Promise<T>((resolve, reject) => {
      const onAbort = (): void => {
        entry.waiters -= 1;
        const reason = signal.reason instanceof Error ? signal.reason : new Error('aborted');
        if (entry.waiters > 0) {
          reject(reason);
          return;
        }
        // The last waiter cancels the work, and waits for it to wind down (temp files removed).
        entry.controller.abort(signal.reason);
        entry.promise.then(
          () => reject(reason),
          () => reject(reason),
        );
      };
      if (signal.aborted) {
        onAbort();
        return;
      }
      signal.addEventListener('abort', onAbort, { once: true });
      entry.promise.then(
        (value) => {
          signal.removeEventListener('abort', onAbort);
          resolve(value);
        },
        (err: unknown) => {
          signal.removeEventListener('abort', onAbort);
          reject(err);
        },
      );
    });
  }
}
