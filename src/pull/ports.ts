/**
 * The ports the pull use case depends on, and the one it reports through (PullObserver). Adapters
 * (src/registry, src/sources, src/store, src/config, src/metrics, src/events) implement them;
 * src/main.ts wires them. Nothing here imports undici, fs or grpc.
 */
import type { Digest } from '../domain/digest.js';
import type { Descriptor, Platform } from '../domain/image.js';
import type { ImageRecord } from '../domain/image-record.js';
import type { ImageReference } from '../domain/reference.js';
import type { SignatureFetchReport, UntrustedSignatureBlob, Verdict, Warning } from '../domain/signature.js';
import type { Policy, SignedByRequirement, SigstoreSignedRequirement } from '../policy/types.js';
import type { GpgKeySet } from '../signature/gpg-keys.js';
import type { SigstoreKeySet } from '../signature/sigstore/public-keys.js';
import type { PullOutcome } from './pull-outcome.js';
import type { PolicySource } from './verification-record.js';

/** Credentials for one pull, from CRI AuthConfig or the auth file. Never logged. */
export interface RegistryCredentials {
  readonly username?: string;
  readonly password?: string;
  /** OAuth2 refresh token (`identity_token`), exchanged at the token endpoint. */
  readonly identityToken?: string;
  /** A bearer token to use as is (`registry_token`). */
  readonly registryToken?: string;
}

/** The manifest chosen for this node, verified against its digest, before any blob is fetched. */
export interface ResolvedImage {
  /** The reference the user asked for, normalised. */
  readonly reference: ImageReference;
  /** What the tag (or the given digest) points to: an index or a manifest. */
  readonly topDigest: Digest;
  readonly topMediaType: string;
  /** The platform instance's manifest (equal to topDigest when there is no index). */
  readonly manifestDigest: Digest;
  readonly manifestMediaType: string;
  readonly manifestBytes: Uint8Array;
  /** The index bytes when topDigest is an index. */
  readonly indexBytes?: Uint8Array;
  readonly config: Descriptor;
  readonly layers: readonly Descriptor[];
  readonly platform?: Platform;
  /**
   * The repository the manifest actually came from (a mirror or the source). Lookaside URLs and
   * registries.d scopes use this physical reference; the policy uses `reference`.
   */
  readonly physicalReference: ImageReference;
}

export interface ResolveOptions {
  readonly credentials?: RegistryCredentials;
  readonly signal?: AbortSignal;
}

/** The registry side: resolve a reference, then stream blobs into the store. */
export interface ImageSource {
  resolve(reference: ImageReference, options: ResolveOptions): Promise<ResolvedImage>;
  /**
   * Streams one blob of `image` into `writer`, verifying digest and size through the writer; on a
   * dropped connection it resumes at `writer.offset` with a Range request. It may commit the
   * writer itself; the caller commits again afterwards (commit is idempotent).
   */
  fetchBlob(image: ResolvedImage, blob: Descriptor, writer: BlobWriter, options: ResolveOptions): Promise<void>;
}

/** An in-progress blob ingest. Nothing is visible in the store until `commit` verifies it. */
export interface BlobWriter {
  /** Bytes written so far (where a resumed download continues). */
  readonly offset: number;
  /**
   * Takes the next chunk. Returns undefined when the chunk was taken without waiting for I/O, or a
   * promise the caller must await before writing again (the chunk is taken either way; the promise
   * rejects if it was wrong or could not be stored). Returning undefined lets a network reader
   * hand over a chunk per socket read without a promise per chunk.
   */
  write(chunk: Uint8Array): Promise<void> | undefined;
  /** Throws DIGEST_MISMATCH / SIZE_MISMATCH (and removes the temp file) if the bytes are wrong. Idempotent. */
  commit(): Promise<void>;
  /** Drops the temp file. Safe to call more than once and after commit. */
  abort(): Promise<void>;
}

/** Fetches the signatures of one manifest from one source. Reports per index; never throws for one index. */
export interface SignatureSource {
  /**
   * What it reads: simple-signing signatures from a lookaside, or sigstore attachments from the
   * registry (read only when a sigstoreSigned requirement can use them).
   */
  readonly yields: 'simple-signing' | 'sigstore';
  fetch(image: ResolvedImage, options: { readonly signal?: AbortSignal; readonly credentials?: RegistryCredentials }): Promise<SignatureFetchReport>;
}

/** The content store as the pull use case sees it (src/store implements it). */
export interface ContentStore {
  has(digest: Digest): Promise<boolean>;
  ingest(expected: Descriptor): BlobWriter | Promise<BlobWriter>;
  /** Reads a whole blob, refusing anything over `maxBytes`. */
  readAll(digest: Digest, maxBytes: number): Promise<Uint8Array>;
}

export interface ImageRecorder {
  get(id: Digest): ImageRecord | undefined;
  put(record: ImageRecord): Promise<unknown>;
}

/** Keeps blobs a pull has committed but not yet recorded safe from garbage collection. */
export interface BlobLeases {
  withLease<T>(digests: readonly Digest[], work: () => Promise<T>): Promise<T>;
}

/** Removes unreferenced, unleased blobs (the image index does it). */
export interface GarbageCollector {
  collectGarbage(): Promise<unknown>;
}

/** The `source` of the embedded default policy (used when no policy file exists). */
export const EMBEDDED_POLICY_SOURCE = '<embedded>';

/** A policy with the keys its requirements name, loaded once per (re)load (src/config/policy-loader.ts). */
export interface LoadedPolicy {
  readonly policy: Policy;
  /** Keys for each GPGKeys `signedBy` requirement (keyed by the requirement object). */
  readonly gpgKeys: ReadonlyMap<SignedByRequirement, GpgKeySet>;
  /**
   * Public (and Rekor) keys for each key-based `sigstoreSigned` requirement, parsed once per load.
   * Optional so hand-built LoadedPolicy values keep compiling; the signature phase fails (never
   * accepts) when a requirement has no entry.
   */
  readonly sigstoreKeys?: ReadonlyMap<SigstoreSignedRequirement, SigstoreKeySet>;
  /** True for the built-in fallback used when no policy file exists. */
  readonly embedded: boolean;
}

/** The policy that decides one pull, and where it came from (kept in the verification record). */
export interface SelectedPolicy {
  readonly policy: LoadedPolicy;
  readonly source: PolicySource;
}

/** One loaded trust configuration. Never changes; a reload loads a new one. */
export interface LoadedTrust {
  /** The per-namespace policy when there is one, else the global policy (CRI-O `signature_policy_dir`). */
  policyFor(namespace: string | undefined): Promise<SelectedPolicy>;
  /** Lookaside first, then sigstore attachments: simple signing before sigstore, as containers/image. */
  readonly signatureSources: readonly SignatureSource[];
  /** Deny images the policy would accept without verifying any signature (off unless configured). */
  readonly requireSignatureVerification?: boolean;
}

/**
 * The trust configuration in force (policies, keys, registries.d, signature sources). The signature
 * phase asks it once per pull; a reload (SIGHUP) swaps what it holds.
 */
export interface TrustConfiguration {
  current(): TrustInForce;
}

/** The trust configuration in force, and which (re)load of it this is. */
export interface TrustInForce {
  readonly trust: LoadedTrust;
  readonly revision: TrustRevision;
}

/** One (re)load of the trust configuration: 1 at start-up, one more at each SIGHUP that loaded. */
export interface TrustRevision {
  readonly number: number;
  readonly loadedAt: Date;
}

/** The signature phase as the pull sees it: decides one resolved image (src/pull/signature-phase.ts). */
export type SignaturePhase = (input: {
  readonly namespace?: string;
  readonly image: ResolvedImage;
  /**
   * The image is on the node already (recorded under this manifest digest): a re-pull, whose verdict
   * may come from the verdict cache. An image pulled anew (or again after its removal) is always
   * verified afresh.
   */
  readonly reuseVerdict?: boolean;
  readonly credentials?: RegistryCredentials;
  readonly signal?: AbortSignal;
}) => Promise<SignaturePhaseResult>;

export interface SignaturePhaseResult {
  readonly verdict: Verdict;
  /** Every signature that parsed, in source and index order (kept as the forensic record). */
  readonly signatures: readonly UntrustedSignatureBlob[];
  /** Which policy decided (kept in the record, so `pullguard verify` can name it). */
  readonly policySource?: PolicySource;
  /** When and under which trust revision the verdict was reached, and whether it came from the verdict cache. */
  readonly decision?: VerdictDecision;
}

export interface VerdictDecision {
  readonly decidedAt: Date;
  readonly revision: TrustRevision;
  /** With a verdict cache: 'hit' when this pull was answered from it (a re-pull of a verified digest). */
  readonly cache?: 'hit' | 'miss';
}

/** The pod a pull is made for (CRI sandbox metadata): where a Kubernetes Event about it goes. */
export interface PodRef {
  readonly name: string;
  readonly namespace: string;
  /** May be empty (crictl --pod-config without uid); then it is left out of involvedObject. */
  readonly uid: string;
}

/**
 * What a pull reports, to every observer the composition root lists (metrics, logs, Kubernetes
 * Events). A flight shared by identical concurrent pulls reports its manifest, verdict and blobs
 * once; each caller's end is reported once per caller, joiners included (one PullImage, one end).
 * Observers must not throw; if one does, the pull goes on and the others are still told.
 */
export interface PullObserver {
  resolved?(event: PullResolved): void;
  decided?(event: PullDecided): void;
  blobStored?(event: BlobStored): void;
  pullEnded?(event: PullEnded): void;
}

export interface PullResolved {
  /** The reference, normalised. */
  readonly image: string;
  readonly manifestDigest: Digest;
  readonly layers: number;
  /** Config and layers. */
  readonly bytes: number;
}

export interface PullDecided {
  readonly image: string;
  readonly manifestDigest: Digest;
  readonly verdict: Verdict;
  /** Fetch, verify and decide, on the service's monotonic clock. */
  readonly signaturePhaseSeconds: number;
  /** Present when a verdict cache is in use: whether this verdict came from it. */
  readonly verdictCache?: 'hit' | 'miss';
}

export interface BlobStored {
  readonly image: string;
  readonly digest: Digest;
  readonly size: number;
  /** False when the blob was in the store already. */
  readonly fetched: boolean;
}

export interface PullEnded {
  /** The image as the caller named it. */
  readonly image: string;
  readonly outcome: PullOutcome;
  /** This caller's wait, on the service's monotonic clock (a shared flight included). */
  readonly durationSeconds: number;
  /** Absent when the pull failed before the policy decided. */
  readonly verdict?: Verdict;
  readonly manifestDigest?: Digest;
  /** The verdict's warnings when the pull succeeded; none otherwise. */
  readonly warnings: readonly Warning[];
  readonly error?: unknown;
  readonly namespace?: string;
  readonly pod?: PodRef;
  /** The caller's fields for log lines about this pull (the RPC and its request id). */
  readonly logFields?: Readonly<Record<string, unknown>>;
}

/** Structured logging as the pull's log observer uses it; pino's Logger is one. */
export interface StructuredLog {
  child(bindings: Record<string, unknown>): StructuredLog;
  debug(fields: object, message: string): void;
  info(fields: object, message: string): void;
  warn(fields: object, message: string): void;
}
