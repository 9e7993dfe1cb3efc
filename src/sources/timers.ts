/** The clock the lookaside fetcher uses for timeouts, the budget and retry back-off; injectable for tests. */
export interface Timers {
  /** Milliseconds since the epoch. */
  now(): number;
  /** Calls `callback` after `ms`; returns a function that cancels it. */
  setTimeout(callback: () => void, ms: number): () => void;
}

export const realTimers: Timers = Object.freeze({
  now: () => Date.now(),
  setTimeout(callback: () => void, ms: number): () => void {
    const handle = setTimeout(callback, ms);
    return () => clearTimeout(handle);
  },
});

/** Resolves after `ms`, or early (without throwing) when `signal` aborts. */
export function sleep(timers: Timers, ms: number, signal: AbortSignal): Promise<void> {
  if (signal.aborted || ms <= 0) return Promise.resolve();
  return new Promise((resolve) => {
    const done = (): void => {
      cancel();
      signal.removeEventListener('abort', done);
      resolve();
    };
    const cancel = timers.setTimeout(done, ms);
    signal.addEventListener('abort', done, { once: true });
  });
}
