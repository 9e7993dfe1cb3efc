/** The Events observer: one Warning Event per successful pull with warnings, on the pod it was for. */
import { describe, expect, it } from 'vitest';
import type { EventRecorder, WarningInput } from '../../../src/events/event-recorder.js';
import type { PodRef } from '../../../src/events/event-object.js';
import { PullWarningEvents } from '../../../src/events/pull-warning-events.js';
import type { Warning } from '../../../src/domain/signature.js';

const pod = { name: 'web-0', namespace: 'shop', uid: 'u-1' };
const warnings: Warning[] = [
  { code: 'PGW001', message: 'signature-2 could not be read' },
  { code: 'PGW003', message: 'signature-1 needed 2 attempts' },
];

function recorder(): EventRecorder & { posted: [PodRef, WarningInput][] } {
  const posted: [PodRef, WarningInput][] = [];
  return { posted, warn: (p, input) => void posted.push([p, input]), flush: async () => undefined, close: async () => undefined };
}

describe('PullWarningEvents', () => {
  it('posts SignatureRetrievalDegraded with every warning on the pod of a pull with warnings', () => {
    const events = recorder();
    new PullWarningEvents(events).pullEnded({ image: 'registry.example/app:v1', outcome: 'allowed_with_warnings', durationSeconds: 1, warnings, pod });
    expect(events.posted).toEqual([
      [
        pod,
        {
          reason: 'SignatureRetrievalDegraded',
          message: 'PGW001: signature-2 could not be read; PGW003: signature-1 needed 2 attempts',
          image: 'registry.example/app:v1',
        },
      ],
    ]);
  });

  it('posts nothing without a pod or without warnings', () => {
    const events = recorder();
    const observer = new PullWarningEvents(events);
    observer.pullEnded({ image: 'registry.example/app:v1', outcome: 'allowed_with_warnings', durationSeconds: 1, warnings });
    observer.pullEnded({ image: 'registry.example/app:v1', outcome: 'allowed', durationSeconds: 1, warnings: [], pod });
    observer.pullEnded({ image: 'registry.example/app:v1', outcome: 'denied', durationSeconds: 1, warnings: [], pod });
    expect(events.posted).toEqual([]);
  });
});
