/**
 * The pull use case over its ports, with the real on-disk store and an in-memory image source that
 * implements the ImageSource port (bytes, delays and failures under the test's control).
 */
import { createHash } from 'node:crypto';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { parseDigest, type Digest } from '../../../src/domain/digest.js';
import { PullguardError } from '../../../src/domain/errors.js';
import { MEDIA_TYPES, type Descriptor } from '../../../src/domain/image.js';
import type { ImageReference } from '../../../src/domain/reference.js';
import type { Verdict } from '../../../src/domain/signature.js';
import type { BlobWriter, ImageSource, PullEnded, PullObserver, ResolvedImage, SignaturePhase } from '../../../src/pull/ports.js';
import { InFlightImages } from '../../../src/pull/in-flight-images.js';
import { PullService, type AllowedImage } from '../../../src/pull/pull-service.js';
import { SingleFlight } from '../../../src/pull/single-flight.js';
import { openStore, type OpenedStore } from '../../../src/store/open-store.js';

const digestOf = (bytes: Uint8Array): Digest => parseDigest(`sha256:${createHash('sha256').update(bytes).digest('hex')}`);
const verdict = (allowed: boolean): Verdict => ({
  allowed,
  scope: { policyFile: '/p.json', scope: 'default' },
  requirements: [],
  troubles: [],
  warnings: [],
  ...(allowed ? {} : { denial: 'Running image docker://x is rejected by policy.' }),
});

/** An image source in memory: one image, whose blobs can be delayed or made to fail. */
class MemorySource implements ImageSource {
  resolves = 0;
  readonly fetched: Digest[] = [];
  readonly blobs = new Map<string, Uint8Array>();
  failing = new Set<string>();
  delayMs = 0;
  readonly config: Descriptor;
  readonly layers: Descriptor[];
  readonly manifestBytes: Uint8Array;

  constructor(layerSizes: number[], user = '1000') {
    const add = (bytes: Uint8Array, mediaType: string): Descriptor => {
      const digest = digestOf(bytes);
      this.blobs.set(digest, bytes);
      return { digest, size: bytes.length, mediaType };
    };
    this.layers = layerSizes.map((size, i) => add(new Uint8Array(size).fill(i + 1), 'application/vnd.oci.image.layer.v1.tar+gzip'));
    this.config = add(Buffer.from(JSON.stringify({ config: { User: user }, rootfs: { type: 'layers', diff_ids: [] } })), MEDIA_TYPES.ociConfig);
    this.manifestBytes = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: MEDIA_TYPES.ociManifest, config: this.config, layers: this.layers }));
  }

  async resolve(reference: ImageReference): Promise<ResolvedImage> {
    this.resolves += 1;
    const manifestDigest = digestOf(this.manifestBytes);
    return {
      reference,
      physicalReference: reference,
      topDigest: manifestDigest,
      topMediaType: MEDIA_TYPES.ociManifest,
      manifestDigest,
      manifestMediaType: MEDIA_TYPES.ociManifest,
      manifestBytes: this.manifestBytes,
      config: this.config,
      layers: this.layers,
    };
  }

  async fetchBlob(_image: ResolvedImage, blob: Descriptor, writer: BlobWriter, options: { signal?: AbortSignal }): Promise<void> {
    this.fetched.push(blob.digest);
    const bytes = this.blobs.get(blob.digest)!;
    await writer.write(bytes.subarray(0, Math.floor(bytes.length / 2)));
    if (this.failing.has(blob.digest)) throw new PullguardError('REGISTRY_UNAVAILABLE', `connection reset while reading ${blob.digest}`);
    if (this.delayMs > 0) {
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(resolve, this.delayMs);
        options.signal?.addEventListener('abort', () => {
          clearTimeout(timer);
          reject(new PullguardError('CANCELLED', 'cancelled'));
        });
      });
    }
    await writer.write(bytes.subarray(Math.floor(bytes.length / 2)));
  }
}

let dir: string;
let store: OpenedStore;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'pullguard-pull-'));
  store = await openStore(dir);
});
afterEach(async () => {
  await store.close();
  await rm(dir, { recursive: true, force: true });
});

function service(
  source: ImageSource,
  phase: SignaturePhase = async () => ({ verdict: verdict(true), signatures: [] }),
  inFlight?: InFlightImages,
): PullService {
  return new PullService({
    ...(inFlight !== undefined ? { inFlight } : {}),
    source,
    signaturePhase: phase,
    content: store.blobs,
    images: store.images,
    leases: store.blobs,
    garbage: store.images,
    clock: () => new Date('2026-01-01T00:00:00Z'),
    version: 'test',
  });
}

/** An observer that keeps every event, in order, named by the method that was told. */
function recordingObserver(): { observer: PullObserver; events: ({ kind: keyof PullObserver } & Record<string, unknown>)[]; ended: () => PullEnded[] } {
  const events: ({ kind: keyof PullObserver } & Record<string, unknown>)[] = [];
  const keep =
    (kind: keyof PullObserver) =>
    (event: object): void => {
      events.push({ kind, ...event });
    };
  return {
    observer: { resolved: keep('resolved'), decided: keep('decided'), blobStored: keep('blobStored'), pullEnded: keep('pullEnded') },
    events,
    ended: () => events.filter((e) => e.kind === 'pullEnded').map(({ kind: _kind, ...ended }) => ended as unknown as PullEnded),
  };
}

describe('PullService', () => {
  it('tells a waiting runtime once the verdict allows, then fetches in manifest order and lists each blob as it is committed', async () => {
    // Growing sizes: largest-first would fetch them backwards.
    const source = new MemorySource([1000, 2000, 3000, 4000]);
    source.delayMs = 20;
    const inFlight = new InFlightImages();
    const pulls = service(source, undefined, inFlight);
    const allowed: AllowedImage[] = [];
    const readiness: Promise<boolean>[] = [];
    const pulling = pulls.pull({
      image: 'registry.example/app:v1',
      onAllowed: (image) => {
        allowed.push(image);
        // At this moment the manifest is stored and no blob yet: the runtime may start.
        const [entry] = inFlight.list();
        expect(entry?.repository).toBe('registry.example/app');
        expect([...entry!.blobs]).toEqual([source.config.digest, ...source.layers.map((l) => l.digest)]);
        expect(entry!.manifests.has(image.manifestDigest)).toBe(true);
        readiness.push(...[...entry!.blobs].map((d) => entry!.ready(d)));
        readiness.push(entry!.ready(parseDigest(`sha256:${'0'.repeat(64)}`)));
      },
    });
    // A caller joining later is told too.
    const joined: AllowedImage[] = [];
    const joining = pulls.pull({ image: 'registry.example/app:v1', onAllowed: (image) => joined.push(image) });
    const result = await pulling;
    await joining;
    expect(allowed).toEqual([{ reference: result.reference, manifestDigest: result.manifestDigest, imageId: result.imageId }]);
    expect(joined).toEqual(allowed);
    // Manifest order for a waiting runtime (not largest first): two fetches run at once, so
    // neighbours may start in either order, but nothing starts more than one place early or late.
    const manifestOrder = [source.config.digest, ...source.layers.map((l) => l.digest)];
    expect([...source.fetched].sort()).toEqual([...manifestOrder].sort());
    for (const [position, digest] of manifestOrder.entries()) expect(Math.abs(source.fetched.indexOf(digest) - position)).toBeLessThanOrEqual(1);
    expect(await Promise.all(readiness)).toEqual([true, true, true, true, true, false]);
    expect(inFlight.list()).toEqual([]);

    // A later pull is a new flight: its caller is told after *its* resolve and verdict, not the old one's.
    const resolvesWhenTold: number[] = [];
    await pulls.pull({ image: 'registry.example/app:v1', onAllowed: () => resolvesWhenTold.push(source.resolves) });
    expect(resolvesWhenTold).toEqual([2]);
  });

  it('never tells the runtime about a denied image, and ends the in-flight entry of a failed pull', async () => {
    const denied = new MemorySource([1000]);
    const inFlight = new InFlightImages();
    let told = 0;
    await expect(
      service(denied, async () => ({ verdict: verdict(false), signatures: [] }), inFlight).pull({
        image: 'registry.example/app:v1',
        onAllowed: () => (told += 1),
      }),
    ).rejects.toThrow();
    expect(told).toBe(0);
    expect(inFlight.list()).toEqual([]);

    const failing = new MemorySource([1000, 2000]);
    failing.failing.add(failing.layers[1]!.digest);
    let pending: Promise<boolean> | undefined;
    await expect(
      service(failing, undefined, inFlight).pull({
        image: 'registry.example/app:v1',
        onAllowed: () => (pending = inFlight.list()[0]!.ready(failing.layers[1]!.digest)),
      }),
    ).rejects.toThrow(/connection reset/);
    expect(await pending).toBe(false);
    expect(inFlight.list()).toEqual([]);
  });

  it('stores manifest, config and layers, then records the image with tags, digests, size and user', async () => {
    const source = new MemorySource([3000, 5000], 'nobody');
    const result = await service(source).pull({ image: 'registry.example/app:v1' });
    expect(result.imageId).toBe(source.config.digest);
    expect(result.record).toMatchObject({
      repoTags: ['registry.example/app:v1'],
      repoDigests: [`registry.example/app@${result.manifestDigest}`],
      user: 'nobody',
      size: source.config.size + source.manifestBytes.length + 8000,
      pulledAt: '2026-01-01T00:00:00.000Z',
    });
    for (const d of [source.config.digest, ...source.layers.map((l) => l.digest), result.manifestDigest]) expect(await store.blobs.has(d)).toBe(true);
  });

  it('shares one pull among identical concurrent requests, but not across credentials', async () => {
    const source = new MemorySource([1000]);
    source.delayMs = 50;
    const pulls = service(source);
    await Promise.all([pulls.pull({ image: 'registry.example/app:v1' }), pulls.pull({ image: 'registry.example/app:v1' })]);
    expect(source.resolves).toBe(1);
    await Promise.all([
      pulls.pull({ image: 'registry.example/app:v1', credentials: { username: 'a', password: '1' } }),
      pulls.pull({ image: 'registry.example/app:v1', credentials: { username: 'b', password: '2' } }),
    ]);
    expect(source.resolves).toBe(3);
  });

  it('decides before fetching: a denied image fetches and stores nothing', async () => {
    const source = new MemorySource([1000]);
    const err = await service(source, async () => ({ verdict: verdict(false), signatures: [] }))
      .pull({ image: 'registry.example/app:v1' })
      .catch((e: unknown) => e);
    expect((err as PullguardError).code).toBe('SIGNATURE_VALIDATION_FAILED');
    expect(source.fetched).toEqual([]);
    expect(store.images.list()).toEqual([]);
    expect(await readdir(join(dir, 'blobs', 'sha256')).catch(() => [])).toEqual([]);
  });

  it('cancels the other layers when one fails and answers only after every temp file is gone', async () => {
    const source = new MemorySource([1000, 2000, 3000, 4000]);
    source.delayMs = 100;
    source.failing.add(source.layers[0]!.digest);
    const err = await service(source)
      .pull({ image: 'registry.example/app:v1' })
      .catch((e: unknown) => e);
    expect((err as PullguardError).code).toBe('REGISTRY_UNAVAILABLE');
    expect(await readdir(join(dir, 'ingest'))).toEqual([]);
    expect(store.images.list()).toEqual([]);
    for (const layer of source.layers) expect(await store.blobs.has(layer.digest)).toBe(false);
  });

  it('gives back what a failed pull had already committed', async () => {
    const source = new MemorySource([5000, 4000, 10]);
    source.delayMs = 30;
    const smallest = source.layers[2]!.digest;
    source.failing.add(smallest);
    // Largest first: the two big layers are committed before the small one fails.
    const pulls = new PullService({
      source,
      signaturePhase: async () => ({ verdict: verdict(true), signatures: [] }),
      content: store.blobs,
      images: store.images,
      leases: store.blobs,
      garbage: store.images,
      clock: () => new Date(),
      version: 'test',
      layerConcurrency: 1,
    });
    await expect(pulls.pull({ image: 'registry.example/app:v1' })).rejects.toMatchObject({ code: 'REGISTRY_UNAVAILABLE' });
    expect(source.fetched.slice(0, 2)).toEqual([source.layers[0]!.digest, source.layers[1]!.digest]);
    expect(await readdir(join(dir, 'blobs', 'sha256'))).toEqual([]);
  });

  it('keeps one verification record per repository the same image was pulled from', async () => {
    const source = new MemorySource([100]);
    const signature = (text: string) => ({
      location: { source: 'lookaside' as const, index: 1, url: `http://sigs/${text}` },
      format: 'simple-signing' as const,
      bytes: Buffer.from(text),
    });
    const phase: SignaturePhase = async ({ image }) => ({ verdict: verdict(true), signatures: [signature(image.reference.name)] });
    const pulls = service(source, phase);
    await pulls.pull({ image: 'registry.example/one:v1' });
    const second = await pulls.pull({ image: 'registry.example/two:v1' });
    const records = second.record.verification as Record<string, { image: string; signatures: { blob: string }[] }>;
    expect(Object.keys(records).sort()).toEqual(['registry.example/one', 'registry.example/two']);
    expect(records['registry.example/one']!.image).toBe('registry.example/one:v1');
    expect([...second.record.signatureBlobs!].sort()).toEqual(
      [records['registry.example/one']!.signatures[0]!.blob, records['registry.example/two']!.signatures[0]!.blob].sort(),
    );
    expect(second.record.repoTags).toEqual(['registry.example/two:v1']);
    expect(store.images.get(second.imageId)?.repoTags.slice().sort()).toEqual(['registry.example/one:v1', 'registry.example/two:v1']);
  });

  it('records the policy source and the pod namespace the image was accepted under', async () => {
    const source = new MemorySource([100]);
    const phase: SignaturePhase = async () => ({
      verdict: verdict(true),
      signatures: [],
      policySource: { kind: 'namespace', file: '/etc/ns/team-a.json', namespace: 'team-a' },
    });
    const pulls = service(source, phase);
    const result = await pulls.pull({ image: 'registry.example/app:v1', namespace: 'team-a' });
    const record = (result.record.verification as Record<string, Record<string, unknown>>)['registry.example/app'];
    expect(record).toMatchObject({
      policyFile: '/p.json',
      scope: 'default',
      namespace: 'team-a',
      policySource: { kind: 'namespace', file: '/etc/ns/team-a.json', namespace: 'team-a' },
    });
    // A phase that does not say (and a pull without a namespace) leaves both out.
    const plain = await service(new MemorySource([200], '2000')).pull({ image: 'registry.example/other:v1' });
    const other = (plain.record.verification as Record<string, Record<string, unknown>>)['registry.example/other'];
    expect(other).not.toHaveProperty('policySource');
    expect(other).not.toHaveProperty('namespace');
  });

  it("tells the observers the flight once and each caller's end once, timed on the monotonic clock", async () => {
    const source = new MemorySource([1000, 2000]);
    let now = 1000;
    const warned: Verdict = {
      ...verdict(true),
      warnings: [{ code: 'PGW001', message: 'signature-2 could not be read', location: { source: 'lookaside', index: 2, url: 'http://sigs/signature-2' } }],
    };
    const seen = recordingObserver();
    const pulls = new PullService({
      source,
      signaturePhase: async () => {
        now += 250;
        return { verdict: warned, signatures: [] };
      },
      content: store.blobs,
      images: store.images,
      leases: store.blobs,
      version: 'test',
      monotonicMs: () => now,
      observers: [seen.observer],
    });
    const pod = { name: 'web-0', namespace: 'shop', uid: 'u-1' };
    const first = pulls.pull({ image: 'registry.example/app:v1', namespace: 'shop', pod, logFields: { rpc: 'PullImage', requestId: 7 } });
    now = 1100;
    // Joins the flight: one resolve, one verdict, one fetch of each blob; but its own end.
    const second = pulls.pull({ image: 'registry.example/app:v1', namespace: 'shop' });
    const [result] = await Promise.all([first, second]);

    expect(source.resolves).toBe(1);
    expect(seen.events.filter((e) => e.kind === 'resolved')).toEqual([
      { kind: 'resolved', image: 'registry.example/app:v1', manifestDigest: result.manifestDigest, layers: 2, bytes: source.config.size + 3000 },
    ]);
    expect(seen.events.filter((e) => e.kind === 'decided')).toEqual([
      { kind: 'decided', image: 'registry.example/app:v1', manifestDigest: result.manifestDigest, verdict: warned, signaturePhaseSeconds: 0.25 },
    ]);
    const blobs = seen.events.filter((e) => e.kind === 'blobStored');
    expect(blobs.map((e) => e['digest']).sort()).toEqual([source.config.digest, ...source.layers.map((l) => l.digest)].sort());
    expect(blobs.every((e) => e['fetched'] === true)).toBe(true);
    const ends = seen.ended();
    expect(ends).toHaveLength(2);
    expect(ends[0]).toEqual({
      image: 'registry.example/app:v1',
      outcome: 'allowed_with_warnings',
      durationSeconds: 0.35,
      verdict: warned,
      manifestDigest: result.manifestDigest,
      warnings: warned.warnings,
      namespace: 'shop',
      pod,
      logFields: { rpc: 'PullImage', requestId: 7 },
    });
    expect(ends[1]).toMatchObject({ outcome: 'allowed_with_warnings', durationSeconds: 0.25, warnings: warned.warnings });
    expect(ends[1]).not.toHaveProperty('pod');
    // Every event of a pull comes before its end.
    expect(seen.events.at(-1)?.kind).toBe('pullEnded');

    // In the store already: the next pull's blobs are not fetched again.
    seen.events.length = 0;
    await pulls.pull({ image: 'registry.example/app:v1' });
    expect(seen.events.filter((e) => e.kind === 'blobStored').every((e) => e['fetched'] === false)).toBe(true);
  });

  it('ends a denied pull as denied with its verdict and no warnings, a failure as error, and survives a throwing observer', async () => {
    const seen = recordingObserver();
    const throwing: PullObserver = {
      decided: () => {
        throw new Error('observer bug');
      },
      pullEnded: () => {
        throw new Error('observer bug');
      },
    };
    const denying = new PullService({
      source: new MemorySource([100]),
      signaturePhase: async () => ({ verdict: { ...verdict(false), warnings: [{ code: 'PGW001', message: 'unread' }] }, signatures: [] }),
      content: store.blobs,
      images: store.images,
      leases: store.blobs,
      version: 'test',
      observers: [throwing, seen.observer],
    });
    await expect(denying.pull({ image: 'registry.example/app:v1' })).rejects.toMatchObject({ code: 'SIGNATURE_VALIDATION_FAILED' });
    expect(seen.events.map((e) => e.kind)).toEqual(['resolved', 'decided', 'pullEnded']);
    const [denied] = seen.ended();
    expect(denied).toMatchObject({ outcome: 'denied', verdict: { allowed: false }, warnings: [], error: { code: 'SIGNATURE_VALIDATION_FAILED' } });

    seen.events.length = 0;
    await expect(denying.pull({ image: 'Not/Valid' })).rejects.toMatchObject({ code: 'INVALID_REFERENCE' });
    expect(seen.events.map((e) => e.kind)).toEqual(['pullEnded']);
    const [failed] = seen.ended();
    expect(failed).toMatchObject({ image: 'Not/Valid', outcome: 'error', warnings: [], error: { code: 'INVALID_REFERENCE' } });
    expect(failed).not.toHaveProperty('verdict');
  });

  it('rejects a malformed name before touching the registry', async () => {
    const source = new MemorySource([10]);
    await expect(service(source).pull({ image: 'Not/Valid' })).rejects.toMatchObject({ code: 'INVALID_REFERENCE' });
    expect(source.resolves).toBe(0);
  });
});

describe('SingleFlight', () => {
  function trackedWork(): { work: (signal: AbortSignal) => Promise<string>; completed: () => number } {
    let completed = 0;
    return {
      completed: () => completed,
      work: (signal) =>
        new Promise((resolve, reject) => {
          if (signal.aborted) return reject(new Error('cancelled'));
          const timer = setTimeout(() => {
            completed += 1;
            resolve('done');
          }, 100);
          signal.addEventListener('abort', () => {
            clearTimeout(timer);
            reject(new Error('cancelled'));
          });
        }),
    };
  }

  it('keeps the shared work running while another caller still waits', async () => {
    const flight = new SingleFlight<string>();
    const { work, completed } = trackedWork();
    const first = new AbortController();
    const a = flight.run('k', first.signal, work).catch((e: Error) => e.message);
    const b = flight.run('k', undefined, work);
    first.abort(new Error('caller a gave up'));
    expect(await a).toBe('caller a gave up');
    expect(await b).toBe('done');
    expect(completed()).toBe(1);
  });

  it('cancels the work when the last caller gives up, and settles only after it wound down', async () => {
    const flight = new SingleFlight<string>();
    const { work, completed } = trackedWork();
    const only = new AbortController();
    const c = flight.run('k', only.signal, work).catch((e: Error) => e.message);
    await new Promise((r) => setTimeout(r, 20));
    only.abort(new Error('gave up'));
    expect(await c).toMatch(/gave up|cancelled/);
    await new Promise((r) => setTimeout(r, 150));
    expect(completed()).toBe(0);
    expect(flight.size).toBe(0);
  });
});
