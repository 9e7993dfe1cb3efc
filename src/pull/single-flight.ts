/**
 * Shares one in-flight operation among concurrent callers with the same key. The shared work gets
 * its own AbortSignal, aborted only when every caller that joined has given up — one impatient
 * caller must not cancel a pull another caller still waits for.
 */
export class SingleFlight<T> {
  readonly #inFlight = new Map<string, { promise: Promise<T>; controller: AbortController; waiters: number }>();

  run(key: string, callerSignal: AbortSignal | undefined, work: (signal: AbortSignal) => Promise<T>): Promise<T> {
    let entry = this.#inFlight.get(key);
    if (entry === undefined) {
      const controller = new AbortController();
      const created: { promise: Promise<T>; controller: AbortController; waiters: number } = {
        controller,
        waiters: 0,
        // Started on the next tick; a caller that gave up before then must not start the work.
        promise: Promise.resolve().then(() => {
          if (controller.signal.aborted) throw controller.signal.reason instanceof Error ? controller.signal.reason : new Error('aborted');
          return work(controller.signal);
        }),
      };
      created.promise.then(
        () => this.#inFlight.delete(key),
        () => this.#inFlight.delete(key),
      );
      this.#inFlight.set(key, created);
      entry = created;
    }
    return this.#wait(entry, callerSignal);
  }

  get size(): number {
    return this.#inFlight.size;
  }

  #wait(entry: { promise: Promise<T>; controller: AbortController; waiters: number }, signal: AbortSignal | undefined): Promise<T> {
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
