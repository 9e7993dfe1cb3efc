/**
 * The pull observer that tells the pod: a pull that succeeded with warnings posts one
 * SignatureRetrievalDegraded Warning Event on the pod it was for (through the event recorder,
 * which aggregates, rate-limits and never fails the pull).
 */
import type { PullEnded, PullObserver } from '../pull/ports.js';
import { describePullWarnings } from './event-object.js';
import type { EventRecorder } from './event-recorder.js';

export class PullWarningEvents implements PullObserver {
  readonly #recorder: EventRecorder;

  constructor(recorder: EventRecorder) {
    this.#recorder = recorder;
  }

  pullEnded({ image, pod, warnings }: PullEnded): void {
    if (pod === undefined || warnings.length === 0) return;
    this.#recorder.warn(pod, { reason: 'SignatureRetrievalDegraded', message: describePullWarnings(warnings), image });
  }
}
