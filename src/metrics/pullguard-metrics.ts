/**
 * pullguard's metrics and the helpers that feed them. Every label value comes from a closed list
 * (outcomes, trouble kinds, RPC names, gRPC code names), so no image name, URL, credential or free
 * text can reach a label and the number of series is fixed.
 */
import type { LookasideEvent } from '../sources/lookaside-source.js';
import type { BlobStored, PullDecided, PullEnded, PullObserver } from '../pull/ports.js';
import { PULL_OUTCOMES, type PullOutcome } from '../pull/pull-outcome.js';
import type { TroubleKind, Verdict } from '../domain/signature.js';
import { MetricsRegistry, type Counter, type Histogram } from './registry.js';

export const TROUBLE_KINDS = [
  'http-status',
  'transport',
  'timeout',
  'budget',
  'too-large',
  'empty',
  'unrecognized-format',
  'redirects',
  'unsupported-scheme',
  'io',
] as const satisfies readonly TroubleKind[];
// Fails to compile when TroubleKind gains a member this list lacks.
const troubleKindsComplete: [Exclude<TroubleKind, (typeof TROUBLE_KINDS)[number]>] extends [never] ? true : false = true;
void troubleKindsComplete;

/** The RPCs pullguard serves; anything else is counted as `other`. */
export const RPC_NAMES = ['PullImage', 'ImageStatus', 'ListImages', 'RemoveImage', 'ImageFsInfo', 'StreamImages', 'Version', 'other'] as const;
export type RpcName = (typeof RPC_NAMES)[number];

/** gRPC status code names by number (grpc/doc/statuscodes.md). */
export const GRPC_CODE_NAMES = [
  'OK',
  'CANCELLED',
  'UNKNOWN',
  'INVALID_ARGUMENT',
  'DEADLINE_EXCEEDED',
  'NOT_FOUND',
  'ALREADY_EXISTS',
  'PERMISSION_DENIED',
  'RESOURCE_EXHAUSTED',
  'FAILED_PRECONDITION',
  'ABORTED',
  'OUT_OF_RANGE',
  'UNIMPLEMENTED',
  'INTERNAL',
  'UNAVAILABLE',
  'DATA_LOSS',
  'UNAUTHENTICATED',
] as const;

export const EVENT_OUTCOMES = ['created', 'patched', 'rate_limited', 'failed', 'dropped'] as const;
export type EventOutcome = (typeof EVENT_OUTCOMES)[number];

const LOOKASIDE_READ_OUTCOMES = ['signature', 'missing', ...TROUBLE_KINDS] as const;

/** Whole pulls: seconds to minutes. */
export const PULL_DURATION_BUCKETS = [0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600] as const;
/** The signature phase: milliseconds up to the 30 s default budget. */
export const SIGNATURE_PHASE_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60] as const;

export interface PullguardMetrics {
  readonly registry: MetricsRegistry;
  readonly pulls: Counter<'outcome'>;
  readonly troubles: Counter<'kind'>;
  readonly verdicts: Counter<'verdict'>;
  readonly pullDuration: Histogram;
  readonly signaturePhaseDuration: Histogram;
  readonly rpcs: Counter<'rpc' | 'code'>;
  readonly lookasideReads: Counter<'outcome'>;
  readonly lookasideRetries: Counter;
  readonly blobs: Counter<'result'>;
  readonly blobBytes: Counter;
  readonly events: Counter<'outcome'>;
  readonly verdictCache: Counter<'result'>;
  /** One caller's pull ended (its own wait, on a shared pull too: one per PullImage). */
  recordPull(outcome: PullOutcome, seconds: number): void;
  /**
   * One policy decision: the verdict, each trouble by kind, and the signature phase's duration. A
   * verdict answered from the verdict cache counts as a decision and a hit; its troubles were
   * counted when it was reached.
   */
  recordVerdict(verdict: Verdict, signaturePhaseSeconds: number, verdictCache?: 'hit' | 'miss'): void;
  /** One answered RPC; `code` is a gRPC status number or name. Unknown names become `other`/`UNKNOWN`. */
  recordRpc(rpc: string, code: number | string): void;
  /** A Kubernetes Event the recorder created, patched, or did not post. */
  recordEvent(outcome: EventOutcome): void;
}

export function createPullguardMetrics(): PullguardMetrics {
  const registry = new MetricsRegistry();
  const pulls = registry.counter({
    name: 'pullguard_pulls_total',
    help: 'PullImage calls by outcome.',
    labels: { outcome: PULL_OUTCOMES },
  });
  const troubles = registry.counter({
    name: 'pullguard_signature_troubles_total',
    help: 'Signatures that could not be read, by kind, counted in policy decisions.',
    labels: { kind: TROUBLE_KINDS },
  });
  const verdicts = registry.counter({
    name: 'pullguard_verdicts_total',
    help: 'Policy decisions by verdict.',
    labels: { verdict: ['allowed', 'denied'] },
  });
  const pullDuration = registry.histogram({
    name: 'pullguard_pull_duration_seconds',
    help: 'Duration of PullImage calls, whatever their outcome.',
    buckets: PULL_DURATION_BUCKETS,
  });
  const signaturePhaseDuration = registry.histogram({
    name: 'pullguard_signature_phase_duration_seconds',
    help: 'Duration of the signature phase (fetch, verify, decide) of one pull.',
    buckets: SIGNATURE_PHASE_BUCKETS,
  });
  const rpcs = registry.counter({
    name: 'pullguard_rpc_total',
    help: 'Answered CRI RPCs by method and gRPC status code.',
    labels: { rpc: RPC_NAMES, code: GRPC_CODE_NAMES },
  });
  const lookasideReads = registry.counter({
    name: 'pullguard_lookaside_reads_total',
    help: 'Lookaside signature indices read, by outcome (signature, missing, or a trouble kind).',
    labels: { outcome: LOOKASIDE_READ_OUTCOMES },
  });
  const lookasideRetries = registry.counter({
    name: 'pullguard_lookaside_retries_total',
    help: 'Lookaside signature requests that were retried.',
  });
  const blobs = registry.counter({
    name: 'pullguard_blobs_total',
    help: 'Config and layer blobs of allowed pulls, fetched or already in the store.',
    labels: { result: ['fetched', 'reused'] },
  });
  const blobBytes = registry.counter({
    name: 'pullguard_blob_fetched_bytes_total',
    help: 'Bytes of config and layer blobs fetched from registries.',
  });
  const events = registry.counter({
    name: 'pullguard_kube_events_total',
    help: 'Kubernetes Events for pull warnings, by outcome.',
    labels: { outcome: EVENT_OUTCOMES },
  });
  const verdictCache = registry.counter({
    name: 'pullguard_verdict_cache_total',
    help: 'Signature phases answered from the verdict cache (hit) or run (miss), while the cache is on.',
    labels: { result: ['hit', 'miss'] },
  });

  const seconds = (value: number): number => (Number.isFinite(value) && value >= 0 ? value : 0);

  return {
    registry,
    pulls,
    troubles,
    verdicts,
    pullDuration,
    signaturePhaseDuration,
    rpcs,
    lookasideReads,
    lookasideRetries,
    blobs,
    blobBytes,
    events,
    verdictCache,
    recordPull(outcome, duration) {
      pulls.inc({ outcome: oneOf(PULL_OUTCOMES, outcome, 'error') });
      pullDuration.observe(undefined, seconds(duration));
    },
    recordVerdict(verdict, phaseSeconds, cache) {
      verdicts.inc({ verdict: verdict.allowed ? 'allowed' : 'denied' });
      if (cache !== undefined) verdictCache.inc({ result: cache });
      for (const trouble of cache === 'hit' ? [] : verdict.troubles) {
        // An unknown kind would be a new TroubleKind this build does not list: count it as the closest catch-all.
        troubles.inc({ kind: oneOf(TROUBLE_KINDS, trouble.kind, 'transport') });
      }
      signaturePhaseDuration.observe(undefined, seconds(phaseSeconds));
    },
    recordRpc(rpc, code) {
      const codeName = typeof code === 'number' ? (GRPC_CODE_NAMES[code] ?? 'UNKNOWN') : oneOf(GRPC_CODE_NAMES, code.toUpperCase(), 'UNKNOWN');
      rpcs.inc({ rpc: oneOf(RPC_NAMES, rpc, 'other'), code: codeName });
    },
    recordEvent(outcome) {
      events.inc({ outcome: oneOf(EVENT_OUTCOMES, outcome, 'failed') });
    },
  };
}

function oneOf<T extends string>(allowed: readonly T[], value: string, fallback: T): T {
  return (allowed as readonly string[]).includes(value) ? (value as T) : fallback;
}

/** The pull observer that feeds the metrics: pulls and their durations, verdicts and troubles, blobs. */
export class PullMetrics implements PullObserver {
  readonly #metrics: PullguardMetrics;

  constructor(metrics: PullguardMetrics) {
    this.#metrics = metrics;
  }

  decided({ verdict, signaturePhaseSeconds, verdictCache }: PullDecided): void {
    this.#metrics.recordVerdict(verdict, signaturePhaseSeconds, verdictCache);
  }

  blobStored({ fetched, size }: BlobStored): void {
    this.#metrics.blobs.inc({ result: fetched ? 'fetched' : 'reused' });
    if (fetched) this.#metrics.blobBytes.inc(undefined, Math.max(0, size));
  }

  pullEnded({ outcome, durationSeconds }: PullEnded): void {
    this.#metrics.recordPull(outcome, durationSeconds);
  }
}

/** A lookaside source `onEvent` observer: per-index outcomes and retries. */
export function observeLookasideEvents(metrics: PullguardMetrics): (event: LookasideEvent) => void {
  return (event) => {
    try {
      if (event.type === 'outcome') metrics.lookasideReads.inc({ outcome: oneOf(LOOKASIDE_READ_OUTCOMES, event.outcome, 'transport') });
      else if (event.type === 'retry') metrics.lookasideRetries.inc();
    } catch {
      // Metrics must never change what is read.
    }
  };
}
