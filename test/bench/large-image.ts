/**
 * OCI image layouts with large random (incompressible) layers, streamed to disk so a 1 GiB image
 * never sits in memory. Each layer is a one-file ustar archive wrapped in gzip level 0 ("stored"
 * deflate blocks): valid tar+gzip for skopeo and the registry, written at disk speed.
 *
 *   const img = await buildLargeOciImage(dir, { tag: 'v1', layerSizes: [64 * MiB, 64 * MiB] });
 *   img.manifestDigest, img.totalBytes
 */
import { createHash, randomFillSync } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdir, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { createGzip } from 'node:zlib';
import { OCI, sha256 } from '../helpers/oci-image.js';
import { tarHeader } from '../helpers/oci-image.js';

export interface LargeImageOptions {
  readonly tag: string;
  readonly layerSizes: readonly number[];
}

export interface LargeImage {
  readonly dir: string;
  readonly tag: string;
  readonly manifestDigest: string;
  /** The image id a runtime reports. */
  readonly configDigest: string;
  readonly layerDigests: readonly string[];
  /** Sum of the compressed layer sizes (what a pull transfers, bar config and manifest). */
  readonly totalBytes: number;
}

const CHUNK = 1024 * 1024;

/** The tar stream of one random file; `diffId` hashes exactly what is yielded. */
async function* randomTar(size: number, diffId: ReturnType<typeof createHash>): AsyncGenerator<Buffer> {
  const emit = (b: Buffer): Buffer => {
    diffId.update(b);
    return b;
  };
  yield emit(tarHeader('data.bin', size));
  for (let left = size; left > 0; left -= CHUNK) {
    // A fresh buffer per chunk: gzip may still hold the previous one.
    yield emit(randomFillSync(Buffer.allocUnsafe(Math.min(CHUNK, left))));
  }
  const pad = (512 - (size % 512)) % 512;
  yield emit(Buffer.alloc(pad + 1024));
}

async function writeRandomLayer(dir: string, size: number, index: number): Promise<{ digest: string; size: number; diffId: string }> {
  const blobs = join(dir, 'blobs', 'sha256');
  const temp = join(blobs, `.layer-${process.pid}-${index}.tmp`);
  const diffId = createHash('sha256');
  const digest = createHash('sha256');
  let written = 0;
  await pipeline(
    randomTar(size, diffId),
    createGzip({ level: 0 }),
    async function* (source: AsyncIterable<Buffer>) {
      for await (const chunk of source) {
        digest.update(chunk);
        written += chunk.length;
        yield chunk;
      }
    },
    createWriteStream(temp),
  );
  const hex = digest.digest('hex');
  await rename(temp, join(blobs, hex));
  return { digest: `sha256:${hex}`, size: written, diffId: `sha256:${diffId.digest('hex')}` };
}

async function writeJsonBlob(dir: string, value: unknown): Promise<{ digest: string; size: number }> {
  const bytes = Buffer.from(JSON.stringify(value));
  const digest = sha256(bytes);
  await writeFile(join(dir, 'blobs', 'sha256', digest.slice('sha256:'.length)), bytes);
  return { digest, size: bytes.length };
}

export async function buildLargeOciImage(dir: string, options: LargeImageOptions): Promise<LargeImage> {
  await mkdir(join(dir, 'blobs', 'sha256'), { recursive: true });
  const layers: { digest: string; size: number; diffId: string }[] = [];
  for (const [i, size] of options.layerSizes.entries()) layers.push(await writeRandomLayer(dir, size, i));
  const config = await writeJsonBlob(dir, {
    created: '2024-01-01T00:00:00Z',
    architecture: 'amd64',
    os: 'linux',
    config: { Env: ['PATH=/usr/bin:/bin'] },
    rootfs: { type: 'layers', diff_ids: layers.map((l) => l.diffId) },
  });
  const manifest = await writeJsonBlob(dir, {
    schemaVersion: 2,
    mediaType: OCI.manifest,
    config: { mediaType: OCI.config, digest: config.digest, size: config.size },
    layers: layers.map((l) => ({ mediaType: OCI.layerGzip, digest: l.digest, size: l.size })),
  });
  await writeFile(join(dir, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  await writeFile(
    join(dir, 'index.json'),
    JSON.stringify({
      schemaVersion: 2,
      manifests: [{ mediaType: OCI.manifest, digest: manifest.digest, size: manifest.size, annotations: { 'org.opencontainers.image.ref.name': options.tag } }],
    }),
  );
  return {
    dir,
    tag: options.tag,
    manifestDigest: manifest.digest,
    configDigest: config.digest,
    layerDigests: layers.map((l) => l.digest),
    totalBytes: layers.reduce((n, l) => n + l.size, 0),
  };
}
