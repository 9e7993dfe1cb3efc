/** The record of one pulled image: what the pull writes, the store keeps and the CRI queries read. */
import type { Digest } from './digest.js';
import { PullguardError } from './errors.js';

export interface LayerRecord {
  readonly digest: Digest;
  readonly size: number;
  readonly mediaType: string;
}

/** One pulled image, keyed by its config digest (CRI Image.id); an artifact by its manifest digest. */
export interface ImageRecord {
  readonly id: Digest;
  /** Normalised, e.g. `docker.io/library/nginx:latest`. */
  readonly repoTags: readonly string[];
  /** `name@<topDigest>` and `name@<instance manifestDigest>`, as CRI-O and containerd report them. */
  readonly repoDigests: readonly string[];
  readonly manifestDigest: Digest;
  readonly manifestMediaType: string;
  /** What the tag pointed to: an index, or the manifest itself. Stored as a blob too. */
  readonly topDigest: Digest;
  readonly topMediaType: string;
  readonly configDigest: Digest;
  readonly layers: readonly LayerRecord[];
  /**
   * false when the runtime fetched the layers itself (`--runtime-fetch runtime`): the store then
   * holds the manifests, config and signatures, and the layers live only in the runtime. Absent
   * (older records, mirror mode): every layer is in the store.
   */
  readonly layersStored?: false;
  /**
   * false when the config is not in the store either: a verification for containerd's image
   * verifier (the runtime fetches config and layers; pullguard never serves the image, so it needs
   * no `user`). Only with `layersStored: false`. Absent: the config is stored.
   */
  readonly configStored?: false;
  /** config + manifest (+ index) + layers as stored. */
  readonly size: number;
  /** config.config.User */
  readonly user?: string;
  /** ISO time, given by the caller. */
  readonly pulledAt: string;
  /** The verification record (forensic), opaque to the store; must be JSON. */
  readonly verification?: unknown;
  /** Signature blobs kept in the blob store as part of the forensic record. */
  readonly signatureBlobs?: readonly Digest[];
}

/**
 * CRI names an image by its config digest, and a config is public: anyone can publish another
 * manifest around a copy of it. Two manifests never share one record (the second would take over
 * the first's tags, mirror entries and blobs), so the second is refused while the first is stored.
 */
export function imageIdConflict(
  holder: Pick<ImageRecord, 'id' | 'manifestDigest' | 'repoTags' | 'repoDigests'>,
  incoming: { readonly manifestDigest: Digest; readonly name: string },
): PullguardError<'IMAGE_ID_CONFLICT'> {
  const known = holder.repoTags[0] ?? holder.repoDigests[0] ?? holder.id;
  return new PullguardError(
    'IMAGE_ID_CONFLICT',
    `${incoming.name} resolves to manifest ${incoming.manifestDigest}, whose config is that of the stored image ${known} ` +
      `(id ${holder.id}, manifest ${holder.manifestDigest}) while its manifest is not: refused, so that one image cannot stand in ` +
      `for the other; if both are genuine, remove the stored one first`,
    { facts: { id: holder.id, storedManifest: holder.manifestDigest, manifestDigest: incoming.manifestDigest } },
  );
}
