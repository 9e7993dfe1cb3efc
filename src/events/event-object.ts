/**
 * The core/v1 Event pullguard posts for a pod, built the way client-go's legacy recorder builds one
 * (name `<pod>.<hex unix nanos>`, namespace = the pod's, count/firstTimestamp/lastTimestamp), so
 * `kubectl describe pod` and `kubectl get events` show it next to the kubelet's own pull events.
 */

import type { PodRef } from '../pull/ports.js';

export const EVENT_COMPONENT = 'pullguard';

/** Reasons pullguard posts. CamelCase, like every kubelet reason. */
export type EventReason = 'SignatureRetrievalDegraded';

/** The pod an Event is posted on: the pod a pull was for. */
export type { PodRef } from '../pull/ports.js';

/** The body of `POST /api/v1/namespaces/{ns}/events` (client-node's CoreV1Event shape). */
export interface PodWarningEvent {
  apiVersion: 'v1';
  kind: 'Event';
  metadata: { name: string; namespace: string };
  involvedObject: { apiVersion: 'v1'; kind: 'Pod'; name: string; namespace: string; uid?: string };
  type: 'Warning';
  reason: EventReason;
  message: string;
  source: { component: string; host: string };
  reportingComponent: string;
  reportingInstance: string;
  firstTimestamp: Date;
  lastTimestamp: Date;
  count: number;
}

/** Default message bound: kubectl shows events on one line, and events.k8s.io caps `note` at 1 KiB. */
export const DEFAULT_MAX_MESSAGE_BYTES = 1024;

/** Where one warning of describePullWarnings ends and the next begins: `; PGW001: `. */
const WARNING_BOUNDARY = /; (?=PGW\d{3}: )/g;

/**
 * Bounds `text` to `maxBytes` UTF-8 bytes. A list of warnings (describePullWarnings) loses whole
 * warnings from its end, counted (`; and 2 more warnings`), so the facts inside the ones shown
 * (HTTP status, first byte) are never cut; anything else is cut on a character boundary and marked `…`.
 */
export function boundMessage(text: string, maxBytes: number = DEFAULT_MAX_MESSAGE_BYTES): string {
  if (Buffer.byteLength(text, 'utf8') <= maxBytes) return text;
  const boundaries = [...text.matchAll(WARNING_BOUNDARY)].map((m) => m.index);
  for (let kept = boundaries.length - 1; kept >= 0; kept--) {
    const dropped = boundaries.length - kept;
    const shown = `${text.slice(0, boundaries[kept])}; and ${dropped} more ${dropped === 1 ? 'warning' : 'warnings'}`;
    if (Buffer.byteLength(shown, 'utf8') <= maxBytes) return shown;
  }
  return cutBytes(text, maxBytes);
}

/** Cuts `text` to at most `maxBytes` UTF-8 bytes on a character boundary, marking the cut with `…`. */
function cutBytes(text: string, maxBytes: number): string {
  const ellipsis = '…';
  const budget = Math.max(0, maxBytes - Buffer.byteLength(ellipsis, 'utf8'));
  let out = '';
  let used = 0;
  for (const char of text) {
    const size = Buffer.byteLength(char, 'utf8');
    if (used + size > budget) break;
    out += char;
    used += size;
  }
  return out + ellipsis;
}

/** metav1.Time has whole seconds; the API server would drop the rest anyway. */
export function wholeSeconds(date: Date): Date {
  return new Date(Math.floor(date.getTime() / 1000) * 1000);
}

const MAX_NAME_LENGTH = 253; // DNS-1123 subdomain, what the API server checks event names against

/** `<pod>.<hex>`, with the pod part shortened (and left ending alphanumeric) when the whole would be too long. */
export function eventName(podName: string, uniqueNanos: bigint): string {
  const suffix = `.${uniqueNanos.toString(16)}`;
  let prefix = podName;
  if (prefix.length + suffix.length > MAX_NAME_LENGTH) {
    prefix = prefix.slice(0, MAX_NAME_LENGTH - suffix.length).replace(/[^a-z0-9]+$/, '');
  }
  return prefix + suffix;
}

export interface BuildEventInput {
  readonly pod: PodRef;
  readonly name: string;
  readonly reason: EventReason;
  readonly message: string;
  readonly node: string;
  readonly firstTimestamp: Date;
  readonly lastTimestamp: Date;
  readonly count: number;
}

export function buildPodWarningEvent(input: BuildEventInput): PodWarningEvent {
  const { pod } = input;
  return {
    apiVersion: 'v1',
    kind: 'Event',
    metadata: { name: input.name, namespace: pod.namespace },
    involvedObject: { apiVersion: 'v1', kind: 'Pod', name: pod.name, namespace: pod.namespace, ...(pod.uid !== '' ? { uid: pod.uid } : {}) },
    type: 'Warning',
    reason: input.reason,
    message: input.message,
    source: { component: EVENT_COMPONENT, host: input.node },
    reportingComponent: EVENT_COMPONENT,
    reportingInstance: input.node,
    firstTimestamp: wholeSeconds(input.firstTimestamp),
    lastTimestamp: wholeSeconds(input.lastTimestamp),
    count: input.count,
  };
}

/**
 * The text of a SignatureRetrievalDegraded event from the warnings of an allowed pull, one per
 * warning as `CODE: message`, e.g. `PGW001: signature could not be read, but …: signature-2 (…): …; PGW003: …`.
 */
export function describePullWarnings(warnings: readonly { readonly code: string; readonly message: string }[]): string {
  return warnings.map((w) => `${w.code}: ${w.message}`).join('; ');
}
