/**
 * OCI artifacts pushed by the real `oras` (built by .ci/build-peers at the version pinned in
 * test/helpers/peers.ts), as publishers of image-volume content push them:
 *
 *   const artifact = await pushArtifact(registry.host, 'volumes/model:v1', { 'model.bin': bytes }, { artifactType: 'application/vnd.example.model.v1' });
 *   artifact.digest     // the manifest digest (CRI image id of an artifact)
 *   artifact.manifest   // the manifest bytes exactly as the registry serves them
 */
import { createHash } from 'node:crypto';
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { PEERS, peerBinary, peerUnavailableReason } from './peers.js';

const execFileAsync = promisify(execFile);

export interface PushedArtifact {
  readonly digest: string;
  readonly manifest: Buffer;
}

export interface ArtifactOptions {
  /** `--artifact-type` (image-spec 1.1: with the empty config). */
  readonly artifactType?: string;
  /** A config of its own instead: its bytes and media type. */
  readonly config?: { readonly bytes: string | Uint8Array; readonly mediaType: string };
  /** Media type of every file's layer. Default: oras's (`application/vnd.oci.image.layer.v1.tar`). */
  readonly layerMediaType?: string;
}

async function oras(args: string[], cwd: string): Promise<string> {
  const missing = peerUnavailableReason('oras');
  if (missing !== undefined) throw new Error(`oras ${PEERS.oras} cannot run: ${missing}`);
  try {
    const { stdout } = await execFileAsync(peerBinary('oras') as string, args, { cwd, env: { PATH: process.env.PATH ?? '', HOME: cwd }, timeout: 60_000 });
    return stdout;
  } catch (err) {
    const e = err as { stdout?: string; stderr?: string; message: string };
    throw new Error(`oras ${args.join(' ')} failed: ${e.stderr ?? ''}${e.stdout ?? ''}${e.message}`);
  }
}

/** Pushes `files` as the layers of an artifact `<registryHost>/<repoAndTag>` (plain HTTP), and reads its manifest back. */
export async function pushArtifact(
  registryHost: string,
  repoAndTag: string,
  files: Readonly<Record<string, string | Uint8Array>>,
  options: ArtifactOptions = {},
): Promise<PushedArtifact> {
  const work = await mkdtemp(join(tmpdir(), 'pullguard-oras-'));
  try {
    const layers: string[] = [];
    for (const [name, bytes] of Object.entries(files)) {
      await writeFile(join(work, name), bytes);
      layers.push(options.layerMediaType !== undefined ? `${name}:${options.layerMediaType}` : name);
    }
    const config: string[] = [];
    if (options.config !== undefined) {
      await writeFile(join(work, '.config'), options.config.bytes);
      config.push('--config', `.config:${options.config.mediaType}`);
    }
    const reference = `${registryHost}/${repoAndTag}`;
    await oras(
      ['push', '--plain-http', reference, ...(options.artifactType !== undefined ? ['--artifact-type', options.artifactType] : []), ...config, ...layers],
      work,
    );
    const manifest = Buffer.from(await oras(['manifest', 'fetch', '--plain-http', reference], work));
    return { digest: `sha256:${createHash('sha256').update(manifest).digest('hex')}`, manifest };
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}
