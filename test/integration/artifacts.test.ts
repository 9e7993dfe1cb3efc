/**
 * OCI artifacts as kubelet pulls them for image volumes (KEP-4639), pushed to the real registry by
 * the real `oras` (built from its module, .ci/build-peers), signed by real gpg (`skopeo
 * standalone-sign` over the manifest oras pushed) and by real cosign, pulled through the real
 * `pullguard serve`. An artifact is judged exactly as an image is: a volume is no way around the
 * policy.
 */
import type { CriImage } from '../../src/cri/cri-types.js';
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cosignEnvironment } from '../helpers/cosign.js';
import { startLookasideServer, type LookasideServer } from '../helpers/lookaside-server.js';
import { pushArtifact, type ArtifactOptions, type PushedArtifact } from '../helpers/oras.js';
import { PEERS, peerBinary, peerUnavailableReason } from '../helpers/peers.js';
import { startPullguard, type RunningPullguard } from '../helpers/pullguard-server.js';
import { startRegistry, type StartedRegistry } from '../helpers/registry.js';
import { createGpgSigner, signManifest, type GpgSigner } from '../helpers/signed-images.js';

const execFileAsync = promisify(execFile);
const EMPTY_CONFIG_DIGEST = 'sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a';
const DENIED = 'SignatureValidationFailed: Source image rejected: ';

let work: string;
let registry: StartedRegistry;
let lookaside: LookasideServer;
let signer: GpgSigner;
let pullguard: RunningPullguard;
let cosignEnv: Record<string, string>;
/** repository → what oras pushed as `<repository>:v1`. */
const pushed = new Map<string, PushedArtifact>();

/** Pushes the artifact as `<repository>:v1` with the real oras. */
async function push(repository: string, files: Readonly<Record<string, string>>, options: ArtifactOptions): Promise<void> {
  pushed.set(
    repository,
    await pushArtifact(registry.host, `${repository}:v1`, files, { layerMediaType: 'application/vnd.pullguard.test.weights', ...options }),
  );
}

/** A simple-signing signature by the gpg key, over the manifest as pushed, as `signature-<index>` in the lookaside. */
async function signSimple(repository: string, index = 1): Promise<void> {
  const { digest, manifest } = pushed.get(repository)!;
  await lookaside.writeSignature(repository, digest, index, await signManifest(signer, manifest, `${registry.host}/${repository}:v1`));
}

async function cosignSign(repository: string): Promise<void> {
  const { digest } = pushed.get(repository)!;
  await execFileAsync(
    peerBinary('cosign') as string,
    [
      'sign',
      '--key',
      join(work, 'cosign.key'),
      '--tlog-upload=false',
      '--allow-http-registry',
      '--allow-insecure-registry',
      '--yes',
      `${registry.host}/${repository}@${digest}`,
    ],
    {
      env: cosignEnv,
      cwd: work,
      timeout: 60_000,
    },
  );
}

type Outcome = { imageRef: string; warnings: string[] } | { denial: string };

async function pull(repository: string): Promise<Outcome> {
  const warnings: string[] = [];
  try {
    const response = await pullguard.client.call<{ image_ref: string }>(
      'PullImage',
      { image: { image: `${registry.host}/${repository}:v1` } },
      {
        onTrailers: (md) => warnings.push(...md.get('pullguard-warnings').map(String)),
      },
    );
    return { imageRef: response.image_ref, warnings };
  } catch (err) {
    return { denial: (err as grpc.ServiceError).details };
  }
}

async function status(name: string): Promise<CriImage | null> {
  return (await pullguard.client.call<{ image: CriImage | null }>('ImageStatus', { image: { image: name } })).image;
}

async function listed(): Promise<CriImage[]> {
  return (await pullguard.client.call<{ images: CriImage[] }>('ListImages', {})).images;
}

beforeAll(async () => {
  for (const peer of ['oras', 'cosign'] as const) {
    const missing = peerUnavailableReason(peer);
    if (missing !== undefined) throw new Error(`${peer} ${PEERS[peer]} cannot run: ${missing}`);
  }
  work = await mkdtemp(join(tmpdir(), 'pullguard-artifacts-'));
  cosignEnv = await cosignEnvironment(work);
  [registry, lookaside, signer] = await Promise.all([startRegistry(), startLookasideServer(), createGpgSigner('Artifact Signer')]);
  await execFileAsync(peerBinary('cosign') as string, ['generate-key-pair', '--output-key-prefix', join(work, 'cosign')], { env: cosignEnv, cwd: work });

  const model = { 'model.bin': 'weights, not a tar archive\n' };
  const type = (n: number): ArtifactOptions => ({ artifactType: `application/vnd.pullguard.test.model.v${n}` });
  // Empty config (image-spec v1.1 artifacts): every such artifact has the same config digest.
  await push('volumes/signed', model, type(1));
  await push('volumes/other', { 'other.bin': 'other weights\n' }, type(1));
  await push('volumes/degraded', model, type(2));
  await push('volumes/unsigned', model, type(3));
  // A config of its own, not JSON.
  await push('volumes/own-config', model, { config: { bytes: 'threshold: 0.5\n', mediaType: 'application/vnd.pullguard.test.settings.v1+yaml' } });
  await push('cosigned/model', model, type(1));
  await push('cosigned/unsigned', model, type(4));
  for (const repository of ['volumes/signed', 'volumes/other', 'volumes/degraded', 'volumes/own-config']) await signSimple(repository);
  lookaside.fault(2, { html: true }, 'volumes/degraded');
  await cosignSign('cosigned/model');

  const policy = join(work, 'policy.json');
  const signedBy = [{ type: 'signedBy', keyType: 'GPGKeys', keyPath: signer.publicKeyPath }];
  const sigstoreSigned = [{ type: 'sigstoreSigned', keyPath: join(work, 'cosign.pub'), signedIdentity: { type: 'matchRepository' } }];
  await writeFile(
    policy,
    JSON.stringify({
      default: [{ type: 'reject' }],
      transports: { docker: { [`${registry.host}/volumes`]: signedBy, [`${registry.host}/cosigned`]: sigstoreSigned } },
    }),
  );
  const registriesD = join(work, 'registries.d');
  await mkdir(registriesD);
  await writeFile(
    join(registriesD, 'test.yaml'),
    `docker:\n  ${registry.host}/volumes:\n    lookaside: ${lookaside.url}\n  ${registry.host}/cosigned:\n    use-sigstore-attachments: true\n`,
  );
  pullguard = await startPullguard({ args: ['--signature-policy', policy, '--registries-d', registriesD, '--insecure-registry', registry.host] });
}, 300_000);

afterAll(async () => {
  await pullguard?.stop();
  await Promise.all([registry?.stop(), lookaside?.stop(), signer?.dispose()]);
  if (work !== undefined) await rm(work, { recursive: true, force: true });
});

describe(`OCI artifacts pushed by oras ${PEERS.oras}`, () => {
  it('oras pushed what image volumes carry: an artifactType, the empty config, a layer that is no tar', () => {
    const manifest = JSON.parse(pushed.get('volumes/signed')!.manifest.toString()) as {
      artifactType: string;
      config: { mediaType: string; digest: string };
      layers: { mediaType: string }[];
    };
    expect(manifest.artifactType).toBe('application/vnd.pullguard.test.model.v1');
    expect(manifest.config).toMatchObject({ mediaType: 'application/vnd.oci.empty.v1+json', digest: EMPTY_CONFIG_DIGEST });
    expect(manifest.layers.map((l) => l.mediaType)).toEqual(['application/vnd.pullguard.test.weights']);
  });

  it('a signed artifact is allowed, named by its manifest digest (artifacts share the empty config), with sizes and no user', async () => {
    const { digest, manifest } = pushed.get('volumes/signed')!;
    expect(await pull('volumes/signed')).toEqual({ imageRef: digest, warnings: [] });
    // A second artifact with the same (empty) config is another image, not an id conflict.
    const other = pushed.get('volumes/other')!;
    expect(await pull('volumes/other')).toEqual({ imageRef: other.digest, warnings: [] });
    const image = await status(`${registry.host}/volumes/signed:v1`);
    expect(image).toMatchObject({
      id: digest,
      repo_tags: [`${registry.host}/volumes/signed:v1`],
      repo_digests: [`${registry.host}/volumes/signed@${digest}`],
      size: String(2 + manifest.byteLength + 'weights, not a tar archive\n'.length),
      uid: null,
      username: '',
    });
    expect((await status(digest))?.id).toBe(digest);
    const ids = (await listed()).map((i) => i.id);
    expect(ids).toContain(digest);
    expect(ids).toContain(other.digest);
    expect(ids).not.toContain(EMPTY_CONFIG_DIGEST);
  });

  it('an artifact whose config is its own (not JSON, not an image config) is verified and kept like any other', async () => {
    const { digest } = pushed.get('volumes/own-config')!;
    expect(await pull('volumes/own-config')).toEqual({ imageRef: digest, warnings: [] });
    expect(await status(`${registry.host}/volumes/own-config:v1`)).toMatchObject({ id: digest, uid: null, username: '' });
  });

  it('signature-1 valid and signature-2 an HTML page: allowed with the warning, as an image would be', async () => {
    const outcome = await pull('volumes/degraded');
    expect(outcome).toMatchObject({ imageRef: pushed.get('volumes/degraded')!.digest });
    const warnings = 'warnings' in outcome ? outcome.warnings.join('\n') : '';
    expect(warnings).toContain('PGW001');
    expect(warnings).toContain('signature-2');
    expect(warnings).toContain('0x3c');
  });

  it('an unsigned artifact is denied under signedBy and under sigstoreSigned, and never listed', async () => {
    expect(await pull('volumes/unsigned')).toEqual({ denial: `${DENIED}A signature was required, but no signature exists` });
    const cosignedUnsigned = await pull('cosigned/unsigned');
    expect('denial' in cosignedUnsigned && cosignedUnsigned.denial).toMatch(new RegExp(`^${DENIED}`));
    const ids = (await listed()).map((i) => i.id);
    expect(ids).not.toContain(pushed.get('volumes/unsigned')!.digest);
    expect(ids).not.toContain(pushed.get('cosigned/unsigned')!.digest);
    expect(await status(`${registry.host}/volumes/unsigned:v1`)).toBeNull();
  });

  it('an artifact cosign signed is allowed under sigstoreSigned', async () => {
    const { digest } = pushed.get('cosigned/model')!;
    expect(await pull('cosigned/model')).toEqual({ imageRef: digest, warnings: [] });
  });

  it('RemoveImage removes one artifact; another with the same config stays whole', async () => {
    const signed = pushed.get('volumes/signed')!.digest;
    const other = pushed.get('volumes/other')!.digest;
    await pullguard.client.call('RemoveImage', { image: { image: `${registry.host}/volumes/signed:v1` } });
    expect(await status(signed)).toBeNull();
    expect((await status(other))?.id).toBe(other);
    // Still pullable again, and served from what the store kept for the other one.
    expect(await pull('volumes/signed')).toEqual({ imageRef: signed, warnings: [] });
  });
});
