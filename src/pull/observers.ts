/**
 * Telling observers. An observer's failure must never change a pull's outcome, nor keep the
 * observers after it from being told.
 */
import type { PullObserver } from './ports.js';

/** Calls `tell` on each observer in order; whatever one throws is dropped. */
export function tellEach(observers: readonly PullObserver[], tell: (observer: PullObserver) => void): void {
  for (const observer of observers) {
    try {
      tell(observer);
    } catch {
      // An observer must not fail the pull.
    }
  }
}

/** One event listener for an adapter's single `onEvent` option that tells every listener given. */
export function eachListener<E>(...listeners: readonly ((event: E) => void)[]): (event: E) => void {
  return (event) => {
    for (const listener of listeners) {
      try {
        listener(event);
      } catch {
        // A listener must not fail what reported the event.
      }
    }
  };
}
