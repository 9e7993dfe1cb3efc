/**
 * What pullguard answers containerd's image verifier (judgeVerifierQuestion over PullService.verify),
 * with the real on-disk store and an image source in memory: what was already allowed is answered
 * without a signature phase; anything else is verified by the digest containerd resolved, under the
 * name it gave, and recorded without layers; a denial is pullguard's denial line.
 */
import { createHash } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { parseDigest, type Digest } from '../../../src/domain/digest.js';
import { MEDIA_TYPES, type Descriptor } from '../../../src/domain/image.js';
import { formatReference, type ImageReference } from '../../../src/domain/reference.js';
import type { Verdict } from '../../../src/domain/signature.js';
import { InFlightImages } from '../../../src/pull/in-flight-images.js';
import type { BlobWriter, ImageSource, PullEnded, ResolvedImage, SignaturePhase } from '../../../src/pull/ports.js';
import { PullService } from '../../../src/pull/pull-service.js';
import { openStore, type OpenedStore } from '../../../src/store/open-store.js';
import { judgeVerifierQuestion } from '../../../src/verifier/verifier-verdicts.js';

const digestOf = (bytes: Uint8Array): Digest => parseDigest(`sha256:${createHash('sha256').update(bytes).digest('hex')}`);

const allowed: Verdict = {
  allowed: true,
  scope: { policyFile: '/etc/containers/policy.json', scope: 'registry.example' },
  requirements: [],
  troubles: [],
  warnings: [{ code: 'PGW001', message: 'signature-2 could not be read' }],
};
const denied: Verdict = { ...allowed, allowed: false, warnings: [], denial: 'A signature was required, but no signature exists' };

/** One image in memory; records what was resolved and fetched. */
class MemorySource implements ImageSource {
  readonly resolved: string[] = [];
  readonly fetched: Digest[] = [];
  readonly blobs = new Map<string, Uint8Array>();
  readonly config: Descriptor;
  readonly layers: Descriptor[];
  readonly manifestBytes: Uint8Array;
  readonly manifestDigest: Digest;

  constructor(seed: number) {
    const add = (bytes: Uint8Array, mediaType: string): Descriptor => {
      const digest = digestOf(bytes);
      this.blobs.set(digest, bytes);
      return { digest, size: bytes.length, mediaType };
    };
    this.layers = [add(new Uint8Array(3000).fill(seed), 'application/vnd.oci.image.layer.v1.tar+gzip')];
    this.config = add(Buffer.from(JSON.stringify({ config: { User: '1000' }, rootfs: { type: 'layers', diff_ids: [] }, seed })), MEDIA_TYPES.ociConfig);
    this.manifestBytes = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: MEDIA_TYPES.ociManifest, config: this.config, layers: this.layers }));
    this.manifestDigest = digestOf(this.manifestBytes);
  }

  async resolve(reference: ImageReference): Promise<ResolvedImage> {
    this.resolved.push(formatReference(reference));
    if (reference.digest !== undefined && reference.digest !== this.manifestDigest) throw new Error(`unknown digest ${reference.digest}`);
    const d = this.manifestDigest;
    return {
      reference,
      physicalReference: reference,
      topDigest: d,
      topMediaType: MEDIA_TYPES.ociManifest,
      manifestDigest: d,
      manifestMediaType: MEDIA_TYPES.ociManifest,
      manifestBytes: this.manifestBytes,
      config: this.config,
      layers: this.layers,
    };
  }

  async fetchBlob(_image: ResolvedImage, blob: Descriptor, writer: BlobWriter): Promise<void> {
    this.fetched.push(blob.digest);
    await writer.write(this.blobs.get(blob.digest)!);
  }
}

let dir: string;
let store: OpenedStore;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'pullguard-verdicts-'));
  store = await openStore(dir);
});
afterEach(async () => {
  await store.close();
  await rm(dir, { recursive: true, force: true });
});

function setUp(source: MemorySource, verdictFor: (image: ResolvedImage) => Verdict = () => allowed) {
  const phases: string[] = [];
  const ended: PullEnded[] = [];
  const signaturePhase: SignaturePhase = async ({ image }) => {
    phases.push(formatReference(image.reference));
    return { verdict: verdictFor(image), signatures: [] };
  };
  const inFlight = new InFlightImages();
  const pulls = new PullService({
    source,
    signaturePhase,
    content: store.blobs,
    images: store.images,
    leases: store.blobs,
    garbage: store.images,
    inFlight,
    clock: () => new Date('2026-01-01T00:00:00Z'),
    version: 'test',
    observers: [{ pullEnded: (e) => ended.push(e) }],
  });
  const judge = (name: string, digest: string) =>
    judgeVerifierQuestion({ pulls, index: store.images, inFlight }, { name, digest, logFields: { verifier: { name } } });
  return { pulls, judge, phases, ended, inFlight };
}

describe("the verdict for containerd's image verifier", () => {
  it('verifies what pullguard never saw: fetched by the given digest, judged under the tagged name, recorded without layers', async () => {
    const source = new MemorySource(1);
    const { judge, phases, ended } = setUp(source);
    const answer = await judge('registry.example/app:v1', source.manifestDigest);
    expect(answer).toEqual({
      allowed: true,
      cached: false,
      manifestDigest: source.manifestDigest,
      message: `pullguard allowed registry.example/app:v1 (${source.manifestDigest}) under /etc/containers/policy.json [registry.example]; 1 warning: PGW001`,
    });
    // Resolved by digest (a tag moved meanwhile cannot slip through); the policy saw the tag.
    expect(source.resolved).toEqual([`registry.example/app@${source.manifestDigest}`]);
    expect(phases).toEqual(['registry.example/app:v1']);
    // No blob at all: containerd fetches config and layers once it has the answer.
    expect(source.fetched).toEqual([]);
    const record = store.images.get(source.config.digest);
    expect(record).toMatchObject({
      layersStored: false,
      configStored: false,
      repoTags: ['registry.example/app:v1'],
      repoDigests: [`registry.example/app@${source.manifestDigest}`],
    });
    expect(record?.user).toBeUndefined();
    expect(await store.blobs.has(source.manifestDigest)).toBe(true);
    expect(await store.blobs.has(source.config.digest)).toBe(false);
    expect(await store.blobs.has(source.layers[0]!.digest)).toBe(false);
    // GC keeps the manifest, and a pull through the CRI socket later stores the config and reads its user.
    await store.images.collectGarbage();
    expect(await store.blobs.has(source.manifestDigest)).toBe(true);
    // Observers hear of it as of a pull (the log, metrics), with the caller's fields.
    expect(ended).toHaveLength(1);
    expect(ended[0]).toMatchObject({
      image: 'registry.example/app:v1',
      outcome: 'allowed_with_warnings',
      logFields: { verifier: { name: 'registry.example/app:v1' } },
    });
  });

  it('answers from the index at once: the digest in that repository, by digest or by a tag it was verified under', async () => {
    const source = new MemorySource(2);
    const { judge, phases } = setUp(source);
    await judge('registry.example/app:v1', source.manifestDigest);
    expect(phases).toHaveLength(1);
    const byTag = await judge('registry.example/app:v1', source.manifestDigest);
    expect(byTag).toMatchObject({ allowed: true, cached: true });
    expect(byTag.message).toBe(
      `pullguard verified registry.example/app:v1 (${source.manifestDigest}) already (2026-01-01T00:00:00.000Z, /etc/containers/policy.json [registry.example])`,
    );
    expect(await judge(`registry.example/app@${source.manifestDigest}`, source.manifestDigest)).toMatchObject({ allowed: true, cached: true });
    expect(phases).toHaveLength(1);
    // Another tag: its signed identity was never checked for this manifest; another repository:
    // another scope of the policy. Both get the signature phase.
    expect(await judge('registry.example/app:v2', source.manifestDigest)).toMatchObject({ allowed: true, cached: false });
    expect(await judge('registry.example/other:v1', source.manifestDigest)).toMatchObject({ allowed: true, cached: false });
    expect(phases).toEqual(['registry.example/app:v1', 'registry.example/app:v2', 'registry.example/other:v1']);
  });

  it('answers at once for an image pullguard allowed and is still pulling (its CRI front asked containerd for name@digest)', async () => {
    const source = new MemorySource(3);
    const { judge, pulls, phases } = setUp(source);
    let answer: Awaited<ReturnType<typeof judge>> | undefined;
    // The runtime's pull happens inside runtimeFetch, while the image is in flight: ask from there.
    await pulls.pull({
      image: 'registry.example/app:v1',
      runtimeFetch: async (image) => {
        answer = await judge(`registry.example/app@${image.manifestDigest}`, image.manifestDigest);
      },
    });
    expect(answer).toEqual({
      allowed: true,
      cached: true,
      message: `pullguard allowed registry.example/app@${source.manifestDigest} and is pulling it through its CRI socket`,
    });
    expect(phases).toEqual(['registry.example/app:v1']);
  });

  it('keeps the layers of an image pullguard stored when a verification records it again', async () => {
    const source = new MemorySource(4);
    const { judge, pulls } = setUp(source);
    await pulls.pull({ image: 'registry.example/app:v1' });
    expect(store.images.get(source.config.digest)?.layersStored).toBeUndefined();
    await judge('registry.example/app:v2', source.manifestDigest);
    const record = store.images.get(source.config.digest);
    expect(record?.layersStored).toBeUndefined();
    expect(record?.repoTags).toEqual(['registry.example/app:v1', 'registry.example/app:v2']);
    const gc = await store.images.collectGarbage();
    expect(gc).toBeDefined();
    expect(await store.blobs.has(source.layers[0]!.digest)).toBe(true);
  });

  it('stores the config and reads its user when the image is pulled after a verification recorded it without', async () => {
    const source = new MemorySource(9);
    const { judge, pulls } = setUp(source);
    await judge('registry.example/app:v1', source.manifestDigest);
    expect(store.images.get(source.config.digest)).toMatchObject({ configStored: false, layersStored: false });
    await pulls.pull({ image: 'registry.example/app:v1' });
    const record = store.images.get(source.config.digest);
    expect(record?.configStored).toBeUndefined();
    expect(record?.layersStored).toBeUndefined();
    expect(record?.user).toBe('1000');
    await store.images.collectGarbage();
    expect(await store.blobs.has(source.config.digest)).toBe(true);
  });

  it("blocks with pullguard's denial line and records nothing", async () => {
    const source = new MemorySource(5);
    const { judge } = setUp(source, () => denied);
    const answer = await judge('registry.example/app:v1', source.manifestDigest);
    expect(answer).toEqual({
      allowed: false,
      cached: false,
      message: 'SignatureValidationFailed: Source image rejected: A signature was required, but no signature exists',
    });
    expect(store.images.list()).toEqual([]);
    expect(source.fetched).toEqual([]);
  });

  it('blocks what it cannot judge: a bad digest, a name pinned to another digest, a failing registry', async () => {
    const source = new MemorySource(6);
    const { judge, phases } = setUp(source);
    expect(await judge('registry.example/app:v1', 'sha256:xyz')).toMatchObject({ allowed: false, message: expect.stringMatching(/digest/) });
    const other = `sha256:${'1'.repeat(64)}`;
    expect(await judge(`registry.example/app@${source.manifestDigest}`, other)).toMatchObject({
      allowed: false,
      message: expect.stringContaining(`names another digest than the resolved ${other}`),
    });
    expect(await judge('registry.example/app:v1', other)).toMatchObject({ allowed: false, message: `internal error: unknown digest ${other}` });
    expect(await judge('Not A Name', source.manifestDigest)).toMatchObject({ allowed: false, message: expect.stringMatching(/^invalid image reference/) });
    expect(phases).toEqual([]);
  });
});
