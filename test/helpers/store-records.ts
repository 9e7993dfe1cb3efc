/**
 * Builds image records whose blobs really are in a store, for store tests and the crash child:
 *
 *   const rec = await storeImageRecord(blobs, { repoTags: ['docker.io/library/app:v1'], pulledAt });
 */
import { createHash, randomBytes } from 'node:crypto';
import type { Digest } from '../../src/domain/digest.js';
import type { BlobStore } from '../../src/store/blob-store.js';
import type { ImageRecord } from '../../src/domain/image-record.js';

export function digestOf(bytes: Uint8Array): Digest {
  return `sha256:${createHash('sha256').update(bytes).digest('hex')}` as Digest;
}

export async function commitBlob(blobs: BlobStore, bytes: Uint8Array, chunk = 64 * 1024): Promise<Digest> {
  const digest = digestOf(bytes);
  const writer = await blobs.ingest({ mediaType: 'application/octet-stream', digest, size: bytes.length });
  for (let at = 0; at < bytes.length; at += chunk) await writer.write(bytes.subarray(at, at + chunk));
  await writer.commit();
  return digest;
}

export interface RecordSpec {
  readonly repoTags?: readonly string[];
  /** Repository names for repoDigests (default: those of repoTags). */
  readonly repositories?: readonly string[];
  readonly layerSizes?: readonly number[];
  /** Reuse these layer blobs instead of making new ones. */
  readonly sharedLayers?: readonly { digest: Digest; size: number }[];
  readonly pulledAt?: string;
}

export async function storeImageRecord(blobs: BlobStore, spec: RecordSpec = {}): Promise<ImageRecord> {
  const layers = [...(spec.sharedLayers ?? [])];
  for (const size of spec.layerSizes ?? [1024, 4096]) {
    const bytes = randomBytes(size);
    layers.push({ digest: await commitBlob(blobs, bytes), size });
  }
  const config = Buffer.from(
    JSON.stringify({ config: { User: '1000' }, rootfs: { diff_ids: layers.map((l) => l.digest) }, nonce: randomBytes(8).toString('hex') }),
  );
  const configDigest = await commitBlob(blobs, config);
  const manifest = Buffer.from(JSON.stringify({ schemaVersion: 2, config: { digest: configDigest, size: config.length }, layers }));
  const manifestDigest = await commitBlob(blobs, manifest);
  const repoTags = spec.repoTags ?? [];
  const repositories = spec.repositories ?? repoTags.map((t) => t.slice(0, t.lastIndexOf(':')));
  return {
    id: configDigest,
    repoTags,
    repoDigests: [...new Set(repositories)].map((name) => `${name}@${manifestDigest}`),
    manifestDigest,
    manifestMediaType: 'application/vnd.oci.image.manifest.v1+json',
    topDigest: manifestDigest,
    topMediaType: 'application/vnd.oci.image.manifest.v1+json',
    configDigest,
    layers: layers.map((l) => ({ ...l, mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip' })),
    size: config.length + manifest.length + layers.reduce((n, l) => n + l.size, 0),
    user: '1000',
    pulledAt: spec.pulledAt ?? '2024-01-01T00:00:00.000Z',
  };
}
