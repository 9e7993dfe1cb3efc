/**
 * The backend handlers between a CRI client and a fake runtime (real protocol, exact bytes seen):
 * what pullguard changes (the pinned pull, tags kept for digest pulls) and what it must not
 * (everything else, byte for byte). The registry is the real docker-registry. Last, the real
 * server in backend mode counts its pulls and RPCs as it does in front of nothing.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { identity, imageRpcCodec, type ImageRpc } from '../../../src/backend/cri-wire.js';
import { buildOciImage, type BuiltImage } from '../../helpers/oci-image.js';
import { startPullguard as startServer, type RunningPullguard } from '../../helpers/pullguard-server.js';
import { freePort, pushImage, startRegistry, type StartedRegistry } from '../../helpers/registry.js';
import { startPullguard, startStoreAndMirror, verdict, type PullguardStack } from '../../integration/containerd/pullguard-stack.js';
import { startFakeCriBackend, type FakeCriBackend } from '../backend/fake-cri-backend.js';
import { parseExposition } from '../metrics/exposition.js';

let dir: string;
let registry: StartedRegistry;
let fake: FakeCriBackend;
let pg: PullguardStack;
let app: BuiltImage;
let raw: grpc.Client;
let tag: string;

const decoded = (rpc: ImageRpc, i = 0): Record<string, unknown> =>
  imageRpcCodec(rpc).decodeRequest(fake.received.filter((r) => r.rpc === rpc)[i]!.bytes) as Record<string, unknown>;

function rawCall(rpc: ImageRpc, bytes: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) =>
    raw.makeUnaryRequest(imageRpcCodec(rpc).path, identity, identity, bytes, new grpc.Metadata(), { deadline: Date.now() + 10_000 }, (err, res) =>
      err ? reject(err) : resolve(res!),
    ),
  );
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'pullguard-handlers-'));
  app = await buildOciImage(join(dir, 'app'), { tag: 'v1', layers: [{ size: 2000 }], seed: 5 });
  registry = await startRegistry();
  await pushImage(app.dir, 'team/app:v1', registry, { layoutTag: 'v1' });
  await pushImage(app.dir, 'team/evil:v1', registry, { layoutTag: 'v1' });
  tag = `${registry.host}/team/app:v1`;
  fake = await startFakeCriBackend(join(dir, 'runtime.sock'));
  const base = await startStoreAndMirror();
  pg = await startPullguard({
    base,
    registryHosts: [registry.host],
    backendEndpoint: fake.endpoint,
    signaturePhase: async ({ image }) => ({ verdict: verdict(!image.reference.path.includes('evil')), signatures: [] }),
  });
  raw = new grpc.Client(`unix://${join(base.dir, 'pullguard.sock')}`, grpc.credentials.createInsecure());
});

afterEach(() => {
  fake.received.length = 0;
  fake.answer = () => Buffer.alloc(0);
});

afterAll(async () => {
  raw?.close();
  await pg?.close();
  await fake?.stop();
  await registry?.stop();
  await rm(dir, { recursive: true, force: true });
});

describe('backend handlers', () => {
  it("verifies, then asks the runtime to pull the verified digest with the request's auth, sandbox and annotations", async () => {
    fake.answer = (rpc) => (rpc === 'PullImage' ? imageRpcCodec('PullImage').encodeResponse({ image_ref: app.configDigest }) : Buffer.alloc(0));
    const sandbox = { metadata: { name: 'web', uid: 'u-1', namespace: 'prod', attempt: 2 }, labels: { app: 'web' }, annotations: { a: 'b' } };
    const response = await pg.client.call<{ image_ref: string }>('PullImage', {
      image: { image: tag, annotations: { 'io.example/x': 'y' }, runtime_handler: 'kata' },
      auth: { username: 'u', password: 'p', server_address: registry.host },
      sandbox_config: sandbox,
    });
    expect(response.image_ref).toBe(app.configDigest);
    const sent = decoded('PullImage') as {
      image: Record<string, unknown>;
      auth: Record<string, unknown>;
      sandbox_config: { metadata: unknown; labels: unknown; annotations: unknown };
    };
    expect(sent.image).toMatchObject({
      image: `${registry.host}/team/app@${app.manifestDigest}`,
      annotations: { 'io.example/x': 'y' },
      runtime_handler: 'kata',
    });
    expect(sent.auth).toMatchObject({ username: 'u', password: 'p', server_address: registry.host });
    expect(sent.sandbox_config).toMatchObject({
      metadata: { name: 'web', uid: 'u-1', namespace: 'prod', attempt: 2 },
      labels: { app: 'web' },
      annotations: { a: 'b' },
    });
  });

  it('never asks the runtime for a denied image', async () => {
    const err = (await pg.client.call('PullImage', { image: { image: `${registry.host}/team/evil:v1` } }).catch((e: unknown) => e)) as grpc.ServiceError;
    expect(err.details).toMatch(/^SignatureValidationFailed: /);
    expect(fake.received).toEqual([]);
  });

  it('answers ImageStatus by tag by asking the runtime for the digest and adding the tag', async () => {
    fake.answer = () =>
      imageRpcCodec('ImageStatus').encodeResponse({
        image: { id: app.configDigest, size: '100', repo_tags: [], repo_digests: [`${registry.host}/team/app@${app.manifestDigest}`] },
        info: {},
      });
    const status = await pg.client.call<{ image: { id: string; repo_tags: string[] } }>('ImageStatus', { image: { image: tag } });
    expect((decoded('ImageStatus').image as { image: string }).image).toBe(`${registry.host}/team/app@${app.manifestDigest}`);
    expect(status.image.repo_tags).toEqual([tag]);
    // By image id (what kubelet passes after a pull): forwarded as is, tag still added.
    const byId = await pg.client.call<{ image: { repo_tags: string[] } }>('ImageStatus', { image: { image: app.configDigest }, verbose: true });
    expect((decoded('ImageStatus', 1).image as { image: string }).image).toBe(app.configDigest);
    expect(byId.image.repo_tags).toEqual([tag]);
    // By digest reference: the runtime is asked for the instance digest it pulled.
    const byDigest = await pg.client.call<{ image: { repo_tags: string[] } }>('ImageStatus', {
      image: { image: `${registry.host}/team/app@${app.manifestDigest}` },
    });
    expect((decoded('ImageStatus', 2).image as { image: string }).image).toBe(`${registry.host}/team/app@${app.manifestDigest}`);
    expect(byDigest.image.repo_tags).toEqual([tag]);
  });

  it('forwards what it does not change byte for byte, unknown fields included', async () => {
    // ImageStatusRequest{image: ImageSpec{image:"quay.io/x/y:1", <field 25: "future">}, <field 30: 1>}
    const spec = Buffer.concat([Buffer.from([0x0a, 13]), Buffer.from('quay.io/x/y:1'), Buffer.from([0xca, 0x01, 6]), Buffer.from('future')]);
    const request = Buffer.concat([Buffer.from([0x0a, spec.length]), spec, Buffer.from([0xf0, 0x01, 0x01])]);
    const answer = Buffer.from([0xa2, 0x06, 0x02, 0x68, 0x69]);
    fake.answer = () => answer;
    expect(await rawCall('ImageStatus', request)).toEqual(answer);
    expect(fake.received[0]?.bytes).toEqual(request);
    expect(await rawCall('ImageFsInfo', Buffer.from([0xf0, 0x01, 0x07]))).toEqual(answer);
    expect(fake.received[1]?.bytes).toEqual(Buffer.from([0xf0, 0x01, 0x07]));
  });

  it('adds the tags pullguard knows to ListImages', async () => {
    fake.answer = () =>
      imageRpcCodec('ListImages').encodeResponse({
        images: [
          { id: app.configDigest, size: '100', repo_tags: [], repo_digests: [] },
          { id: `sha256:${'b'.repeat(64)}`, size: '5', repo_tags: ['registry.k8s.io/pause:3.9'], repo_digests: [] },
        ],
      });
    const listed = await pg.client.call<{ images: { id: string; repo_tags: string[] }[] }>('ListImages', {});
    expect(listed.images.map((i) => i.repo_tags)).toEqual([[tag], ['registry.k8s.io/pause:3.9']]);
  });

  it("removes by tag from the runtime (by image id) and from pullguard's index", async () => {
    await pg.client.call('RemoveImage', { image: { image: tag } });
    expect((decoded('RemoveImage').image as { image: string }).image).toBe(app.configDigest);
    expect(pg.store.images.resolve(tag)).toBeUndefined();
    // Unknown to pullguard now: forwarded unchanged.
    await pg.client.call('RemoveImage', { image: { image: tag } });
    expect((decoded('RemoveImage', 1).image as { image: string }).image).toBe(tag);
  });

  it('reports a missing runtime as UNAVAILABLE naming its socket, and keeps serving', async () => {
    await fake.stop();
    try {
      const err = (await pg.client.call('ListImages', {}).catch((e: unknown) => e)) as grpc.ServiceError;
      expect(err.code).toBe(grpc.status.UNAVAILABLE);
      expect(err.details).toContain(fake.endpoint);
    } finally {
      await fake.start();
    }
  });
});

describe('metrics in backend mode (the real server)', () => {
  let server: RunningPullguard;
  let metricsUrl: string;

  beforeAll(async () => {
    // team/app is accepted, anything else on the registry rejected.
    const policy = join(dir, 'backend-policy.json');
    await writeFile(
      policy,
      JSON.stringify({ default: [{ type: 'reject' }], transports: { docker: { [`${registry.host}/team/app`]: [{ type: 'insecureAcceptAnything' }] } } }),
    );
    const [metricsPort, mirrorPort] = [await freePort(), await freePort()];
    metricsUrl = `http://127.0.0.1:${metricsPort}/metrics`;
    server = await startServer({
      args: [
        '--backend',
        fake.endpoint,
        '--runtime-fetch',
        'mirror',
        '--mirror-address',
        `127.0.0.1:${mirrorPort}`,
        '--metrics-address',
        `127.0.0.1:${metricsPort}`,
        '--signature-policy',
        policy,
        '--insecure-registry',
        registry.host,
      ],
    });
  });

  afterAll(async () => {
    await server?.stop();
  });

  it('counts pulls by outcome, their durations, verdicts and every RPC', async () => {
    fake.answer = (rpc) => (rpc === 'PullImage' ? imageRpcCodec('PullImage').encodeResponse({ image_ref: app.configDigest }) : Buffer.alloc(0));
    await expect(server.client.call('PullImage', { image: { image: tag } })).resolves.toMatchObject({ image_ref: app.configDigest });
    const denied = (await server.client.call('PullImage', { image: { image: `${registry.host}/team/evil:v1` } }).catch((e: unknown) => e)) as grpc.ServiceError;
    expect(denied.details).toMatch(/^SignatureValidationFailed: /);
    await server.client.call('ListImages', {});

    const families = parseExposition(await (await fetch(metricsUrl)).text());
    const value = (family: string, labels: Record<string, string> = {}, name = family): number | undefined =>
      families.get(family)?.samples.find((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))?.value;
    expect(value('pullguard_pulls_total', { outcome: 'allowed' })).toBe(1);
    expect(value('pullguard_pulls_total', { outcome: 'denied' })).toBe(1);
    expect(value('pullguard_pull_duration_seconds', {}, 'pullguard_pull_duration_seconds_count')).toBe(2);
    expect(value('pullguard_pull_duration_seconds', {}, 'pullguard_pull_duration_seconds_sum')).toBeGreaterThan(0);
    expect(value('pullguard_verdicts_total', { verdict: 'allowed' })).toBe(1);
    expect(value('pullguard_verdicts_total', { verdict: 'denied' })).toBe(1);
    expect(value('pullguard_signature_phase_duration_seconds', {}, 'pullguard_signature_phase_duration_seconds_count')).toBe(2);
    expect(value('pullguard_blobs_total', { result: 'fetched' })).toBe(2);
    expect(value('pullguard_rpc_total', { rpc: 'PullImage', code: 'OK' })).toBe(1);
    expect(value('pullguard_rpc_total', { rpc: 'PullImage', code: 'UNKNOWN' })).toBe(1);
    expect(value('pullguard_rpc_total', { rpc: 'ListImages', code: 'OK' })).toBe(1);
  });
});
