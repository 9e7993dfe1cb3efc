/**
 * Runtime fetches (backend mode's default): pullguard decides on the manifest, keeps manifests,
 * config and signatures, and the real containerd (Debian's 1.6 and 2.x from its module) pulls
 * `name@<verified digest>` from its own registry configuration. The bytes cross the node once.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CriImage } from '../../../src/cri/cri-types.js';
import type { Digest } from '../../../src/domain/digest.js';
import { containerdUnavailableReason, startContainerd, type RunningContainerd } from '../../helpers/containerd.js';
import { startFaultRegistry, type FaultRegistry } from '../../helpers/fault-registry.js';
import { buildOciImage, type BuiltImage } from '../../helpers/oci-image.js';
import { pushArtifact, type PushedArtifact } from '../../helpers/oras.js';
import { pushImage, startRegistry, type StartedRegistry } from '../../helpers/registry.js';
import { startPullguard, startStoreAndMirror, verdict, type PullguardStack } from './pullguard-stack.js';

const notRoot = process.getuid?.() !== 0;
const USER = { username: 'puller', password: 'pull-secret-1' };

describe.each(['1.6', '2'] as const)('runtime fetches the verified digest itself: containerd %s', (release) => {
  const unavailable = containerdUnavailableReason(release);
  describe.skipIf(notRoot)(notRoot ? `skipped: ${unavailable}` : 'as root', () => {
    let dir: string;
    let registry: StartedRegistry;
    let secured: StartedRegistry;
    let faulty: FaultRegistry;
    let containerd: RunningContainerd;
    let pg: PullguardStack;
    let app: BuiltImage;
    let denied: BuiltImage;
    let moving: BuiltImage;
    let movedTo: BuiltImage;
    let corrupt: BuiltImage;
    let privateImage: BuiltImage;
    let artifact: PushedArtifact;
    /** Runs inside the signature phase of the next pull of that repository (then cleared). */
    const duringVerdict = new Map<string, () => Promise<void>>();

    beforeAll(async () => {
      if (unavailable !== undefined) throw new Error(`containerd ${release} cannot run: ${unavailable}`);
      dir = await mkdtemp(join(tmpdir(), 'pullguard-rtfetch-'));
      const seed = release === '2' ? 200 : 100; // each release's containerd sees images of its own
      app = await buildOciImage(join(dir, 'app'), {
        tag: 'v1',
        layers: [{ size: 40_000 }, { files: { 'etc/motd': 'verified\n' } }],
        user: '1000',
        seed: seed + 1,
      });
      denied = await buildOciImage(join(dir, 'denied'), { tag: 'v1', layers: [{ size: 5_000 }], seed: seed + 2 });
      moving = await buildOciImage(join(dir, 'moving'), { tag: 'v1', layers: [{ size: 6_000 }], seed: seed + 3 });
      movedTo = await buildOciImage(join(dir, 'moved'), { tag: 'v1', layers: [{ size: 7_000 }], seed: seed + 4 });
      corrupt = await buildOciImage(join(dir, 'corrupt'), { tag: 'v1', layers: [{ size: 8_000 }], seed: seed + 5 });
      privateImage = await buildOciImage(join(dir, 'private'), { tag: 'v1', layers: [{ size: 9_000 }], seed: seed + 6 });
      registry = await startRegistry();
      secured = await startRegistry({ auth: 'htpasswd', users: { [USER.username]: USER.password } });
      await pushImage(app.dir, 'team/app:v1', registry, { layoutTag: 'v1' });
      await pushImage(denied.dir, 'team/denied:v1', registry, { layoutTag: 'v1' });
      await pushImage(moving.dir, 'team/moving:v1', registry, { layoutTag: 'v1' });
      await pushImage(privateImage.dir, 'team/private:v1', secured, { layoutTag: 'v1', creds: USER });
      artifact = await pushArtifact(
        registry.host,
        'team/volume:v1',
        { 'model.bin': `weights for containerd ${release}\n` },
        { artifactType: 'application/vnd.pullguard.test.model.v1' },
      );
      faulty = await startFaultRegistry();
      faulty.addImage('team/corrupt', 'v1', corrupt);
      // Whoever asks for the layer gets other bytes: pullguard never does (it fetches no layer).
      faulty.fault(corrupt.layers[0]!.digest, ...Array.from({ length: 10 }, () => ({ kind: 'corrupt' as const })));
      const base = await startStoreAndMirror();
      // No mirror: containerd reaches each registry directly (plain HTTP on loopback).
      containerd = await startContainerd({ release, plainHttp: [registry.host, secured.host, faulty.host] });
      pg = await startPullguard({
        base,
        fetchMode: 'runtime',
        registryHosts: [registry.host, secured.host, faulty.host],
        backendEndpoint: containerd.endpoint,
        signaturePhase: async ({ image }) => {
          const hook = duringVerdict.get(image.reference.path);
          duringVerdict.delete(image.reference.path);
          await hook?.();
          return { verdict: verdict(!image.reference.path.includes('denied')), signatures: [] };
        },
      });
    }, 180_000);

    afterAll(async () => {
      await pg?.close();
      await containerd?.destroy();
      await Promise.all([registry?.stop(), secured?.stop(), faulty?.stop()]);
      if (dir !== undefined) await rm(dir, { recursive: true, force: true });
    });

    const viaPullguard = <T>(rpc: Parameters<PullguardStack['client']['call']>[0], request: unknown): Promise<T> =>
      pg.client.call<T>(rpc, request, { deadlineMs: 60_000 });
    const inContainerd = async (): Promise<CriImage[]> => (await containerd.cri.call<{ images: CriImage[] }>('ListImages', {}, { deadlineMs: 10_000 })).images;
    const failureOf = (p: Promise<unknown>): Promise<grpc.ServiceError | undefined> =>
      p.then(
        () => undefined,
        (e: grpc.ServiceError) => e,
      );

    it("lands the verified digest in containerd under the user's tag; pullguard keeps no layer", async () => {
      const tag = `${registry.host}/team/app:v1`;
      const pulled = await viaPullguard<{ image_ref: string }>('PullImage', { image: { image: tag } });
      expect(pulled.image_ref).toBe(app.configDigest);
      const image = (await inContainerd()).find((i) => i.id === app.configDigest);
      expect(image?.repo_digests).toContain(`${registry.host}/team/app@${app.manifestDigest}`);
      const status = await viaPullguard<{ image: CriImage }>('ImageStatus', { image: { image: tag } });
      expect(status.image.id).toBe(app.configDigest);
      expect(status.image.repo_tags).toContain(tag);
      // Manifest, config and the record in pullguard's store; the layers only in containerd.
      const record = pg.store.images.resolve(tag);
      expect(record?.layersStored).toBe(false);
      expect(await pg.store.blobs.has(app.manifestDigest as Digest)).toBe(true);
      expect(await pg.store.blobs.has(app.configDigest as Digest)).toBe(true);
      for (const layer of app.layers) expect(await pg.store.blobs.has(layer.digest as Digest), layer.digest).toBe(false);
      // GC keeps what the record needs and nothing else it does not.
      await pg.store.images.collectGarbage();
      expect(await pg.store.blobs.has(app.manifestDigest as Digest)).toBe(true);
    });

    it("an OCI artifact (an image volume's content, pushed by oras) is verified, then containerd does what it does with artifacts", async () => {
      const tag = `${registry.host}/team/volume:v1`;
      const answer = await viaPullguard<{ image_ref: string }>('PullImage', { image: { image: tag } }).then(
        (r) => r,
        (e: grpc.ServiceError) => e,
      );
      const EMPTY_CONFIG = 'sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a';
      if (release === '1.6') {
        // containerd 1.6 unpacks whatever it pulls, and an artifact has no rootfs: its error, and nothing recorded.
        expect(answer).toMatchObject({ code: 2, details: expect.stringContaining('mismatched image rootfs and manifest layers') });
        expect(pg.store.images.resolve(tag)).toBeUndefined();
        return;
      }
      // containerd 2 keeps it, named by its config digest (the empty config's, shared by such artifacts);
      // pullguard names it by its manifest and answers with containerd's id, its tag merged in.
      expect(answer).toEqual({ image_ref: EMPTY_CONFIG });
      const record = pg.store.images.resolve(tag);
      expect(record).toMatchObject({ id: artifact.digest, configDigest: EMPTY_CONFIG, layersStored: false });
      const status = await viaPullguard<{ image: CriImage }>('ImageStatus', { image: { image: tag } });
      expect(status.image.id).toBe(EMPTY_CONFIG);
      expect(status.image.repo_tags).toContain(tag);
      expect((await viaPullguard<{ images: CriImage[] }>('ListImages', {})).images.find((i) => i.id === EMPTY_CONFIG)?.repo_tags).toContain(tag);
      await viaPullguard('RemoveImage', { image: { image: tag } });
      expect((await inContainerd()).some((i) => i.id === EMPTY_CONFIG)).toBe(false);
      expect(pg.store.images.resolve(tag)).toBeUndefined();
    });

    it('never lets a denied image reach containerd', async () => {
      const err = await failureOf(viaPullguard('PullImage', { image: { image: `${registry.host}/team/denied:v1` } }));
      expect(err?.details).toMatch(/^SignatureValidationFailed: /);
      expect((await inContainerd()).some((i) => i.id === denied.configDigest)).toBe(false);
      expect(pg.store.images.resolve(`${registry.host}/team/denied:v1`)).toBeUndefined();
    });

    it("a tag moved to other content between pullguard's resolve and the runtime's pull still yields the verified digest", async () => {
      const tag = `${registry.host}/team/moving:v1`;
      duringVerdict.set('team/moving', async () => {
        await pushImage(movedTo.dir, 'team/moving:v1', registry, { layoutTag: 'v1' });
      });
      const pulled = await viaPullguard<{ image_ref: string }>('PullImage', { image: { image: tag } });
      expect(pulled.image_ref).toBe(moving.configDigest);
      const images = await inContainerd();
      expect(images.find((i) => i.id === moving.configDigest)?.repo_digests).toContain(`${registry.host}/team/moving@${moving.manifestDigest}`);
      expect(images.some((i) => i.id === movedTo.configDigest)).toBe(false);
    });

    it("a registry answering the pinned digest with other bytes fails the runtime's pull, and nothing is recorded", async () => {
      const tag = `${faulty.host}/team/corrupt:v1`;
      const err = await failureOf(viaPullguard('PullImage', { image: { image: tag } }));
      expect(err).toBeDefined();
      expect(err?.details).toMatch(/digest/i);
      console.log(`containerd ${release} on other bytes: ${err?.details}`);
      expect(pg.store.images.resolve(tag)).toBeUndefined();
      expect(pg.store.images.list().some((r) => r.id === corrupt.configDigest)).toBe(false);
      expect((await inContainerd()).some((i) => i.id === corrupt.configDigest)).toBe(false);
    });

    it("the request's credentials reach the runtime (registry with htpasswd)", async () => {
      const tag = `${secured.host}/team/private:v1`;
      const anonymous = await failureOf(viaPullguard('PullImage', { image: { image: tag } }));
      expect(anonymous?.details).toMatch(/unauthori[sz]ed|authentication required/i);
      const pulled = await viaPullguard<{ image_ref: string }>('PullImage', { image: { image: tag }, auth: USER });
      expect(pulled.image_ref).toBe(privateImage.configDigest);
      expect((await inContainerd()).find((i) => i.id === privateImage.configDigest)?.repo_digests).toContain(
        `${secured.host}/team/private@${privateImage.manifestDigest}`,
      );
      // Whatever the outcome, no credential in containerd's log or pullguard's answers.
      expect(containerd.log()).not.toContain(USER.password);
    });
  });
});
