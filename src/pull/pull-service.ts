/**
 * The pull use case: resolve → signature phase (policy decides) → only if allowed, fetch config and
 * layers into the store → record the image with its verification record. Depends on ports only, and
 * owns the whole pull to its end: it times it, classifies its outcome and tells the observers.
 */
import { createHash } from 'node:crypto';
import type { Digest } from '../domain/digest.js';
import { PullguardError } from '../domain/errors.js';
import { imageIdOf, isArtifact, type Descriptor } from '../domain/image.js';
import { imageIdConflict } from '../domain/image-record.js';
import { formatReference, parseReference, withDigest, type ImageReference } from '../domain/reference.js';
import type { UntrustedSignatureBlob, Verdict } from '../domain/signature.js';
import { SignatureDeniedError, isSignatureDeniedError } from './pull-errors.js';
import type {
  BlobLeases,
  ContentStore,
  GarbageCollector,
  ImageRecorder,
  ImageSource,
  PodRef,
  PullEnded,
  PullObserver,
  RegistryCredentials,
  ResolvedImage,
  SignaturePhase,
  TrustConfiguration,
  VerdictDecision,
} from './ports.js';
import type { InFlightEntry, InFlightImages } from './in-flight-images.js';
import { allOrCancel } from './all-or-cancel.js';
import { tellEach } from './observers.js';
import { pullOutcomeOf } from './pull-outcome.js';
import { SingleFlight } from './single-flight.js';
import { readVerificationRecords, signatureBlobsOf, toVerificationRecord, withVerificationRecord, type PolicySource } from './verification-record.js';
import type { ImageRecord } from '../domain/image-record.js';

export interface PullRequest {
  readonly image: string;
  readonly credentials?: RegistryCredentials;
  /** Pod namespace, for per-namespace policies. */
  readonly namespace?: string;
  /** The pod the image is for, when the caller named one (observers post Events on it). */
  readonly pod?: PodRef;
  /** The caller's fields for log lines about this pull (the RPC and its request id); only observers read them. */
  readonly logFields?: Readonly<Record<string, unknown>>;
  readonly signal?: AbortSignal;
  /**
   * Called once the verdict allowed the image and its manifests are stored, while its blobs are
   * still being fetched (which then happens in the order a runtime asks for them). Also called for
   * a caller that joins a pull already past that point.
   */
  readonly onAllowed?: (image: AllowedImage) => void;
  /**
   * The runtime fetches the layers itself (`--runtime-fetch runtime`): called once the verdict
   * allowed the image and its manifests, config and signatures are stored. No layer is fetched into
   * the store, and the image is recorded only after this resolves, so a runtime pull that failed
   * (say, a registry answering the pinned digest with other bytes) leaves no record. In a shared
   * flight, the first caller's is used: its result stands for every caller of the flight.
   */
  readonly runtimeFetch?: (image: AllowedImage, signal: AbortSignal) => Promise<void>;
}

/**
 * An image to verify for someone else who fetches it (containerd's image verifier, PullService.verify):
 * no credentials, no namespace (the global policy decides), no layer fetched.
 */
export interface VerifyRequest {
  /** The name as the caller gave it (containerd's `-name`): the policy judges it, its tag included. */
  readonly image: string;
  /** What the caller resolved that name to (containerd's `-digest`): fetched by this digest, never by the tag. */
  readonly digest: Digest;
  readonly logFields?: Readonly<Record<string, unknown>>;
  readonly signal?: AbortSignal;
}

/** An image the policy allowed, before its blobs are all in the store. */
export interface AllowedImage {
  readonly reference: ImageReference;
  readonly manifestDigest: Digest;
  /** The image id a runtime reports: the config digest of an image, the manifest digest of an artifact. */
  readonly imageId: Digest;
}

export interface PullResult {
  readonly imageId: Digest;
  readonly reference: ImageReference;
  readonly manifestDigest: Digest;
  readonly verdict: Verdict;
  /** What the image index now holds for the image (its verification records of other repositories included). */
  readonly record: ImageRecord;
}

export interface PullServiceOptions {
  readonly source: ImageSource;
  readonly signaturePhase: SignaturePhase;
  readonly content: ContentStore;
  readonly images: ImageRecorder;
  readonly leases: BlobLeases;
  readonly version: string;
  /** Wall time, for `pulledAt` and the verification record; default: now. */
  readonly clock?: () => Date;
  /** Milliseconds on a monotonic clock, for durations; default: performance.now. */
  readonly monotonicMs?: () => number;
  /** Layers fetched at once per pull. */
  readonly layerConcurrency?: number;
  /** Called after a pull fails part-way through its fetches, to give back what it stored. */
  readonly garbage?: GarbageCollector;
  /** Told what each pull does and how it ended (metrics, logs, Events); never given credentials. */
  readonly observers?: readonly PullObserver[];
  /** Where allowed images are listed while their blobs are fetched (the local mirror reads it). */
  readonly inFlight?: InFlightImages;
  /**
   * The trust configuration in force, for its revision: identical pulls share a flight only within
   * one revision, so a pull that starts after a reload never takes a verdict reached before it.
   */
  readonly trust?: TrustConfiguration;
}

const MAX_CONFIG_BYTES = 4 * 1024 * 1024;
const DEFAULT_LAYER_CONCURRENCY = 4;
/**
 * Blobs fetched at once while a runtime waits for them (onAllowed): in manifest order and few at a
 * time, so the first layers are verified early and the runtime's download overlaps ours instead of
 * every layer completing at the very end.
 */
const RUNTIME_ORDER_CONCURRENCY = 2;

/**
 * What the store keeps of an allowed image; the runtime fetches the rest itself. `all`: standalone
 * and the verified mirror; `manifests-and-config`: runtime fetches (the config for the record's
 * user); `manifests`: a verification for containerd's image verifier. Signatures always.
 */
type KeptBlobs = 'all' | 'manifests-and-config' | 'manifests';

/** The onAllowed callers of one pull in flight (joiners included): state shared by the flight. */
interface AllowedListeners {
  readonly callbacks: Set<(image: AllowedImage) => void>;
  allowed?: AllowedImage;
}

export class PullService {
  readonly #options: PullServiceOptions;
  readonly #clock: () => Date;
  readonly #monotonicMs: () => number;
  readonly #observers: readonly PullObserver[];
  readonly #pulls = new SingleFlight<PullResult, AllowedListeners>(() => ({ callbacks: new Set() }));
  readonly #blobs = new SingleFlight<boolean>();

  constructor(options: PullServiceOptions) {
    this.#options = options;
    this.#clock = options.clock ?? (() => new Date());
    this.#monotonicMs = options.monotonicMs ?? (() => performance.now());
    this.#observers = options.observers ?? [];
  }

  /**
   * Pulls (or joins an identical pull in flight: same image, credentials and namespace). Every call
   * ends in exactly one `pullEnded`, timed from this call: a caller that joined a flight waited for
   * it too, and kubelet sees one PullImage each.
   */
  async pull(request: PullRequest): Promise<PullResult> {
    return this.#observed(request, () => this.#join(request, 'pull'));
  }

  /**
   * Verifies an image another party fetches (containerd 2.x's image verifier): resolve the given
   * digest → signature phase → manifests and signatures into the store → the record
   * (`layersStored: false, configStored: false`). Neither config nor layer is fetched: the runtime
   * is waiting for the answer to fetch them itself, and pullguard never serves this image. The
   * observers are told as of a pull; flights are never shared with pulls (a pull must fetch what a
   * verification does not). A name that carries a digest is judged by that digest (CRI drops the tag
   * then), which must be the one given.
   */
  async verify(request: VerifyRequest): Promise<PullResult> {
    const asPull: PullRequest = {
      image: request.image,
      ...(request.logFields !== undefined ? { logFields: request.logFields } : {}),
      ...(request.signal !== undefined ? { signal: request.signal } : {}),
    };
    return this.#observed(asPull, () => this.#join(asPull, 'verify', request.digest));
  }

  async #observed(request: PullRequest, run: () => Promise<PullResult>): Promise<PullResult> {
    const started = this.#monotonicMs();
    let result: PullResult;
    try {
      result = await run();
    } catch (err) {
      this.#ended(request, started, { error: err, ...(isSignatureDeniedError(err) ? { verdict: err.verdict, manifestDigest: err.manifestDigest } : {}) });
      throw err;
    }
    this.#ended(request, started, { verdict: result.verdict, manifestDigest: result.manifestDigest });
    return result;
  }

  #ended(request: PullRequest, started: number, end: { readonly verdict?: Verdict; readonly manifestDigest?: Digest; readonly error?: unknown }): void {
    const durationSeconds = Math.max(0, (this.#monotonicMs() - started) / 1000);
    const ended: PullEnded = {
      image: request.image,
      outcome: pullOutcomeOf(end),
      durationSeconds,
      ...end,
      warnings: end.error === undefined && end.verdict !== undefined ? end.verdict.warnings : [],
      ...(request.namespace !== undefined ? { namespace: request.namespace } : {}),
      ...(request.pod !== undefined ? { pod: request.pod } : {}),
      ...(request.logFields !== undefined ? { logFields: request.logFields } : {}),
    };
    tellEach(this.#observers, (observer) => observer.pullEnded?.(ended));
  }

  async #join(request: PullRequest, mode: 'pull' | 'verify', pinned?: Digest): Promise<PullResult> {
    let reference = parseReference(request.image);
    if (pinned !== undefined && reference.digest !== undefined) {
      if (reference.digest !== pinned) throw new PullguardError('INVALID_ARGUMENT', `${formatReference(reference)} names another digest than ${pinned}`);
      reference = withDigest(reference, pinned);
    }
    const revision = this.#options.trust?.current().revision.number ?? 0;
    const key = [mode, revision, formatReference(reference), pinned ?? '', credentialKey(request.credentials), request.namespace ?? ''].join('\0');
    const onAllowed = request.onAllowed;
    let joined: AllowedListeners | undefined;
    // The listeners live and die with the flight: a later pull of the same key never sees this verdict.
    const listen = (listeners: AllowedListeners): void => {
      if (onAllowed === undefined) return;
      joined = listeners;
      if (listeners.allowed !== undefined) onAllowed(listeners.allowed);
      else listeners.callbacks.add(onAllowed);
    };
    try {
      const keeps: KeptBlobs = mode === 'verify' ? 'manifests' : request.runtimeFetch !== undefined ? 'manifests-and-config' : 'all';
      return await this.#pulls.run(key, request.signal, (signal, listeners) => this.#pull(reference, request, signal, listeners, keeps, pinned), listen);
    } finally {
      // A caller that gave up while the flight goes on is not told later.
      if (onAllowed !== undefined) joined?.callbacks.delete(onAllowed);
    }
  }

  async #pull(
    reference: ImageReference,
    request: PullRequest,
    signal: AbortSignal,
    listeners: AllowedListeners,
    keeps: KeptBlobs,
    pinned?: Digest,
  ): Promise<PullResult> {
    const { source, signaturePhase } = this.#options;
    const transport = { credentials: request.credentials, signal };
    // Pinned (verify): fetched by the digest the caller resolved, judged under the name it gave.
    const image =
      pinned === undefined || reference.digest !== undefined
        ? await source.resolve(reference, transport)
        : { ...(await source.resolve(withDigest(reference, pinned), transport)), reference };
    const display = formatReference(reference);
    const resolved = {
      image: display,
      manifestDigest: image.manifestDigest,
      layers: image.layers.length,
      bytes: image.layers.reduce((sum, layer) => sum + layer.size, image.config.size),
    };
    tellEach(this.#observers, (observer) => observer.resolved?.(resolved));

    // The policy decides BEFORE any other blob is read (c/image copy/single.go, containerd transfer).
    const phaseStarted = this.#monotonicMs();
    // On the node already (the same manifest recorded): a re-pull, which the verdict cache may answer.
    const recorded = this.#options.images.get(imageIdOf(image));
    const { verdict, signatures, policySource, decision } = await signaturePhase({
      image,
      signal,
      reuseVerdict: recorded !== undefined && recorded.manifestDigest === image.manifestDigest,
      ...(request.namespace !== undefined ? { namespace: request.namespace } : {}),
      ...(request.credentials !== undefined ? { credentials: request.credentials } : {}),
    });
    const decided = {
      image: display,
      manifestDigest: image.manifestDigest,
      verdict,
      signaturePhaseSeconds: Math.max(0, (this.#monotonicMs() - phaseStarted) / 1000),
      ...(decision?.cache !== undefined ? { verdictCache: decision.cache } : {}),
    };
    tellEach(this.#observers, (observer) => observer.decided?.(decided));
    if (!verdict.allowed) throw new SignatureDeniedError(display, image.manifestDigest, verdict);
    // Before any layer is fetched; the index refuses it again at put, should a pull race this one.
    const holder = this.#options.images.get(imageIdOf(image));
    if (holder !== undefined && holder.manifestDigest !== image.manifestDigest)
      throw imageIdConflict(holder, { manifestDigest: image.manifestDigest, name: display });

    const signatureDigests = signatures.map((signature) => sha256Digest(signature.bytes));
    const leased: Digest[] = [image.topDigest, image.manifestDigest, image.config.digest, ...image.layers.map((l) => l.digest), ...signatureDigests];
    try {
      return await this.#storeAndRecord({
        image,
        reference,
        request,
        signal,
        verdict,
        policySource,
        decision,
        signatures,
        signatureDigests,
        leased,
        listeners,
        keeps,
      });
    } catch (err) {
      // A failed pull keeps nothing it fetched (a disk-full pull must give its space back). Run
      // after the lease is released; other pulls' blobs stay leased and are not touched.
      await this.#options.garbage?.collectGarbage().catch(() => undefined);
      throw err;
    }
  }

  /** Everything of an allowed image into the store under one lease, blobs first, the record last. */
  async #storeAndRecord(allowed: {
    readonly image: ResolvedImage;
    readonly reference: ImageReference;
    readonly request: PullRequest;
    readonly signal: AbortSignal;
    readonly verdict: Verdict;
    readonly policySource: PolicySource | undefined;
    readonly decision: VerdictDecision | undefined;
    readonly signatures: readonly UntrustedSignatureBlob[];
    readonly signatureDigests: readonly Digest[];
    readonly leased: readonly Digest[];
    readonly listeners: AllowedListeners;
    readonly keeps: KeptBlobs;
  }): Promise<PullResult> {
    const { image, reference, request, signal, verdict, policySource, decision, signatures, signatureDigests, leased, listeners, keeps } = allowed;
    const runtimeFetch = request.runtimeFetch;
    const storeManifestsAndSignatures = async (): Promise<void> => {
      await this.#storeBytes(image.manifestDigest, image.manifestMediaType, image.manifestBytes);
      if (image.indexBytes !== undefined) await this.#storeBytes(image.topDigest, image.topMediaType, image.indexBytes);
      for (const [i, signature] of signatures.entries()) {
        await this.#storeBytes(signatureDigests[i]!, 'application/vnd.pullguard.signature', signature.bytes);
      }
    };
    const recordAs = { image, reference, namespace: request.namespace, verdict, policySource, decision, signatures, signatureDigests, keeps };
    return this.#options.leases.withLease(leased, async () => {
      if (keeps === 'manifests') {
        // A verification: whoever asked fetches config and layers once it has the answer.
        await storeManifestsAndSignatures();
        return await this.#record(recordAs);
      }
      // The mirror serves manifests from the store, so they must be there before a runtime is told;
      // a runtime that fetches for itself needs nothing of ours, and they are stored meanwhile.
      if (runtimeFetch === undefined) await storeManifestsAndSignatures();
      const blobs = [image.config, ...image.layers];
      const inFlight = this.#options.inFlight?.add({
        repository: reference.name,
        manifests: new Map([
          [image.manifestDigest, image.manifestMediaType],
          [image.topDigest, image.topMediaType],
        ]),
        blobs: new Set(blobs.map((b) => b.digest)),
      });
      try {
        // Whoever waits for the verdict (a runtime about to pull the digest) may start now.
        const runtimeWaits = listeners.callbacks.size > 0;
        listeners.allowed = { reference, manifestDigest: image.manifestDigest, imageId: imageIdOf(image) };
        for (const callback of listeners.callbacks) callback(listeners.allowed);
        if (runtimeFetch !== undefined) {
          // The runtime pulls name@digest itself; meanwhile manifests, signatures and the config (for
          // the record's user) come into the store. Either failing cancels the other; nothing is recorded.
          const allowedImage = listeners.allowed;
          await allOrCancel(signal, [
            async (both) => {
              await storeManifestsAndSignatures();
              await this.#fetchBlobs(image, [image.config], request.credentials, both, { runtimeOrder: true, inFlight });
            },
            (both) => runtimeFetch(allowedImage, both),
          ]);
        } else {
          await this.#fetchBlobs(image, blobs, request.credentials, signal, { runtimeOrder: runtimeWaits, inFlight });
        }
        return await this.#record(recordAs);
      } finally {
        // After the record is in the index (or the pull failed): the mirror now goes by the index.
        inFlight?.end();
      }
    });
  }

  async #record(fetched: {
    readonly image: ResolvedImage;
    readonly reference: ImageReference;
    readonly namespace: string | undefined;
    readonly verdict: Verdict;
    readonly policySource: PolicySource | undefined;
    readonly decision: VerdictDecision | undefined;
    readonly signatures: readonly UntrustedSignatureBlob[];
    readonly signatureDigests: readonly Digest[];
    /** What this pull put into the store (the runtime holds the rest). */
    readonly keeps: KeptBlobs;
  }): Promise<PullResult> {
    const { image, reference, namespace, verdict, policySource, decision, signatures, signatureDigests, keeps } = fetched;
    const id = imageIdOf(image);
    const previous = this.#options.images.get(id);
    const clock = this.#clock;
    const samePrevious = previous !== undefined && previous.manifestDigest === image.manifestDigest ? previous : undefined;
    // Recorded again with less (a verification, a runtime fetch) while more is stored: it stays stored and kept.
    const layersStored = keeps === 'all' || (samePrevious !== undefined && samePrevious.layersStored !== false);
    const configStoredBefore = samePrevious !== undefined && samePrevious.configStored !== false;
    const configStored = keeps !== 'manifests' || configStoredBefore;
    // An artifact's config is not an image config: it names no user (and need not be JSON). The
    // same manifest recorded before has the same config, and so the same user.
    const user = configStoredBefore
      ? samePrevious.user
      : keeps === 'manifests' || isArtifact(image.config)
        ? undefined
        : configUser(await this.#options.content.readAll(image.config.digest, MAX_CONFIG_BYTES));
    // Kept per repository: the same image pulled from elsewhere keeps its own record.
    const verification = withVerificationRecord(
      previous?.verification,
      toVerificationRecord({
        time: clock(),
        version: this.#options.version,
        image,
        verdict,
        signatures,
        signatureDigests,
        ...(policySource !== undefined ? { policySource } : {}),
        ...(namespace !== undefined ? { namespace } : {}),
        ...(decision !== undefined ? { decision } : {}),
      }),
    );
    const record: ImageRecord = {
      id,
      repoTags: reference.tag !== undefined ? [`${reference.name}:${reference.tag}`] : [],
      repoDigests: [...new Set([`${reference.name}@${image.topDigest}`, `${reference.name}@${image.manifestDigest}`])],
      manifestDigest: image.manifestDigest,
      manifestMediaType: image.manifestMediaType,
      topDigest: image.topDigest,
      topMediaType: image.topMediaType,
      configDigest: image.config.digest,
      layers: image.layers.map((l) => ({ digest: l.digest, size: l.size, mediaType: l.mediaType })),
      ...(layersStored ? {} : { layersStored: false as const }),
      ...(configStored ? {} : { configStored: false as const }),
      size: image.config.size + image.manifestBytes.byteLength + image.layers.reduce((sum, l) => sum + l.size, 0),
      ...optionalUser(user),
      pulledAt: clock().toISOString(),
      verification,
      signatureBlobs: signatureBlobsOf(verification),
    };
    // A re-pull answered from the verdict cache usually has nothing new to record (same tags, same
    // verdict, decided at the same time): the index is not written, and the record stays as it was.
    if (samePrevious !== undefined && decision?.cache === 'hit' && recordsTheSame(samePrevious, record)) {
      return { imageId: samePrevious.id, reference, manifestDigest: image.manifestDigest, verdict, record: samePrevious };
    }
    await this.#options.images.put(record);
    return { imageId: record.id, reference, manifestDigest: image.manifestDigest, verdict, record };
  }

  async #storeBytes(digest: Digest, mediaType: string, bytes: Uint8Array): Promise<void> {
    const { content } = this.#options;
    if (await content.has(digest)) return;
    const writer = await content.ingest({ digest, size: bytes.byteLength, mediaType });
    try {
      await writer.write(bytes);
      await writer.commit();
    } catch (err) {
      await writer.abort();
      throw err;
    }
  }

  /**
   * Fetches blobs with bounded concurrency; a blob another pull is fetching is awaited, not
   * re-fetched. On the first failure the other fetches of this pull are cancelled and awaited, so
   * the pull answers only once its temp files are gone.
   */
  async #fetchBlobs(
    image: ResolvedImage,
    blobs: readonly Descriptor[],
    credentials: RegistryCredentials | undefined,
    signal: AbortSignal,
    { runtimeOrder, inFlight }: { readonly runtimeOrder: boolean; readonly inFlight: InFlightEntry | undefined },
  ): Promise<void> {
    const unique = [...new Map(blobs.map((b) => [b.digest, b])).values()];
    // Alone, largest first: the small config must not hold a slot a big layer needs from the start.
    // For a waiting runtime, its own order (config, then layers bottom-up), a few at a time.
    const queue = runtimeOrder ? unique : unique.sort((a, b) => b.size - a.size);
    const configured = Math.max(1, this.#options.layerConcurrency ?? DEFAULT_LAYER_CONCURRENCY);
    const concurrency = runtimeOrder ? Math.min(configured, RUNTIME_ORDER_CONCURRENCY) : configured;
    const fetchOne = async (descriptor: Descriptor, pullSignal: AbortSignal): Promise<void> => {
      const skipped = await this.#blobs.run(descriptor.digest, pullSignal, async (sharedSignal) => {
        if (await this.#options.content.has(descriptor.digest)) return true;
        const writer = await this.#options.content.ingest(descriptor);
        try {
          await this.#options.source.fetchBlob(image, descriptor, writer, {
            signal: sharedSignal,
            ...(credentials !== undefined ? { credentials } : {}),
          });
          await writer.commit();
        } catch (err) {
          await writer.abort();
          throw err;
        }
        return false;
      });
      inFlight?.committed(descriptor.digest);
      const stored = { image: formatReference(image.reference), digest: descriptor.digest, size: descriptor.size, fetched: !skipped };
      tellEach(this.#observers, (observer) => observer.blobStored?.(stored));
    };
    // On the first failure the other workers stop taking blobs, and their fetches are cancelled.
    const worker = async (pullSignal: AbortSignal): Promise<void> => {
      for (let blob = queue.shift(); blob !== undefined && !pullSignal.aborted; blob = queue.shift()) await fetchOne(blob, pullSignal);
    };
    await allOrCancel(
      signal,
      Array.from({ length: Math.min(concurrency, queue.length) }, () => worker),
    );
  }
}

/** Pulls with different credentials must not share a result (one may be authorised, the other not). */
function credentialKey(credentials: RegistryCredentials | undefined): string {
  if (credentials === undefined) return 'anonymous';
  const hash = createHash('sha256');
  for (const part of [credentials.username, credentials.password, credentials.identityToken, credentials.registryToken]) {
    hash.update(part ?? '');
    hash.update('\0');
  }
  return hash.digest('hex');
}

/**
 * True when putting `next` would change nothing in `stored` but the times of the pull: its tags and
 * digests are already listed, its layers are as stored, and each repository's verification record
 * is the same verdict reached at the same time (only `time`, and `cached`, differ).
 */
function recordsTheSame(stored: ImageRecord, next: ImageRecord): boolean {
  const includes = (have: readonly string[], want: readonly string[]): boolean => want.every((x) => have.includes(x));
  const comparable = (records: unknown): string =>
    JSON.stringify(
      Object.entries(readVerificationRecords(records))
        .sort(([a], [b]) => (a < b ? -1 : 1))
        .map(([repository, r]) => [repository, { ...r, time: '', decision: r.decision === undefined ? undefined : { ...r.decision, cached: false } }]),
    );
  return (
    includes(stored.repoTags, next.repoTags) &&
    includes(stored.repoDigests, next.repoDigests) &&
    stored.layersStored === next.layersStored &&
    stored.configStored === next.configStored &&
    stored.user === next.user &&
    stored.size === next.size &&
    comparable(stored.verification) === comparable(next.verification)
  );
}

function sha256Digest(bytes: Uint8Array): Digest {
  return `sha256:${createHash('sha256').update(bytes).digest('hex')}` as Digest;
}

/** `config.User` of an image config, or undefined. Malformed configs are an error: the digest matched, so the image is broken. */
function configUser(configBytes: Uint8Array): string | undefined {
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(configBytes).toString('utf8'));
  } catch (err) {
    throw new PullguardError('MANIFEST_INVALID', 'image config is not valid JSON', { cause: err });
  }
  const user = (parsed as { config?: { User?: unknown } } | null)?.config?.User;
  return typeof user === 'string' && user !== '' ? user : undefined;
}

function optionalUser(user: string | undefined): { user?: string } {
  return user === undefined ? {} : { user };
}
