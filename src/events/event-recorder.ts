/**
 * Posts a Warning Event on the pod when a pull succeeded but some signatures could not be read — the
 * only channel to the user the CRI leaves (PullImageResponse has no warnings; kubelet ignores
 * trailers).
 *
 * Fire and forget: `warn()` returns at once, never throws, and the post happens after the RPC has
 * answered. Like client-go's EventCorrelator:
 * - identical warnings (same pod uid, reason and message) within `aggregationWindowMs` (10 min)
 *   PATCH the existing Event's `count` and `lastTimestamp` instead of creating another;
 * - a token bucket per pod (burst 25, then 1 per 5 min) stops floods before anything is sent;
 * - at most `maxQueued` (100) posts wait; beyond that warnings are dropped.
 * Any failure (403 from missing RBAC, network, timeout) is logged once per occurrence at warn,
 * without credentials, and dropped: no retries, nothing fails.
 */
import type { Logger } from '../log/logger.js';
import type { EventOutcome } from '../metrics/pullguard-metrics.js';
import { DEFAULT_MAX_MESSAGE_BYTES, boundMessage, buildPodWarningEvent, eventName, type EventReason, type PodRef } from './event-object.js';
import { EventSinkError, createKubeEventSink, describeServer, loadKubeConfig, type EventSink } from './kube-event-sink.js';
import { DEFAULT_RATE_LIMIT, KeyedTokenBuckets, LruMap, type TokenBucketOptions } from './rate-limit.js';

export interface WarningInput {
  readonly reason: EventReason;
  /** The troubles and the signature that satisfied the policy; bounded to `maxMessageBytes`. */
  readonly message: string;
  /** The image as requested; prefixed to the message unless the message already names it. */
  readonly image: string;
}

export interface EventRecorder {
  warn(pod: PodRef, input: WarningInput): void;
  /** Resolves when every warning accepted so far has been posted or dropped. */
  flush(): Promise<void>;
  /** Stops accepting warnings, waits up to the request timeout for those queued, then aborts the rest. */
  close(): Promise<void>;
}

export interface EventOutcomeCounter {
  recordEvent(outcome: EventOutcome): void;
}

export interface EventRecorderOptions {
  readonly logger: Logger;
  /** The node's name: `source.host` and `reportingInstance`. */
  readonly nodeName: string;
  /** Use this kubeconfig (e.g. a dedicated ServiceAccount's, or /etc/kubernetes/kubelet.conf). */
  readonly kubeconfigPath?: string;
  /** Use the pod's ServiceAccount (pullguard running as a DaemonSet). Ignored when kubeconfigPath is set. */
  readonly inCluster?: boolean;
  readonly clock?: () => Date;
  /** Default 600 000 (client-go's aggregation interval). */
  readonly aggregationWindowMs?: number;
  /** Per pod. Default burst 25, one token per 300 000 ms, 4096 pods remembered. */
  readonly rateLimit?: Partial<TokenBucketOptions>;
  /** Per API request. Default 10 000. */
  readonly requestTimeoutMs?: number;
  /** Posts waiting at once. Default 100. */
  readonly maxQueued?: number;
  /** Default 1024. */
  readonly maxMessageBytes?: number;
  /** Events remembered for aggregation. Default 4096 (client-go's LRU size). */
  readonly maxRemembered?: number;
  /** Counts what became of each warning (PullguardMetrics is one). */
  readonly outcomes?: EventOutcomeCounter;
  /** Tests may bring their own sink; otherwise one is built from the kubeconfig. */
  readonly sink?: EventSink;
}

interface Remembered {
  readonly name: string;
  readonly namespace: string;
  readonly firstTimestamp: Date;
  count: number;
  lastSeen: Date;
}

/**
 * Builds the recorder. Async because the Kubernetes client is loaded only when events are enabled;
 * throws INVALID_CONFIG (at startup) when the kubeconfig cannot be used. With neither
 * `kubeconfigPath` nor `inCluster` the recorder posts nothing and says so at debug.
 */
export async function createEventRecorder(options: EventRecorderOptions): Promise<EventRecorder> {
  const log = options.logger.child({ component: 'events' });
  let sink = options.sink;
  if (sink === undefined) {
    if (options.kubeconfigPath === undefined && options.inCluster !== true) {
      log.info('no kubeconfig configured: pull warnings are logged only, no Kubernetes Events are posted');
      return loggingOnlyRecorder(log);
    }
    const kubeConfig = await loadKubeConfig({
      ...(options.kubeconfigPath !== undefined ? { kubeconfigPath: options.kubeconfigPath } : {}),
      ...(options.inCluster === true ? { inCluster: true } : {}),
    });
    sink = await createKubeEventSink(kubeConfig);
    log.info({ server: describeServer(kubeConfig), node: options.nodeName }, 'pull warnings will be posted as Kubernetes Events');
  }
  return new QueuedEventRecorder(options, sink, log);
}

function loggingOnlyRecorder(log: Logger): EventRecorder {
  return {
    warn(pod, input) {
      log.debug(
        { namespace: pod.namespace, pod: pod.name, reason: input.reason, image: input.image },
        'not posting a Kubernetes Event: no kubeconfig configured',
      );
    },
    flush: () => Promise.resolve(),
    close: () => Promise.resolve(),
  };
}

class QueuedEventRecorder implements EventRecorder {
  readonly #sink: EventSink;
  readonly #log: Logger;
  readonly #node: string;
  readonly #clock: () => Date;
  readonly #windowMs: number;
  readonly #timeoutMs: number;
  readonly #maxQueued: number;
  readonly #maxMessageBytes: number;
  readonly #onOutcome: (outcome: EventOutcome) => void;
  readonly #buckets: KeyedTokenBuckets;
  readonly #remembered: LruMap<string, Remembered>;
  readonly #closing = new AbortController();
  #tail: Promise<void> = Promise.resolve();
  #queued = 0;
  #closed = false;
  #lastNanos = 0n;

  constructor(options: EventRecorderOptions, sink: EventSink, log: Logger) {
    this.#sink = sink;
    this.#log = log;
    this.#node = options.nodeName;
    this.#clock = options.clock ?? (() => new Date());
    this.#windowMs = options.aggregationWindowMs ?? 600_000;
    this.#timeoutMs = options.requestTimeoutMs ?? 10_000;
    this.#maxQueued = options.maxQueued ?? 100;
    this.#maxMessageBytes = options.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES;
    this.#buckets = new KeyedTokenBuckets({ ...DEFAULT_RATE_LIMIT, ...options.rateLimit });
    this.#remembered = new LruMap(options.maxRemembered ?? 4096);
    const outcomes = options.outcomes;
    this.#onOutcome = (outcome) => {
      try {
        outcomes?.recordEvent(outcome);
      } catch {
        // An observer must not break the recorder.
      }
    };
  }

  warn(pod: PodRef, input: WarningInput): void {
    try {
      const fields = { namespace: pod.namespace, pod: pod.name, reason: input.reason, image: input.image };
      if (this.#closed) {
        this.#log.debug(fields, 'event recorder closed: warning not posted');
        return;
      }
      if (pod.name === '' || pod.namespace === '') {
        this.#log.debug(fields, 'no pod to post a Kubernetes Event on');
        return;
      }
      const now = this.#clock();
      const text = input.image !== '' && !input.message.includes(input.image) ? `Image "${input.image}": ${input.message}` : input.message;
      const message = boundMessage(text, this.#maxMessageBytes);
      // Same involved object → same bucket (client-go's spam key is source + involved object).
      if (!this.#buckets.take(JSON.stringify([pod.namespace, pod.name, pod.uid]), now.getTime())) {
        this.#onOutcome('rate_limited');
        this.#log.debug(fields, 'Kubernetes Event rate-limited for this pod');
        return;
      }
      if (this.#queued >= this.#maxQueued) {
        this.#onOutcome('dropped');
        this.#log.warn({ ...fields, queued: this.#queued }, 'Kubernetes Event dropped: too many waiting to be posted');
        return;
      }
      this.#queued += 1;
      const key = JSON.stringify([pod.namespace, pod.name, pod.uid, input.reason, message]);
      this.#tail = this.#tail
        // A macrotask later: the PullImage answer goes out before any byte goes to the API server.
        .then(() => new Promise<void>((resolve) => setImmediate(resolve)))
        .then(() => this.#deliver(key, pod, input.reason, message, now, fields))
        .catch((err: unknown) => this.#log.warn({ ...fields, error: err instanceof Error ? err.name : 'unknown' }, 'Kubernetes Event not posted'))
        .finally(() => {
          this.#queued -= 1;
        });
    } catch (err) {
      // warn() is called from the PullImage path: nothing may escape.
      this.#log.debug({ error: err instanceof Error ? err.message : String(err) }, 'event recorder failed to queue a warning');
    }
  }

  async flush(): Promise<void> {
    // New work can be chained while we wait; loop until the tail we awaited is the last one.
    for (let tail = this.#tail; ; tail = this.#tail) {
      await tail;
      if (tail === this.#tail) return;
    }
  }

  async close(): Promise<void> {
    if (!this.#closed) {
      this.#closed = true;
      let timer: NodeJS.Timeout | undefined;
      const grace = new Promise<void>((resolve) => {
        timer = setTimeout(resolve, this.#timeoutMs);
        timer.unref();
      });
      await Promise.race([this.flush(), grace]);
      clearTimeout(timer);
      this.#closing.abort(new Error('event recorder closed'));
    }
    await this.flush();
  }

  async #deliver(key: string, pod: PodRef, reason: EventReason, message: string, now: Date, fields: Record<string, string>): Promise<void> {
    if (this.#closing.signal.aborted) {
      this.#onOutcome('dropped');
      return;
    }
    const signal = AbortSignal.any([this.#closing.signal, AbortSignal.timeout(this.#timeoutMs)]);
    const known = this.#remembered.get(key);
    if (known !== undefined && now.getTime() - known.lastSeen.getTime() <= this.#windowMs) {
      known.count += 1;
      known.lastSeen = now;
      try {
        await this.#sink.patch(known.namespace, known.name, { count: known.count, lastTimestamp: now }, signal);
        this.#onOutcome('patched');
        this.#log.debug({ ...fields, event: known.name, count: known.count }, 'Kubernetes Event count updated');
        return;
      } catch (err) {
        if (!(err instanceof EventSinkError && err.status === 404)) {
          this.#failed(err, fields, 'patch');
          return;
        }
        // Deleted or expired (event TTL, default 1 h): create it again under the same name, as client-go does.
        try {
          await this.#create(pod, known.name, reason, message, known.firstTimestamp, now, known.count, signal);
          this.#onOutcome('created');
        } catch (createErr) {
          this.#remembered.delete(key);
          this.#failed(createErr, fields, 'create');
        }
        return;
      }
    }

    const name = eventName(pod.name, this.#uniqueNanos(now));
    try {
      await this.#create(pod, name, reason, message, now, now, 1, signal);
    } catch (err) {
      this.#remembered.delete(key);
      this.#failed(err, fields, 'create');
      return;
    }
    this.#remembered.set(key, { name, namespace: pod.namespace, firstTimestamp: now, lastSeen: now, count: 1 });
    this.#onOutcome('created');
    this.#log.debug({ ...fields, event: name }, 'Kubernetes Event created');
  }

  async #create(pod: PodRef, name: string, reason: EventReason, message: string, first: Date, last: Date, count: number, signal: AbortSignal): Promise<void> {
    const event = buildPodWarningEvent({ pod, name, reason, message, node: this.#node, firstTimestamp: first, lastTimestamp: last, count });
    await this.#sink.create(event, signal);
  }

  /** client-go names events `<pod>.<hex UnixNano>`; a Date has milliseconds, so keep names unique by hand. */
  #uniqueNanos(now: Date): bigint {
    let nanos = BigInt(now.getTime()) * 1_000_000n;
    if (nanos <= this.#lastNanos) nanos = this.#lastNanos + 1n;
    this.#lastNanos = nanos;
    return nanos;
  }

  #failed(err: unknown, fields: Record<string, string>, operation: 'create' | 'patch'): void {
    this.#onOutcome('failed');
    const facts =
      err instanceof EventSinkError
        ? { status: err.status, apiReason: err.reason, detail: err.message }
        : { apiReason: err instanceof Error ? err.name : 'unknown' };
    const hint = err instanceof EventSinkError && err.status === 403 ? ' (grant create/patch on events: deploy/rbac-events.yaml)' : '';
    this.#log.warn({ ...fields, operation, ...facts }, `Kubernetes Event not posted${hint}`);
  }
}
