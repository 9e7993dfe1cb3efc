/**
 * The lookaside SignatureSource: probes `signature-1`, `-2`, … and reports every index instead of
 * aborting at the first error as c/image does. The list ends at the first real 404/ENOENT, after
 * `maxConsecutiveTroubles` troubles in a row, at the upstream cap of 128, or when the
 * signature-phase budget runs out. A small window of indices is fetched concurrently; outcomes are
 * still consumed in index order, so anything after the first 404 is discarded even if it was read.
 */
import type { Dispatcher } from 'undici';
import type { RegistriesD } from '../config/registries-d.js';
import { PullguardError } from '../domain/errors.js';
import type { SignatureFetchReport, SignatureTrouble, UntrustedSignatureBlob } from '../domain/signature.js';
import type { RegistryCredentials, ResolvedImage, SignatureSource } from '../pull/ports.js';
import { FetchStop, readSignatureIndex, type IndexOutcome, type LookasideEvent, type ReadContext } from './read-signature.js';
import { realTimers, type Timers } from './timers.js';
import { lookasideImageBase, lookasideSignatureUrl, redactUrl } from './lookaside-url.js';

export type { LookasideEvent } from './read-signature.js';

/** c/image `maxLookasideSignatures`. */
export const MAX_LOOKASIDE_SIGNATURES = 128;

export interface LookasideSourceOptions {
  readonly registriesD: RegistriesD;
  /** Carries TLS/proxy settings; never given registry credentials. */
  readonly dispatcher: Dispatcher;
  /** Per request, covering headers and body (and redirects). Default 10 000. */
  readonly requestTimeoutMs?: number;
  /** The whole signature phase of one image. Default 30 000. */
  readonly budgetMs?: number;
  /** Indices fetched concurrently. Default 4. */
  readonly window?: number;
  /** Stop after this many troubles in a row. Default 3. */
  readonly maxConsecutiveTroubles?: number;
  /** Retries of 429/502/503/504 and connection resets per index. Default 2. */
  readonly retries?: number;
  /** First back-off step; doubled per retry, with ±50 % jitter. Default 250. */
  readonly retryBaseMs?: number;
  /** Revalidate a 200 body that is no signature once with `Cache-Control: no-cache`. Default true. */
  readonly noCacheRetry?: boolean;
  /** Default 128, as upstream. */
  readonly maxSignatures?: number;
  readonly userAgent?: string;
  readonly timers?: Timers;
  /** In [0, 1); jitter source. Default Math.random. */
  readonly random?: () => number;
  /** Observability hook (logs, metrics). Exceptions thrown by it are ignored. */
  readonly onEvent?: (event: LookasideEvent) => void;
}

function positiveInt(name: string, value: number, min: number): number {
  if (!Number.isInteger(value) || value < min) {
    throw new PullguardError('INVALID_CONFIG', `lookaside option ${name} must be an integer >= ${min}, got ${value}`);
  }
  return value;
}

export function createLookasideSource(options: LookasideSourceOptions): SignatureSource {
  const requestTimeoutMs = positiveInt('requestTimeoutMs', options.requestTimeoutMs ?? 10_000, 1);
  const budgetMs = positiveInt('budgetMs', options.budgetMs ?? 30_000, 1);
  const window = positiveInt('window', options.window ?? 4, 1);
  const maxConsecutiveTroubles = positiveInt('maxConsecutiveTroubles', options.maxConsecutiveTroubles ?? 3, 1);
  const retries = positiveInt('retries', options.retries ?? 2, 0);
  const retryBaseMs = positiveInt('retryBaseMs', options.retryBaseMs ?? 250, 0);
  const maxSignatures = positiveInt('maxSignatures', options.maxSignatures ?? MAX_LOOKASIDE_SIGNATURES, 1);
  const timers = options.timers ?? realTimers;
  const random = options.random ?? Math.random;
  const emit = (event: LookasideEvent): void => {
    try {
      options.onEvent?.(event);
    } catch {
      // An observer must not change what is read.
    }
  };

  async function fetch(
    image: ResolvedImage,
    fetchOptions: { readonly signal?: AbortSignal; readonly credentials?: RegistryCredentials },
  ): Promise<SignatureFetchReport> {
    // `fetchOptions.credentials` is deliberately ignored: lookaside servers never get registry credentials.
    const reference = image.physicalReference;
    const location = options.registriesD.lookasideFor(reference);
    const signatures: UntrustedSignatureBlob[] = [];
    const troubles: SignatureTrouble[] = [];
    const notices: string[] = [];
    const retriedIndices: number[] = [];
    const report = (end: SignatureFetchReport['end']): SignatureFetchReport => {
      emit({ type: 'end', end, signatures: signatures.length, troubles: troubles.length });
      return Object.freeze({
        signatures: Object.freeze(signatures),
        troubles: Object.freeze(troubles),
        end,
        notices: Object.freeze(notices),
        retriedIndices: Object.freeze(retriedIndices),
      });
    };
    if (location === undefined) return report('not-configured');
    const imageBase = lookasideImageBase(location.baseUrl, reference);
    emit({
      type: 'scope',
      scope: location.scope,
      baseUrl: redactUrl(new URL(location.baseUrl)),
      ...(location.file !== undefined ? { file: location.file } : {}),
    });

    const callerSignal = fetchOptions.signal;
    const budget = new AbortController();
    const discard = new AbortController();
    const cancelBudget = timers.setTimeout(() => budget.abort(new FetchStop('budget')), budgetMs);
    const onCancel = (): void => discard.abort(new FetchStop('cancelled'));
    callerSignal?.addEventListener('abort', onCancel, { once: true });
    if (callerSignal?.aborted) onCancel();
    // The budget wins over a discard so that budget-stopped indices are reported as such.
    const indexSignal = AbortSignal.any([budget.signal, discard.signal]);
    const ctx: ReadContext = {
      dispatcher: options.dispatcher,
      timers,
      random,
      requestTimeoutMs,
      retries,
      retryBaseMs,
      noCacheRetry: options.noCacheRetry ?? true,
      userAgent: options.userAgent ?? 'pullguard',
      deadline: timers.now() + budgetMs,
      budgetMs,
      emit,
    };

    const inFlight = new Map<number, Promise<IndexOutcome>>();
    let nextToStart = 1;
    const start = (index: number): void => {
      const url = lookasideSignatureUrl(imageBase, image.manifestDigest, index);
      const outcome = readSignatureIndex(ctx, url, index, indexSignal).then((o) => {
        emit({
          type: 'outcome',
          index,
          url: o.kind === 'trouble' ? o.trouble.location.url : o.kind === 'signature' ? o.blob.location.url : redactUrl(url),
          outcome: o.kind === 'trouble' ? o.trouble.kind : o.kind === 'stopped' ? 'budget' : o.kind,
          attempts: o.kind === 'trouble' ? o.trouble.attempts : o.attempts,
        });
        return o;
      });
      inFlight.set(index, outcome);
    };
    /** Records an outcome; returns an end reason when the list is over. */
    let consecutiveTroubles = 0;
    const take = (index: number, outcome: IndexOutcome): SignatureFetchReport['end'] | undefined => {
      switch (outcome.kind) {
        case 'signature':
          signatures.push(outcome.blob);
          if (outcome.notice !== undefined) notices.push(outcome.notice);
          if (outcome.attempts > 1) retriedIndices.push(index);
          consecutiveTroubles = 0;
          return undefined;
        case 'missing':
          if (outcome.attempts > 1) retriedIndices.push(index);
          return 'not-found';
        case 'trouble':
          troubles.push(outcome.trouble);
          if (outcome.trouble.kind === 'budget') return 'budget';
          consecutiveTroubles++;
          return consecutiveTroubles >= maxConsecutiveTroubles ? 'consecutive-troubles' : undefined;
        case 'stopped':
          return 'budget'; // only reachable on cancellation, which throws below
      }
    };

    let end: SignatureFetchReport['end'] | undefined;
    try {
      for (let index = 1; end === undefined; index++) {
        if (index > maxSignatures) {
          notices.push(`server provided ${maxSignatures} signatures, assuming that's unreasonable and a server error`);
          end = 'cap';
          break;
        }
        while (nextToStart <= maxSignatures && nextToStart < index + window) start(nextToStart++);
        const outcome = await (inFlight.get(index) as Promise<IndexOutcome>);
        inFlight.delete(index);
        if (callerSignal?.aborted) break;
        end = take(index, outcome);
        if (end === 'consecutive-troubles') {
          // Say so on the last trouble: the indices after the first of the run may not exist at all.
          const last = troubles.pop() as SignatureTrouble;
          troubles.push(Object.freeze({ ...last, stoppedReadAfter: consecutiveTroubles }));
        }
        if (end === 'budget') {
          // Everything already started was cut short by the same budget (or finished first):
          // report it in order, still honouring "the first 404 ends the list".
          for (const later of [...inFlight.keys()].sort((a, b) => a - b)) {
            const laterOutcome = await (inFlight.get(later) as Promise<IndexOutcome>);
            inFlight.delete(later);
            if (laterOutcome.kind === 'missing') break;
            take(later, laterOutcome);
          }
        }
      }
    } finally {
      cancelBudget();
      callerSignal?.removeEventListener('abort', onCancel);
      if (!discard.signal.aborted) discard.abort(new FetchStop('discarded'));
      // Let discarded requests release their sockets before returning.
      await Promise.allSettled(inFlight.values());
    }
    if (callerSignal?.aborted) {
      throw new PullguardError('CANCELLED', 'signature fetch cancelled', { cause: callerSignal.reason });
    }
    return report(end ?? 'not-found');
  }

  return Object.freeze({ yields: 'simple-signing' as const, fetch });
}
