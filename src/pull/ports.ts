/**
 * The ports the pull use case depends on. Adapters (src/registry, src/lookaside, src/store,
 * src/signature) implement them; src/main.ts wires them. Nothing here imports undici, fs or grpc.
 */
import type { Digest } from '../domain/digest.js';
import type { Descriptor, Platform } from '../domain/image.js';
import type { ImageRecord } from '../domain/image-record.js';

export type { ImageRecord };
import type { ImageReference } from '../domain/reference.js';
import type { SignatureFetchReport } from '../domain/signature.js';

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
