/**
 * The grpc-go CRI client (as kubelet/crictl dial: bare socket path ≤ 1.30, `localhost` ≥ 1.31)
 * against the real pullguard server: every ImageService RPC, an allowed-with-warnings pull of a
 * skopeo-signed image with a broken signature-2, and a denied pull read the way kubelet reads it.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildGoClient, runGoClient, type DialStyle, type GoClientResult } from '../helpers/go-client.js';
import { startLookasideServer, type LookasideServer } from '../helpers/lookaside-server.js';
import { buildOciImage, type BuiltImage } from '../helpers/oci-image.js';
import { startPullguard, type RunningPullguard } from '../helpers/pullguard-server.js';
import { pushImage, startRegistry, type StartedRegistry } from '../helpers/registry.js';
import { createGpgSigner, pushSignedImage, type GpgSigner, type SignedPush } from '../helpers/signed-images.js';
import { writeSigningConfig } from '../helpers/signing-config.js';

let work: string;
let registry: StartedRegistry;
let lookaside: LookasideServer;
let signer: GpgSigner;
let signed: SignedPush;
let signedImage: BuiltImage;
let pullguard: RunningPullguard;

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'pullguard-go-e2e-'));
  [registry, lookaside, signer] = await Promise.all([startRegistry(), startLookasideServer(), createGpgSigner('Go E2E Signer'), buildGoClient()]);
  signedImage = await buildOciImage(join(work, 'signed'), { tag: 'v1', layers: [{ size: 20_000 }], user: '65532', seed: 31 });
  signed = await pushSignedImage(signedImage.dir, 'signed:v1', registry, signer);
  const unsigned = await buildOciImage(join(work, 'unsigned'), { tag: 'v1', layers: [{ size: 1_000 }], seed: 32 });
  await pushImage(unsigned.dir, 'unsigned:v1', registry);
  await lookaside.writeSignature(signed.repoPath, signed.manifestDigest, 1, signed.signatures[0]!);
  await lookaside.writeSignature(signed.repoPath, signed.manifestDigest, 2, signed.signatures[0]!);
  lookaside.fault(2, { html: true });

  const { policy, registriesD } = await writeSigningConfig(work, { publicKeyPath: signer.publicKeyPath, lookasideUrl: lookaside.url });
  pullguard = await startPullguard({ args: ['--signature-policy', policy, '--registries-d', registriesD, '--insecure-registry', registry.host] });
}, 300_000);

afterAll(async () => {
  await pullguard?.stop();
  await Promise.all([registry?.stop(), lookaside?.stop(), signer?.dispose()]);
  await rm(work, { recursive: true, force: true });
});

function ok(result: GoClientResult): Record<string, unknown> {
  if (!result.ok) throw new Error(`go client call failed: ${JSON.stringify(result)}`);
  return result.response;
}

describe.each<DialStyle>(['bare', 'localhost'])('grpc-go client, %s dial, against pullguard', (dial) => {
  const call = (rpc: Parameters<typeof runGoClient>[0]['rpc'], args: string[] = []): Promise<GoClientResult> =>
    runGoClient({ socket: pullguard.socket, dial, rpc, args });

  it('ImageFsInfo', async () => {
    expect(ok(await call('fsinfo'))).toMatchObject({ image_filesystems: [{ fs_id: { mountpoint: join(pullguard.stateDir, 'store') } }] });
  });

  it('PullImage of a signed image with an HTML signature-2 succeeds (partial sufficiency)', async () => {
    expect(ok(await call('pull', [`${registry.host}/signed:v1`]))).toEqual({ image_ref: signedImage.configDigest });
  });

  it('ImageStatus and ListImages see it with the user’s tag', async () => {
    expect(ok(await call('status', [`${registry.host}/signed:v1`]))).toMatchObject({
      image: { id: signedImage.configDigest, repo_tags: [`${registry.host}/signed:v1`], uid: { value: '65532' } },
    });
    expect(ok(await call('list'))).toMatchObject({ images: [{ id: signedImage.configDigest }] });
  });

  it('a denied PullImage reads as kubelet reads it, with matching details', async () => {
    const result = await call('pull', [`${registry.host}/unsigned:v1`]);
    expect(result.ok).toBe(false);
    const error = result.ok ? undefined : result.error;
    const message = 'SignatureValidationFailed: Source image rejected: A signature was required, but no signature exists';
    expect(error).toMatchObject({
      code: 2,
      message,
      signature_validation_failed: true,
      registry_unavailable: false,
      header: { grpc_status: '2', grpc_message: message, has_details_bin: true },
    });
    expect(error?.details[0]).toMatchObject({
      type_url: 'type.googleapis.com/google.rpc.ErrorInfo',
      reason: 'SIGNATURE_VALIDATION_FAILED',
      domain: 'pullguard',
      metadata: { image: `${registry.host}/unsigned:v1` },
    });
    expect(error?.details[1]).toMatchObject({
      type_url: 'type.googleapis.com/google.rpc.PreconditionFailure',
      violations: [{ type: 'REQUIREMENT_UNSATISFIED' }],
    });
  });

  it('RemoveImage is idempotent', async () => {
    expect(ok(await call('remove', [`${registry.host}/signed:v1`]))).toEqual({});
    expect(ok(await call('remove', [`${registry.host}/signed:v1`]))).toEqual({});
    expect(ok(await call('status', [`${registry.host}/signed:v1`]))).not.toHaveProperty('image.id');
  });
});
