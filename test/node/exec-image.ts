/**
 * OCI layouts whose one layer holds a static executable (the node's pause and app programs built by
 * `.ci/build-peers nodebins`), with the config's Entrypoint pointing at it, for skopeo to push:
 *
 *   const img = await buildExecImage(dir, { tag: 'v1', binary: '/…/bin/app', path: 'app', env: ['PULLGUARD_APP_MESSAGE=signed'] });
 *   await pushImage(img.dir, 'signed:v1', registry);       // test/helpers/registry.ts
 *
 * The tar is written here (test/helpers/oci-image.ts writes mode 0644 files only); mtimes are 0, so
 * the same inputs give the same digests.
 */
import { createHash } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';

export interface ExecImage {
  readonly dir: string;
  readonly tag: string;
  readonly manifestDigest: string;
  readonly configDigest: string;
}

function digest(bytes: Uint8Array): string {
  return `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
}

function header(path: string, size: number, mode: number, type: '0' | '5'): Buffer {
  const h = Buffer.alloc(512);
  h.write(path, 0, 'utf8');
  h.write(`${mode.toString(8).padStart(7, '0')}\0`, 100);
  h.write('0000000\0', 108);
  h.write('0000000\0', 116);
  h.write(`${size.toString(8).padStart(11, '0')}\0`, 124);
  h.write('00000000000\0', 136);
  h.write('        ', 148);
  h.write(type, 156);
  h.write('ustar\0', 257);
  h.write('00', 263);
  let sum = 0;
  for (const b of h) sum += b;
  h.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148);
  return h;
}

/** A tar of directories (mode 0755) and files (`mode` given per file). */
export function tarTree(entries: readonly { path: string; content?: Uint8Array; mode?: number }[]): Uint8Array {
  const blocks: Buffer[] = [];
  for (const entry of entries) {
    if (entry.content === undefined) {
      blocks.push(header(entry.path.endsWith('/') ? entry.path : `${entry.path}/`, 0, entry.mode ?? 0o755, '5'));
      continue;
    }
    blocks.push(header(entry.path, entry.content.length, entry.mode ?? 0o644, '0'), Buffer.from(entry.content));
    const pad = (512 - (entry.content.length % 512)) % 512;
    if (pad > 0) blocks.push(Buffer.alloc(pad));
  }
  blocks.push(Buffer.alloc(1024));
  return new Uint8Array(Buffer.concat(blocks));
}

async function writeBlob(dir: string, bytes: Uint8Array): Promise<string> {
  const d = digest(bytes);
  await mkdir(join(dir, 'blobs', 'sha256'), { recursive: true });
  await writeFile(join(dir, 'blobs', 'sha256', d.slice(7)), bytes);
  return d;
}

export async function buildExecImage(
  dir: string,
  options: { tag: string; binary: string; path: string; env?: readonly string[]; args?: readonly string[] },
): Promise<ExecImage> {
  await mkdir(dir, { recursive: true });
  const program = new Uint8Array(await readFile(options.binary));
  // etc/ and tmp/ exist in every image a runtime expects to bind /etc/hosts etc. into.
  const tar = tarTree([
    { path: 'etc' },
    { path: 'tmp', mode: 0o1777 },
    { path: 'dev' },
    { path: 'proc' },
    { path: 'sys' },
    { path: options.path, content: program, mode: 0o755 },
  ]);
  const layer = new Uint8Array(gzipSync(tar, { level: 6 }));
  const layerDigest = await writeBlob(dir, layer);
  const config = Buffer.from(
    JSON.stringify({
      created: '2024-01-01T00:00:00Z',
      architecture: 'amd64',
      os: 'linux',
      config: { Entrypoint: [`/${options.path}`], Cmd: [...(options.args ?? [])], Env: ['PATH=/', ...(options.env ?? [])], WorkingDir: '/' },
      rootfs: { type: 'layers', diff_ids: [digest(tar)] },
      history: [{ created: '2024-01-01T00:00:00Z', created_by: 'pullguard node harness' }],
    }),
  );
  const configDigest = await writeBlob(dir, config);
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: configDigest, size: config.length },
      layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: layerDigest, size: layer.length }],
    }),
  );
  const manifestDigest = await writeBlob(dir, manifest);
  await writeFile(
    join(dir, 'index.json'),
    JSON.stringify({
      schemaVersion: 2,
      manifests: [
        {
          mediaType: 'application/vnd.oci.image.manifest.v1+json',
          digest: manifestDigest,
          size: manifest.length,
          annotations: { 'org.opencontainers.image.ref.name': options.tag },
        },
      ],
    }),
  );
  await writeFile(join(dir, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  return { dir, tag: options.tag, manifestDigest, configDigest };
}
