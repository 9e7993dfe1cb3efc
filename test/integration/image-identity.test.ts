/**
 * An image is its manifest. A config blob is public, so anyone can publish another manifest around
 * a byte-for-byte copy of a signed image's config (the CRI image id) under a repository whose
 * policy is permissive. The sequence from the report, through the real server (direct mode), with
 * a real skopeo/gpg signature: the impostor is refused and takes over nothing — not the signed
 * tag's status, not its record, not its blobs at the next GC; fsck and verify agree afterwards.
 * (Backend mode and the mirror: test/integration/containerd/containerd-backend.test.ts.)
 */
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CriImage } from '../../src/cri/cri-types.js';
import { useLookasideServer } from '../helpers/lookaside-server.js';
import { buildImpostorImage, buildOciImage, type BuiltImage } from '../helpers/oci-image.js';
import { MAIN, startPullguard, type RunningPullguard } from '../helpers/pullguard-server.js';
import { pushImage, startRegistry, type StartedRegistry } from '../helpers/registry.js';
import { createGpgSigner, pushSignedImage, type GpgSigner } from '../helpers/signed-images.js';

const execFileAsync = promisify(execFile);
const lookaside = useLookasideServer();

describe('a copied config takes over nothing (direct mode)', () => {
  let work: string;
  let stateDir: string;
  let registry: StartedRegistry;
  let signer: GpgSigner;
  let signed: BuiltImage;
  let signature: { repoPath: string; manifestDigest: string; bytes: Uint8Array };
  let policy: string;
  let registriesD: string;
  let server: RunningPullguard;

  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), 'pullguard-identity-'));
    stateDir = join(work, 'state');
    [registry, signer] = await Promise.all([startRegistry(), createGpgSigner('Identity Signer')]);
    signed = await buildOciImage(join(work, 'small'), { tag: 'v2', layers: [{ size: 20_000 }, { files: { 'etc/motd': 'signed\n' } }], user: '1000', seed: 21 });
    const push = await pushSignedImage(signed.dir, 'test/small:v2', registry, signer);
    signature = { repoPath: push.repoPath, manifestDigest: push.manifestDigest, bytes: push.signatures[0]! };
    // test/ must be signed; attacker/ is a permissive scope (another team's, say).
    policy = join(work, 'policy.json');
    await writeFile(
      policy,
      JSON.stringify({
        default: [{ type: 'reject' }],
        transports: {
          docker: {
            [`${registry.host}/test`]: [{ type: 'signedBy', keyType: 'GPGKeys', keyPath: signer.publicKeyPath }],
            [`${registry.host}/attacker`]: [{ type: 'insecureAcceptAnything' }],
          },
        },
      }),
    );
    registriesD = join(work, 'registries.d');
    await mkdir(registriesD);
    await writeFile(join(registriesD, 'lookaside.yaml'), `docker:\n  ${registry.host}:\n    lookaside: ${lookaside.url}\n`);
    server = await startPullguard({ stateDir, args: ['--signature-policy', policy, '--registries-d', registriesD, '--insecure-registry', registry.host] });
  }, 120_000);

  afterAll(async () => {
    await server?.stop({ keepState: true });
    await Promise.all([registry?.stop(), signer?.dispose()]);
    await rm(work, { recursive: true, force: true });
  });

  const status = async (image: string): Promise<CriImage | null> =>
    (await server.client.call<{ image: CriImage | null }>('ImageStatus', { image: { image } })).image ?? null;

  it('refuses the impostor, keeps the signed image whole through GC, and fsck and verify agree', async () => {
    const signedTag = `${registry.host}/test/small:v2`;
    await lookaside.writeSignature(signature.repoPath, signature.manifestDigest, 1, signature.bytes); // the lookaside is reset before each test
    const pulled = await server.client.call<{ image_ref: string }>('PullImage', { image: { image: signedTag } });
    expect(pulled.image_ref).toBe(signed.configDigest);
    const before = await status(signedTag);
    expect(before?.repo_tags).toEqual([signedTag]);

    const impostor = await buildImpostorImage(join(work, 'impostor'), signed, { tag: 'v1', seed: 66 });
    await pushImage(impostor.dir, 'attacker/evil:v1', registry, { layoutTag: 'v1' });
    const evilTag = `${registry.host}/attacker/evil:v1`;
    const refused = await server.client.call('PullImage', { image: { image: evilTag } }).then(
      () => undefined,
      (e: grpc.ServiceError) => e,
    );
    expect(refused?.details).toBe(
      `${evilTag} resolves to manifest ${impostor.manifestDigest}, whose config is that of the stored image ${signedTag} (id ${signed.configDigest}, ` +
        `manifest ${signed.manifestDigest}) while its manifest is not: refused, so that one image cannot stand in for the other; if both are genuine, remove the stored one first`,
    );

    expect(await status(signedTag)).toEqual(before);
    expect(await status(evilTag)).toBeNull();

    // A GC: pull an unrelated permitted image and remove it (RemoveImage collects garbage).
    const other = await buildOciImage(join(work, 'other'), { tag: 'v1', layers: [{ size: 1_000 }], seed: 23 });
    await pushImage(other.dir, 'attacker/other:v1', registry, { layoutTag: 'v1' });
    await server.client.call('PullImage', { image: { image: `${registry.host}/attacker/other:v1` } });
    await server.client.call('RemoveImage', { image: { image: `${registry.host}/attacker/other:v1` } });
    expect(await status(signedTag)).toEqual(before);

    await server.stop({ keepState: true });
    const fsck = await execFileAsync(process.execPath, [MAIN, 'fsck', '--state-dir', stateDir, '--json']);
    expect(JSON.parse(fsck.stdout)).toMatchObject({ ok: true, brokenRecords: [], corruptBlobs: [] });
    const verify = await execFileAsync(process.execPath, [MAIN, 'verify', signedTag, '--state-dir', stateDir, '--signature-policy', policy]).catch(
      (err: { stdout: string; stderr: string; code: number }) => err,
    );
    expect(`${verify.stdout}${verify.stderr}`).not.toMatch(/NOT SATISFIED/);
    expect('code' in verify ? verify.code : 0).toBe(0);
  });
});
