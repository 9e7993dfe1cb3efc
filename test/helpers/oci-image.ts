/**
 * Builds OCI image layouts on disk from nothing (no network), for registry and pull tests.
 *
 *   const img = await buildOciImage(dir, { tag: 'v1', layers: [{ size: 4096 }, { files: { 'etc/hello': 'hi' } }], user: '1000' });
 *   img.manifestDigest, img.configDigest, img.layers[0].digest, img.layers[0].diffId
 *   await pushImage(dir, 'app:v1', registry)           // see registry.ts (skopeo copy oci:dir:v1 docker://…)
 *
 *   const idx = await buildOciIndex(dir, { tag: 'multi', platforms: [{ os: 'linux', architecture: 'amd64' },
 *     { os: 'linux', architecture: 'arm64', variant: 'v8' }] });
 *   idx.indexDigest, idx.images[1].manifestDigest       // push with pushIndex (skopeo copy --all)
 *
 * Layers are real gzip'd tars whose content is deterministic by `seed` (same seed → same digests).
 * For a Docker schema2 image, push with `{ format: 'v2s2' }`: skopeo converts; the pushed digests
 * then differ from the OCI ones (use `inspectManifest`-style checks against the registry instead).
 */
import { createHash } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';

export interface LayerSpec {
  /** Random file content of this many bytes (one file `data.bin`). */
  readonly size?: number;
  /** Explicit files: path → content. */
  readonly files?: Readonly<Record<string, string | Uint8Array>>;
}

export interface PlatformSpec {
  readonly os: string;
  readonly architecture: string;
  readonly variant?: string;
}

export interface BuildImageOptions {
  readonly layers: readonly LayerSpec[];
  readonly user?: string;
  readonly platform?: PlatformSpec;
  /** Tag recorded in index.json (`org.opencontainers.image.ref.name`). */
  readonly tag: string;
  /** Deterministic content seed (default 1). */
  readonly seed?: number;
}

export interface BuiltBlob {
  readonly digest: string;
  readonly size: number;
  readonly mediaType: string;
  readonly bytes: Uint8Array;
}

export interface BuiltLayer extends BuiltBlob {
  /** sha256 of the uncompressed tar (rootfs.diff_ids). */
  readonly diffId: string;
}

export interface BuiltImage {
  readonly dir: string;
  readonly tag: string;
  readonly manifestDigest: string;
  readonly manifest: BuiltBlob;
  readonly configDigest: string;
  readonly config: BuiltBlob;
  readonly layers: readonly BuiltLayer[];
  readonly platform: PlatformSpec;
}

export interface BuiltIndex {
  readonly dir: string;
  readonly tag: string;
  readonly indexDigest: string;
  readonly index: BuiltBlob;
  readonly images: readonly BuiltImage[];
}

export const OCI = {
  manifest: 'application/vnd.oci.image.manifest.v1+json',
  index: 'application/vnd.oci.image.index.v1+json',
  config: 'application/vnd.oci.image.config.v1+json',
  layerGzip: 'application/vnd.oci.image.layer.v1.tar+gzip',
} as const;

export function sha256(bytes: Uint8Array): string {
  return `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
}

/** Deterministic pseudo-random bytes (xorshift32); not crypto, only reproducible. */
export function seededBytes(size: number, seed: number): Uint8Array {
  const out = new Uint8Array(size);
  let x = (seed * 2654435761) >>> 0 || 0x9e3779b9;
  for (let i = 0; i < size; i++) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    out[i] = x & 0xff;
  }
  return out;
}

/** A minimal ustar archive writer (regular files only, fixed mtime so digests are stable). */
/** A ustar header for a regular file of `size` bytes (mode 0644, uid/gid 0, mtime 0). */
export function tarHeader(path: string, size: number): Buffer {
  const header = Buffer.alloc(512);
  if (Buffer.byteLength(path) > 100) throw new Error(`tar path too long for this helper: ${path}`);
  header.write(path, 0, 'utf8');
  header.write('0000644\0', 100);
  header.write('0000000\0', 108);
  header.write('0000000\0', 116);
  header.write(`${size.toString(8).padStart(11, '0')}\0`, 124);
  header.write('00000000000\0', 136);
  header.write('        ', 148);
  header.write('0', 156);
  header.write('ustar\0', 257);
  header.write('00', 263);
  let sum = 0;
  for (const b of header) sum += b;
  header.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148);
  return header;
}

export function tarFiles(files: Readonly<Record<string, string | Uint8Array>>): Uint8Array {
  const blocks: Buffer[] = [];
  for (const [path, content] of Object.entries(files)) {
    const data = typeof content === 'string' ? Buffer.from(content) : Buffer.from(content);
    blocks.push(tarHeader(path, data.length), data);
    const pad = (512 - (data.length % 512)) % 512;
    if (pad > 0) blocks.push(Buffer.alloc(pad));
  }
  blocks.push(Buffer.alloc(1024));
  return new Uint8Array(Buffer.concat(blocks));
}

function blob(mediaType: string, bytes: Uint8Array): BuiltBlob {
  return { digest: sha256(bytes), size: bytes.length, mediaType, bytes };
}

async function writeBlob(dir: string, b: BuiltBlob): Promise<void> {
  const hex = b.digest.slice('sha256:'.length);
  await mkdir(join(dir, 'blobs', 'sha256'), { recursive: true });
  await writeFile(join(dir, 'blobs', 'sha256', hex), b.bytes);
}

function json(value: unknown): Uint8Array {
  return new Uint8Array(Buffer.from(JSON.stringify(value)));
}

/** Writes blobs of one image (layers, config, manifest) into `dir` without touching index.json. */
async function writeImageBlobs(dir: string, options: BuildImageOptions): Promise<BuiltImage> {
  const seed = options.seed ?? 1;
  const platform = options.platform ?? { os: 'linux', architecture: 'amd64' };
  const layers: BuiltLayer[] = [];
  for (const [i, spec] of options.layers.entries()) {
    const files = spec.files ?? { 'data.bin': seededBytes(spec.size ?? 1024, seed * 1000 + i + 1) };
    const tar = tarFiles(files);
    const gz = new Uint8Array(gzipSync(tar, { level: 1 }));
    const layer: BuiltLayer = { ...blob(OCI.layerGzip, gz), diffId: sha256(tar) };
    layers.push(layer);
    await writeBlob(dir, layer);
  }
  const config = blob(
    OCI.config,
    json({
      created: '2024-01-01T00:00:00Z',
      architecture: platform.architecture,
      os: platform.os,
      ...(platform.variant !== undefined ? { variant: platform.variant } : {}),
      config: { ...(options.user !== undefined ? { User: options.user } : {}), Env: ['PATH=/usr/bin:/bin'], Labels: { seed: String(seed) } },
      rootfs: { type: 'layers', diff_ids: layers.map((l) => l.diffId) },
      history: layers.map(() => ({ created: '2024-01-01T00:00:00Z', created_by: 'pullguard test' })),
    }),
  );
  await writeBlob(dir, config);
  const manifest = blob(
    OCI.manifest,
    json({
      schemaVersion: 2,
      mediaType: OCI.manifest,
      config: { mediaType: config.mediaType, digest: config.digest, size: config.size },
      layers: layers.map((l) => ({ mediaType: l.mediaType, digest: l.digest, size: l.size })),
    }),
  );
  await writeBlob(dir, manifest);
  return { dir, tag: options.tag, manifestDigest: manifest.digest, manifest, configDigest: config.digest, config, layers, platform };
}

interface IndexJson {
  schemaVersion: 2;
  manifests: { mediaType: string; digest: string; size: number; annotations?: Record<string, string>; platform?: PlatformSpec }[];
}

async function addToIndexJson(dir: string, entry: IndexJson['manifests'][number]): Promise<void> {
  let index: IndexJson;
  try {
    index = JSON.parse(await readFile(join(dir, 'index.json'), 'utf8')) as IndexJson;
  } catch {
    index = { schemaVersion: 2, manifests: [] };
  }
  const tag = entry.annotations?.['org.opencontainers.image.ref.name'];
  index.manifests = index.manifests.filter((m) => m.annotations?.['org.opencontainers.image.ref.name'] !== tag);
  index.manifests.push(entry);
  await writeFile(join(dir, 'index.json'), JSON.stringify(index));
  await writeFile(join(dir, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
}

/** One single-platform image tagged `tag` in the layout at `dir` (created if missing; other tags kept). */
export async function buildOciImage(dir: string, options: BuildImageOptions): Promise<BuiltImage> {
  await mkdir(dir, { recursive: true });
  const image = await writeImageBlobs(dir, options);
  await addToIndexJson(dir, {
    mediaType: OCI.manifest,
    digest: image.manifestDigest,
    size: image.manifest.size,
    annotations: { 'org.opencontainers.image.ref.name': options.tag },
  });
  return image;
}

export interface BuildIndexOptions {
  readonly tag: string;
  readonly platforms: readonly PlatformSpec[];
  /** Layers per platform image (default one 2 KiB layer). */
  readonly layers?: readonly LayerSpec[];
  readonly user?: string;
  readonly seed?: number;
}

/** A multi-platform OCI index tagged `tag`; each platform gets different layer content. */
export async function buildOciIndex(dir: string, options: BuildIndexOptions): Promise<BuiltIndex> {
  await mkdir(dir, { recursive: true });
  const images: BuiltImage[] = [];
  const seed = options.seed ?? 1;
  for (const [i, platform] of options.platforms.entries()) {
    images.push(
      await writeImageBlobs(dir, {
        tag: options.tag,
        layers: options.layers ?? [{ size: 2048 }],
        platform,
        seed: seed * 100 + i + 1,
        ...(options.user !== undefined ? { user: options.user } : {}),
      }),
    );
  }
  const index = blob(
    OCI.index,
    json({
      schemaVersion: 2,
      mediaType: OCI.index,
      manifests: images.map((img) => ({ mediaType: OCI.manifest, digest: img.manifestDigest, size: img.manifest.size, platform: img.platform })),
    }),
  );
  await writeBlob(dir, index);
  await addToIndexJson(dir, {
    mediaType: OCI.index,
    digest: index.digest,
    size: index.size,
    annotations: { 'org.opencontainers.image.ref.name': options.tag },
  });
  return { dir, tag: options.tag, indexDigest: index.digest, index, images };
}

/**
 * An image that copies `victim`'s config byte for byte (configs are public) around layers of its
 * own: the same CRI image id (the config digest), another manifest, other content. Tagged `tag` in
 * the layout at `dir`.
 */
export async function buildImpostorImage(dir: string, victim: BuiltImage, options: { tag: string; seed: number }): Promise<BuiltImage> {
  await mkdir(dir, { recursive: true });
  const layer: BuiltLayer = (() => {
    const tar = tarFiles({ 'evil.bin': seededBytes(3_000, options.seed) });
    return { ...blob(OCI.layerGzip, new Uint8Array(gzipSync(tar, { level: 1 }))), diffId: sha256(tar) };
  })();
  await writeBlob(dir, layer);
  await writeBlob(dir, victim.config);
  const manifest = blob(
    OCI.manifest,
    json({
      schemaVersion: 2,
      mediaType: OCI.manifest,
      config: { mediaType: victim.config.mediaType, digest: victim.config.digest, size: victim.config.size },
      layers: [{ mediaType: layer.mediaType, digest: layer.digest, size: layer.size }],
    }),
  );
  await writeBlob(dir, manifest);
  await addToIndexJson(dir, {
    mediaType: OCI.manifest,
    digest: manifest.digest,
    size: manifest.size,
    annotations: { 'org.opencontainers.image.ref.name': options.tag },
  });
  return {
    dir,
    tag: options.tag,
    manifestDigest: manifest.digest,
    manifest,
    configDigest: victim.config.digest,
    config: victim.config,
    layers: [layer],
    platform: victim.platform,
  };
}
