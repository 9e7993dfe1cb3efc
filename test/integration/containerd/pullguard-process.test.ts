/**
 * The node set-up end to end: the real `pullguard serve --backend … --mirror-address …` process in
 * front of the real containerd, with a real signature policy. A signed image whose signature-2 is an
 * HTML page reaches containerd under the user's tag; an unsigned one is refused and never reaches it.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { containerdUnavailableReason, startContainerd, type RunningContainerd } from '../../helpers/containerd.js';
import { startLookasideServer, type LookasideServer } from '../../helpers/lookaside-server.js';
import { buildOciImage, type BuiltImage } from '../../helpers/oci-image.js';
import { startPullguard, type RunningPullguard } from '../../helpers/pullguard-server.js';
import { freePort, pushImage, startRegistry, type StartedRegistry } from '../../helpers/registry.js';
import { createGpgSigner, pushSignedImage, type GpgSigner, type SignedPush } from '../../helpers/signed-images.js';
import { writeSigningConfig } from '../../helpers/signing-config.js';

const unavailable = containerdUnavailableReason();

describe.skipIf(unavailable !== undefined)(`pullguard serve --backend containerd${unavailable ? ` (skipped: ${unavailable})` : ''}`, () => {
  let work: string;
  let registry: StartedRegistry;
  let lookaside: LookasideServer;
  let signer: GpgSigner;
  let image: BuiltImage;
  let signed: SignedPush;
  let containerd: RunningContainerd;
  let pullguard: RunningPullguard;

  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), 'pullguard-node-'));
    [registry, lookaside, signer] = await Promise.all([startRegistry(), startLookasideServer(), createGpgSigner('Node Signer')]);
    image = await buildOciImage(join(work, 'app'), { tag: 'v1', layers: [{ size: 30_000 }, { files: { 'etc/hostname': 'app' } }], seed: 71 });
    signed = await pushSignedImage(image.dir, 'app:v1', registry, signer);
    const unsigned = await buildOciImage(join(work, 'unsigned'), { tag: 'v1', layers: [{ size: 2_000 }], seed: 72 });
    await pushImage(unsigned.dir, 'unsigned:v1', registry);
    await lookaside.writeSignature(signed.repoPath, signed.manifestDigest, 1, signed.signatures[0]!);
    await lookaside.writeSignature(signed.repoPath, signed.manifestDigest, 2, signed.signatures[0]!);
    lookaside.fault(2, { html: true });

    const mirrorPort = await freePort();
    containerd = await startContainerd({ mirrors: { [registry.host]: `http://127.0.0.1:${mirrorPort}` } });
    const { policy, registriesD } = await writeSigningConfig(work, { publicKeyPath: signer.publicKeyPath, lookasideUrl: lookaside.url });
    pullguard = await startPullguard({
      args: [
        '--signature-policy',
        policy,
        '--registries-d',
        registriesD,
        '--insecure-registry',
        registry.host,
        '--backend',
        containerd.endpoint,
        '--runtime-fetch',
        'mirror',
        '--mirror-address',
        `127.0.0.1:${mirrorPort}`,
      ],
    });
  }, 180_000);

  afterAll(async () => {
    await pullguard?.stop();
    await containerd?.destroy();
    await Promise.all([registry?.stop(), lookaside?.stop(), signer?.dispose()]);
    await rm(work, { recursive: true, force: true });
  });

  it('hands a verified pull to containerd pinned by digest, keeping the user tag through pullguard', async () => {
    const { image_ref } = await pullguard.client.call<{ image_ref: string }>('PullImage', { image: { image: `${registry.host}/app:v1` } });
    expect(image_ref).toBe(image.configDigest);
    const inRuntime = await containerd.cri.call<{ image: { id: string; repo_digests: string[] } | null }>('ImageStatus', {
      image: { image: image.configDigest },
    });
    expect(inRuntime.image?.id).toBe(image.configDigest);
    expect(inRuntime.image?.repo_digests).toContain(`${registry.host}/app@${signed.manifestDigest}`);
    const throughPullguard = await pullguard.client.call<{ image: { id: string; repo_tags: string[] } | null }>('ImageStatus', {
      image: { image: `${registry.host}/app:v1` },
    });
    expect(throughPullguard.image).toMatchObject({ id: image.configDigest, repo_tags: [`${registry.host}/app:v1`] });
    const fs = await pullguard.client.call<{ image_filesystems: { fs_id: { mountpoint: string } }[] }>('ImageFsInfo', {});
    const runtimeFs = await containerd.cri.call<{ image_filesystems: { fs_id: { mountpoint: string } }[] }>('ImageFsInfo', {});
    expect(fs.image_filesystems[0]?.fs_id.mountpoint).toBe(runtimeFs.image_filesystems[0]?.fs_id.mountpoint);
  });

  it('refuses an unsigned image with SignatureValidationFailed, and containerd never sees it', async () => {
    const err = (await pullguard.client
      .call('PullImage', { image: { image: `${registry.host}/unsigned:v1` } })
      .catch((e: grpc.ServiceError) => e)) as grpc.ServiceError;
    expect(err.details).toMatch(/^SignatureValidationFailed: /);
    const list = await containerd.cri.call<{ images: { repo_digests: string[] }[] }>('ListImages', {});
    expect(list.images.flatMap((i) => i.repo_digests).some((d) => d.startsWith(`${registry.host}/unsigned@`))).toBe(false);
  });
});
