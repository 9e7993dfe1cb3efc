/**
 * The real `pullguard serve --backend <CRI-O's socket>` in front of the real CRI-O (v1.36.3, built by
 * .ci/build-peers), with CRI-O configured from deploy/crio/ verbatim but for the addresses and
 * installation paths (./deploy-config.ts): its own policy.json accepting what pullguard decides on,
 * no per-namespace policies, a registries.d with no lookaside for the verified scopes and the mirror,
 * and — in mirror mode — registries.conf.d pointing the registry at pullguard's mirror.
 *
 * In both fetch modes: the seed case (signature-2 an HTML page) is allowed with PGW001 and lands in
 * CRI-O's storage (ImageStatus through CRI-O's own socket), read from the lookaside by pullguard only;
 * an unsigned image is denied and never reaches CRI-O's storage; the user's tag is kept; RemoveImage
 * and ImageFsInfo agree with CRI-O. In runtime mode the image also runs — a hostNetwork pod and a
 * container on CRI-O — and a per-namespace policy in CRI-O's own policy dir is shown to undo it at
 * CreateContainer (why deploy/crio keeps that dir empty).
 */
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CriImage } from '../../../src/cri/cri-types.js';
import { crioUnavailableReason, startCrio, type RunningCrio } from '../../helpers/crio.js';
import { startLookasideServer, type LookasideServer } from '../../helpers/lookaside-server.js';
import { buildOciImage, type BuiltImage } from '../../helpers/oci-image.js';
import { PEERS, peerBinary, peerUnavailableReason } from '../../helpers/peers.js';
import { startPullguard, type RunningPullguard } from '../../helpers/pullguard-server.js';
import { freePort, pushImage, startRegistry, type StartedRegistry } from '../../helpers/registry.js';
import { createGpgSigner, pushSignedImage, type GpgSigner, type SignedPush } from '../../helpers/signed-images.js';
import { writeSigningConfig } from '../../helpers/signing-config.js';
import { buildExecImage, type ExecImage } from '../../node/exec-image.js';
import { deployedCrioConfig, type DeployedCrioConfig } from './deploy-config.js';

const notRoot = process.getuid?.() !== 0;
const unavailable = crioUnavailableReason() ?? peerUnavailableReason('nodebins');
const bare = (digest: string): string => digest.replace(/^sha256:/, '');

describe.skipIf(notRoot).each(['runtime', 'mirror'] as const)(`pullguard in front of CRI-O ${PEERS.crio} (--runtime-fetch %s)`, (fetchMode) => {
  let work: string;
  let registry: StartedRegistry;
  let lookaside: LookasideServer;
  let signer: GpgSigner;
  let app: BuiltImage;
  let appSigned: SignedPush;
  let unsigned: BuiltImage;
  let runnable: ExecImage;
  let runnableSigned: SignedPush;
  let deployed: DeployedCrioConfig;
  let crio: RunningCrio;
  let pullguard: RunningPullguard;
  const seed = fetchMode === 'runtime' ? 300 : 400; // each mode's CRI-O sees images of its own

  beforeAll(async () => {
    if (unavailable !== undefined) throw new Error(`CRI-O cannot run: ${unavailable}`);
    work = await mkdtemp(join(tmpdir(), 'pullguard-crio-front-'));
    // RSA: CRI-O built with containers_image_openpgp verifies no EdDSA signature (not that it should here).
    [registry, lookaside, signer] = await Promise.all([
      startRegistry(),
      startLookasideServer(),
      createGpgSigner('CRI-O Front Signer', { algorithm: 'rsa3072' }),
    ]);
    app = await buildOciImage(join(work, 'app'), {
      tag: 'v1',
      layers: [{ size: 40_000 }, { files: { 'etc/motd': 'verified\n' } }],
      user: '1000',
      seed: seed + 1,
    });
    appSigned = await pushSignedImage(app.dir, 'team/app:v1', registry, signer);
    unsigned = await buildOciImage(join(work, 'unsigned'), { tag: 'v1', layers: [{ size: 5_000 }], seed: seed + 2 });
    await pushImage(unsigned.dir, 'team/unsigned:v1', registry);
    runnable = await buildExecImage(join(work, 'runnable'), {
      tag: 'v1',
      binary: peerBinary('nodebins', 'app')!,
      path: 'app',
      env: [`PULLGUARD_APP_MESSAGE=${fetchMode}`],
    });
    runnableSigned = await pushSignedImage(runnable.dir, 'team/runnable:v1', registry, signer);
    const pause = await buildExecImage(join(work, 'pause'), { tag: '1', binary: peerBinary('nodebins', 'pause')!, path: 'pause' });
    await pushImage(pause.dir, 'pause:1', registry);
    for (const pushed of [appSigned, runnableSigned]) {
      await lookaside.writeSignature(pushed.repoPath, pushed.manifestDigest, 1, pushed.signatures[0]!);
      await lookaside.writeSignature(pushed.repoPath, pushed.manifestDigest, 2, pushed.signatures[0]!);
    }
    lookaside.fault(2, { html: true }); // the seed case for every signed image

    const mirrorAddress = `127.0.0.1:${await freePort()}`;
    deployed = await deployedCrioConfig(work, { registry: registry.host, ...(fetchMode === 'mirror' ? { mirror: mirrorAddress } : {}) });
    crio = await startCrio({
      ...deployed.options,
      // Runtime mode: CRI-O fetches from the (plain HTTP) test registry itself. Mirror mode: it may
      // not reach the registry at all (deploy/crio/registries.conf.d's entry for it has no
      // `insecure`), so every pull that succeeds came from pullguard's mirror.
      insecureRegistries: fetchMode === 'runtime' ? [registry.host] : [],
      // CRI-O pulls its sandbox image itself; deploy/crio/policy.json accepts the registry's scope.
      pauseImage: `${registry.host}/pause:1`,
      rootlessOom: true,
    });
    // The drop-in is in effect: CRI-O's policy is deploy/crio/policy.json, not the helper's.
    expect(crio.log()).toContain(`signature_policy = \\"${deployed.policyPath}\\"`);
    const { policy, registriesD } = await writeSigningConfig(work, { publicKeyPath: signer.publicKeyPath, lookasideUrl: lookaside.url, scope: registry.host });
    pullguard = await startPullguard({
      args: [
        '--signature-policy',
        policy,
        '--registries-d',
        registriesD,
        '--insecure-registry',
        registry.host,
        '--backend',
        crio.endpoint,
        '--runtime-fetch',
        fetchMode,
        '--mirror-address',
        mirrorAddress,
      ],
    });
  }, 240_000);

  afterAll(async () => {
    await pullguard?.stop();
    await crio?.destroy();
    await Promise.all([registry?.stop(), lookaside?.stop(), signer?.dispose()]);
    if (work !== undefined) await rm(work, { recursive: true, force: true });
  });

  const viaPullguard = <T>(rpc: Parameters<RunningPullguard['client']['call']>[0], request: unknown, onTrailers?: (md: grpc.Metadata) => void): Promise<T> =>
    pullguard.client.call<T>(rpc, request, { deadlineMs: 120_000, ...(onTrailers ? { onTrailers } : {}) });
  const inCrio = async (): Promise<CriImage[]> => (await crio.cri.call<{ images: CriImage[] }>('ListImages', {}, { deadlineMs: 30_000 })).images;
  const failureOf = (p: Promise<unknown>): Promise<grpc.ServiceError | undefined> =>
    p.then(
      () => undefined,
      (e: grpc.ServiceError) => e,
    );
  const appTag = (): string => `${registry.host}/team/app:v1`;

  it("the seed case: allowed with PGW001, and the image is in CRI-O's storage; only pullguard read the lookaside", async () => {
    const warnings: string[] = [];
    const pulled = await viaPullguard<{ image_ref: string }>('PullImage', { image: { image: appTag() } }, (md) =>
      warnings.push(...md.get('pullguard-warnings').map(String)),
    );
    expect(warnings.join('\n')).toMatch(/^PGW001 .*signature-2 .*unrecognized signature format, starting with binary 0x3c/);
    // CRI-O's image ID (bare hex), which kubelet hands back to CRI-O at CreateContainer.
    expect(pulled.image_ref).toBe(bare(app.configDigest));
    const status = await crio.cri.call<{ image: CriImage | null }>('ImageStatus', {
      image: { image: `${registry.host}/team/app@${appSigned.manifestDigest}` },
    });
    expect(status.image?.id).toBe(bare(app.configDigest));
    expect(status.image?.repo_digests).toContain(`${registry.host}/team/app@${appSigned.manifestDigest}`);
    expect(new Set(lookaside.requests.map((r) => String(r.headers['user-agent']).split('/')[0]))).toEqual(new Set(['pullguard']));
    console.log(
      `${fetchMode}: CRI-O's own ImageStatus of the pinned pull: ${JSON.stringify({ repo_tags: status.image?.repo_tags, repo_digests: status.image?.repo_digests })}`,
    );
  });

  // CRI-O's image ids are bare hex (containerd's `sha256:<hex>`): pullguard matches both, so the
  // user's tag is merged into CRI-O's answers (CRI-O records none for the pinned digest pull).
  it("tags are kept: pullguard answers ImageStatus and ListImages with the user's tag", async () => {
    const status = await viaPullguard<{ image: CriImage | null }>('ImageStatus', { image: { image: appTag() } });
    expect(status.image?.id).toBe(bare(app.configDigest));
    expect(status.image?.repo_tags).toContain(appTag());
    const listed = await viaPullguard<{ images: CriImage[] }>('ListImages', {});
    expect(listed.images.find((i) => i.id === bare(app.configDigest))?.repo_tags).toContain(appTag());
  });

  it("an unsigned image is denied and never reaches CRI-O's storage", async () => {
    const err = await failureOf(viaPullguard('PullImage', { image: { image: `${registry.host}/team/unsigned:v1` } }));
    expect(err?.details).toBe('SignatureValidationFailed: Source image rejected: A signature was required, but no signature exists');
    const images = await inCrio();
    expect(images.some((i) => i.id === bare(unsigned.configDigest))).toBe(false);
    expect(images.flatMap((i) => [...i.repo_tags, ...i.repo_digests]).some((r) => r.includes('/team/unsigned'))).toBe(false);
  });

  it("ImageFsInfo agrees with CRI-O's", async () => {
    const theirs = await crio.cri.call<{ image_filesystems: { fs_id: { mountpoint: string } }[] }>('ImageFsInfo', {});
    const ours = await viaPullguard<{ image_filesystems: { fs_id: { mountpoint: string } }[] }>('ImageFsInfo', {});
    expect(ours.image_filesystems.map((f) => f.fs_id.mountpoint)).toEqual(theirs.image_filesystems.map((f) => f.fs_id.mountpoint));
    expect(theirs.image_filesystems[0]?.fs_id.mountpoint).toBe(join(crio.dir, 'storage/vfs-images'));
  });

  it.runIf(fetchMode === 'runtime')(
    'the image runs on CRI-O: a hostNetwork pod and a container from the image pulled through pullguard',
    async () => {
      const pulled = await viaPullguard<{ image_ref: string }>('PullImage', { image: { image: `${registry.host}/team/runnable:v1` } });
      const pod = join(work, 'pod-default.json');
      await writeFile(
        pod,
        JSON.stringify({
          metadata: { name: 'runs', namespace: 'default', uid: 'uid-runs', attempt: 0 },
          log_directory: join(work, 'pod-logs'),
          linux: { security_context: { namespace_options: { network: 2 } } },
        }),
      );
      await mkdir(join(work, 'pod-logs'), { recursive: true });
      const podId = (await crio.crictl(['runp', pod])).trim();
      const ctr = join(work, 'ctr-default.json');
      // kubelet's CreateContainer names the image by the image_ref PullImage returned.
      await writeFile(
        ctr,
        JSON.stringify({
          metadata: { name: 'app' },
          image: { image: pulled.image_ref, user_specified_image: `${registry.host}/team/runnable:v1` },
          args: ['hello'],
          log_path: 'app.log',
        }),
      );
      const ctrId = (await crio.crictl(['create', podId, ctr, pod])).trim();
      await crio.crictl(['start', ctrId]);
      const deadline = Date.now() + 30_000;
      let logs = '';
      while (Date.now() < deadline && !logs.includes('app: hello runtime')) {
        logs = await crio.crictl(['logs', ctrId]).catch((e: Error) => e.message);
        await new Promise((r) => setTimeout(r, 200));
      }
      expect(logs).toContain('app: hello runtime');
      await crio.crictl(['rmp', '--force', podId]);
    },
    120_000,
  );

  it.runIf(fetchMode === 'runtime')(
    "a per-namespace policy in CRI-O's own policy dir undoes it at CreateContainer (deploy/crio keeps that dir empty)",
    async () => {
      // What OpenShift would write for the namespace: the same signedBy requirement pullguard enforced.
      await writeFile(
        join(deployed.policyDir, 'strict.json'),
        JSON.stringify({
          default: [{ type: 'reject' }],
          transports: { docker: { [registry.host]: [{ type: 'signedBy', keyType: 'GPGKeys', keyPath: signer.publicKeyPath }] } },
        }),
      );
      try {
        const pulled = await viaPullguard<{ image_ref: string }>('PullImage', { image: { image: `${registry.host}/team/runnable:v1` } });
        const pod = join(work, 'pod-strict.json');
        await writeFile(
          pod,
          JSON.stringify({
            metadata: { name: 'strict', namespace: 'strict', uid: 'uid-strict', attempt: 0 },
            log_directory: join(work, 'pod-logs'),
            linux: { security_context: { namespace_options: { network: 2 } } },
          }),
        );
        const podId = (await crio.crictl(['runp', pod])).trim();
        const ctr = join(work, 'ctr-strict.json');
        await writeFile(
          ctr,
          JSON.stringify({
            metadata: { name: 'app' },
            image: { image: pulled.image_ref, user_specified_image: `${registry.host}/team/runnable:v1` },
            log_path: 'app.log',
          }),
        );
        const refused = await crio.crictl(['create', podId, ctr, pod]).then(
          () => undefined,
          (e: Error) => e.message,
        );
        console.log(`CRI-O CreateContainer under a namespace signedBy policy, image pulled through pullguard: ${refused}`);
        // CRI-O re-checks the signatures it stored — none: it read no lookaside, as configured.
        expect(refused?.replaceAll('\\', '')).toContain(
          `checking signature of "${registry.host}/team/runnable:v1": verifying signatures: SignatureValidationFailed: A signature was required, but no signature exists`,
        );
        await crio.crictl(['rmp', '--force', podId]);
      } finally {
        await rm(join(deployed.policyDir, 'strict.json'), { force: true });
      }
    },
    120_000,
  );

  // By CRI-O's own id (bare hex): `sha256:<hex>` is parsed by CRI-O as a short name and refused.
  it('RemoveImage through pullguard removes the image from CRI-O too', async () => {
    await viaPullguard('RemoveImage', { image: { image: appTag() } });
    expect((await inCrio()).some((i) => i.id === bare(app.configDigest))).toBe(false);
    const status = await viaPullguard<{ image: CriImage | null }>('ImageStatus', { image: { image: appTag() } });
    expect(status.image).toBeNull();
  });
});
