import { randomBytes } from 'node:crypto';
import { appendFile, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { Digest } from '../../../src/domain/digest.js';
import { isPullguardError } from '../../../src/domain/errors.js';
import { FsImageIndex, type IndexBlobs } from '../../../src/store/fs-image-index.js';
import { openStore, type OpenedStore } from '../../../src/store/open-store.js';
import { commitBlob, digestOf, storeImageRecord } from '../../helpers/store-records.js';
import type { ImageRecord } from '../../../src/domain/image-record.js';

const roots: string[] = [];
const opened: OpenedStore[] = [];
afterEach(async () => {
  await Promise.all(opened.splice(0).map((s) => s.close()));
  await Promise.all(roots.splice(0).map((r) => rm(r, { recursive: true, force: true })));
});

async function newRoot(): Promise<string> {
  const root = await mkdtemp(join(tmpdir(), 'pg-index-'));
  roots.push(root);
  return root;
}

async function open(root: string, compactAfter?: number): Promise<OpenedStore> {
  const store = await openStore(root, compactAfter === undefined ? {} : { compactAfter });
  opened.push(store);
  return store;
}

describe('FsImageIndex', () => {
  it('moves a tag to the newest image; an image left without tags keeps its digests', async () => {
    const { blobs, images } = await open(await newRoot());
    const v1 = await storeImageRecord(blobs, { repoTags: ['docker.io/library/app:latest', 'docker.io/library/app:v1'] });
    const v2 = await storeImageRecord(blobs, { repoTags: ['docker.io/library/app:latest'] });
    await images.put(v1);
    await images.put(v2);
    expect(images.get(v1.id)?.repoTags).toEqual(['docker.io/library/app:v1']);
    expect(images.get(v2.id)?.repoTags).toEqual(['docker.io/library/app:latest']);
    expect(images.resolve('app')?.id).toBe(v2.id);
    // Retag v1 as v2's only tag too: v2 is left with none but keeps its digests and stays listed.
    await images.put({ ...v1, repoTags: ['docker.io/library/app:latest'] });
    expect(images.get(v1.id)?.repoTags).toEqual(['docker.io/library/app:v1', 'docker.io/library/app:latest']);
    expect(images.get(v2.id)?.repoTags).toEqual([]);
    expect(images.get(v2.id)?.repoDigests).toEqual(v2.repoDigests);
    expect(
      images
        .list()
        .map((r) => r.id)
        .sort(),
    ).toEqual([v1.id, v2.id].sort());
  });

  it('merges tags and digests when the same image is put again', async () => {
    const { blobs, images } = await open(await newRoot());
    const rec = await storeImageRecord(blobs, { repoTags: ['docker.io/library/app:v1'] });
    await images.put(rec);
    const again = await images.put({
      ...rec,
      repoTags: ['quay.io/org/app:v1'],
      repoDigests: [`quay.io/org/app@${rec.manifestDigest}`],
      pulledAt: '2024-02-02T00:00:00Z',
    });
    expect(again.repoTags).toEqual(['docker.io/library/app:v1', 'quay.io/org/app:v1']);
    expect(again.repoDigests).toEqual([...rec.repoDigests, `quay.io/org/app@${rec.manifestDigest}`]);
    expect(again.pulledAt).toBe('2024-02-02T00:00:00Z');
    expect(images.list()).toHaveLength(1);
  });

  it('refuses another manifest for an id it holds: the holder keeps its tags, manifest, layers and blobs', async () => {
    const { blobs, images } = await open(await newRoot());
    const signed = await images.put(await storeImageRecord(blobs, { repoTags: ['registry.example/test/small:v2'] }));
    const other = await storeImageRecord(blobs, { repoTags: ['registry.example/attacker/evil:v1'] });
    // Same config digest (the id), another manifest around other layers.
    const impostor = { ...other, id: signed.id, configDigest: signed.configDigest };
    await expect(images.put(impostor)).rejects.toMatchObject({
      code: 'IMAGE_ID_CONFLICT',
      message: expect.stringContaining(
        `registry.example/attacker/evil:v1 resolves to manifest ${other.manifestDigest}, whose config is that of the stored image registry.example/test/small:v2`,
      ),
    });
    expect(images.get(signed.id)).toEqual(signed);
    expect(images.resolve('registry.example/attacker/evil:v1')).toBeUndefined();
    await images.collectGarbage();
    for (const digest of [signed.manifestDigest, signed.configDigest, ...signed.layers.map((l) => l.digest)]) expect(await blobs.has(digest)).toBe(true);
  });

  it('resolves by id, bare id, unique prefix, tag and digest reference', async () => {
    const { blobs, images } = await open(await newRoot());
    const a = await images.put(await storeImageRecord(blobs, { repoTags: ['docker.io/library/nginx:latest'] }));
    const b = await images.put(await storeImageRecord(blobs, { repoTags: ['127.0.0.1:5000/team/app:v1'] }));
    const hexA = a.id.slice('sha256:'.length);
    expect(images.resolve(a.id)?.id).toBe(a.id);
    expect(images.resolve(hexA)?.id).toBe(a.id);
    expect(images.resolve(hexA.slice(0, 12))?.id).toBe(a.id);
    expect(images.resolve(`sha256:${hexA.slice(0, 8)}`)?.id).toBe(a.id);
    expect(images.resolve(hexA.slice(0, 5))).toBeUndefined(); // shorter than MIN_ID_PREFIX
    expect(images.resolve('docker.io/library/nginx:latest')?.id).toBe(a.id);
    expect(images.resolve('nginx')?.id).toBe(a.id); // normalised by parseReference
    expect(images.resolve('127.0.0.1:5000/team/app:v1')?.id).toBe(b.id);
    expect(images.resolve(`127.0.0.1:5000/team/app@${b.manifestDigest}`)?.id).toBe(b.id);
    expect(images.resolve(`127.0.0.1:5000/team/app:whatever@${b.manifestDigest}`)?.id).toBe(b.id);
    expect(images.resolve(`127.0.0.1:5000/other@${b.manifestDigest}`)).toBeUndefined();
    expect(images.resolve('127.0.0.1:5000/team/app:v2')).toBeUndefined();
    expect(images.resolve('NOT A REFERENCE')).toBeUndefined();
  });

  it('finds nothing for an ambiguous id prefix', async () => {
    // Ids are config digests; build a pair sharing a 6-hex prefix through a stub blob store.
    const root = await newRoot();
    const images = await FsImageIndex.open({ root, blobs: allBlobsPresent });
    const base = 'sha256:abcdef';
    const one = fakeRecord(`${base}${'1'.repeat(58)}` as Digest);
    const two = fakeRecord(`${base}${'2'.repeat(58)}` as Digest);
    await images.put(one);
    await images.put(two);
    expect(images.resolve('abcdef')).toBeUndefined();
    expect(images.resolve('abcdef1')?.id).toBe(one.id);
    await images.close();
  });

  it('removes records and their tags', async () => {
    const { blobs, images } = await open(await newRoot());
    const a = await images.put(await storeImageRecord(blobs, { repoTags: ['docker.io/library/a:1'] }));
    expect(await images.remove(a.id)).toBe(true);
    expect(await images.remove(a.id)).toBe(false);
    expect(images.get(a.id)).toBeUndefined();
    expect(images.resolve('a:1')).toBeUndefined();
    expect(images.list()).toEqual([]);
  });

  it('refuses a record whose blobs are not in the store, and invalid records with every problem', async () => {
    const { blobs, images } = await open(await newRoot());
    const rec = await storeImageRecord(blobs, { repoTags: ['docker.io/library/a:1'] });
    await blobs.delete(rec.layers[0]!.digest);
    const err = await images.put(rec).catch((e: unknown) => e);
    expect(isPullguardError(err, 'STORE_IO')).toBe(true);
    expect((err as Error).message).toContain(rec.layers[0]!.digest);
    expect(images.list()).toEqual([]);
    const invalid = await images.put({ ...rec, id: 'sha256:nope' as Digest, repoTags: ['no-tag'], pulledAt: 'yesterday' }).catch((e: unknown) => e);
    expect(isPullguardError(invalid, 'INVALID_ARGUMENT')).toBe(true);
    expect((invalid as { problems: string[] }).problems.length).toBeGreaterThanOrEqual(4);
  });

  it('persists across reopen, through journal replay and compaction', async () => {
    const root = await newRoot();
    const first = await open(root, 5);
    const records: ImageRecord[] = [];
    for (let i = 0; i < 12; i++)
      records.push(
        await first.images.put(
          await storeImageRecord(first.blobs, { repoTags: [`docker.io/library/app:${i}`, 'docker.io/library/app:latest'], layerSizes: [16] }),
        ),
      );
    await first.images.remove(records[3]!.id);
    await first.images.put({ ...records[0]!, repoTags: ['docker.io/library/app:latest'], verification: { verdict: 'accepted', keys: ['abc'] } });
    const before = first.images.list();
    await first.close();
    opened.splice(opened.indexOf(first), 1);
    const files = (await readdir(join(root, 'index'))).sort();
    expect(files.some((f) => f === 'snapshot.json')).toBe(true); // compaction happened
    expect(files.filter((f) => f.startsWith('journal-'))).toHaveLength(1);

    const second = await open(root, 5);
    expect(sortById(second.images.list())).toEqual(sortById(before));
    expect(second.images.resolve('app:latest')?.id).toBe(records[0]!.id);
    expect(second.images.get(records[0]!.id)?.verification).toEqual({ verdict: 'accepted', keys: ['abc'] });
    expect(second.images.get(records[3]!.id)).toBeUndefined();
  });

  it('cuts a torn journal tail at open and keeps appending after it', async () => {
    const root = await newRoot();
    const first = await open(root);
    const a = await first.images.put(await storeImageRecord(first.blobs, { repoTags: ['docker.io/library/a:1'] }));
    await first.close();
    opened.splice(opened.indexOf(first), 1);
    const journal = join(root, 'index', 'journal-0.log');
    await appendFile(journal, '0123456789abcdef {"op":"put","rec'); // a kill -9 mid-write
    const second = await open(root);
    expect(second.images.loadReport.droppedJournalBytes).toBeGreaterThan(0);
    expect(second.images.list().map((r) => r.id)).toEqual([a.id]);
    const b = await second.images.put(await storeImageRecord(second.blobs, { repoTags: ['docker.io/library/b:1'] }));
    await second.close();
    opened.splice(opened.indexOf(second), 1);
    const third = await open(root);
    expect(third.images.list().map((r) => r.id)).toEqual([a.id, b.id]);
    expect(third.images.loadReport.droppedJournalBytes).toBe(0);
  });

  it('refuses to open over a damaged snapshot rather than forgetting every image', async () => {
    const root = await newRoot();
    const first = await open(root);
    await first.close();
    opened.splice(opened.indexOf(first), 1);
    await writeFile(join(root, 'index', 'snapshot.json'), '{"version":1,"generation":1,"records":[');
    await expect(openStore(root)).rejects.toMatchObject({ code: 'STORE_IO' });
  });

  it('collects blobs no record references, but not leased or in-flight ones', async () => {
    const { blobs, images } = await open(await newRoot());
    const kept = await images.put(await storeImageRecord(blobs, { repoTags: ['docker.io/library/kept:1'] }));
    const gone = await images.put(await storeImageRecord(blobs, { repoTags: ['docker.io/library/gone:1'], sharedLayers: [kept.layers[0]!] }));
    const signature = await commitBlob(blobs, randomBytes(300));
    await images.put({ ...kept, signatureBlobs: [signature] });
    await images.remove(gone.id);
    // A pull in progress: one blob committed under a lease, one still being ingested.
    const leasedDigest = await commitBlobLeased(blobs, randomBytes(50));
    const ingesting = randomBytes(10);
    const writer = await blobs.ingest({ mediaType: 'x', digest: digestOf(ingesting), size: 10 });

    const report = await images.collectGarbage();
    const goneOnly = [gone.configDigest, gone.manifestDigest, gone.layers[1]!.digest, gone.layers[2]!.digest].sort();
    expect([...report.deleted].sort()).toEqual(goneOnly);
    expect(report.freedBytes).toBeGreaterThan(1024 + 4096);
    for (const d of [kept.configDigest, kept.manifestDigest, ...kept.layers.map((l) => l.digest), signature, leasedDigest.digest])
      expect(await blobs.has(d)).toBe(true);
    await writer.write(ingesting);
    await writer.commit();
    leasedDigest.lease.release();
    const second = await images.collectGarbage();
    expect([...second.deleted].sort()).toEqual([leasedDigest.digest, digestOf(ingesting)].sort());
  });

  it('holds 10,000 records: list() is one frozen list until something changes, and a reopen keeps them', async () => {
    const root = await newRoot();
    const images = await FsImageIndex.open({ root, blobs: allBlobsPresent });
    const ids: Digest[] = [];
    for (let batch = 0; batch < 10; batch++) {
      const puts: Promise<ImageRecord>[] = [];
      for (let i = 0; i < 1000; i++) {
        const id = `sha256:${randomBytes(32).toString('hex')}` as Digest;
        ids.push(id);
        puts.push(images.put(fakeRecord(id, [`docker.io/library/img${batch}-${i}:latest`])));
      }
      await Promise.all(puts);
    }
    // The same frozen array while nothing changes (ListImages and the mirror cache by identity) ...
    const listed = images.list();
    expect(listed).toHaveLength(10_000);
    expect(Object.isFrozen(listed)).toBe(true);
    expect(images.list()).toBe(listed);
    // ... and a new one after any change.
    await images.put(fakeRecord(ids[0]!, ['docker.io/library/retag:1']));
    const relisted = images.list();
    expect(relisted).not.toBe(listed);
    expect(relisted.find((r) => r.id === ids[0])?.repoTags).toContain('docker.io/library/retag:1');
    await images.close();
    const reopened = await FsImageIndex.open({ root, blobs: allBlobsPresent });
    expect(reopened.list()).toHaveLength(10_000);
    expect(reopened.resolve('img9-999')?.repoTags).toEqual(['docker.io/library/img9-999:latest']);
    await reopened.close();
    expect(JSON.parse(await readFile(join(root, 'index', 'snapshot.json'), 'utf8')).records.length).toBeGreaterThan(0);
  });
});

async function commitBlobLeased(blobs: OpenedStore['blobs'], bytes: Uint8Array): Promise<{ digest: Digest; lease: { release(): void } }> {
  const lease = blobs.acquireLease([digestOf(bytes)]);
  const digest = await commitBlob(blobs, bytes);
  return { digest, lease };
}

const allBlobsPresent: IndexBlobs = {
  has: async () => true,
  stat: async () => ({ size: 1 }),
  delete: async () => false,
  list: async function* () {},
  isPinned: () => false,
};

function fakeRecord(id: Digest, repoTags: string[] = []): ImageRecord {
  return {
    id,
    repoTags,
    repoDigests: repoTags.map((t) => `${t.slice(0, t.lastIndexOf(':'))}@${id}`),
    manifestDigest: id,
    manifestMediaType: 'application/vnd.oci.image.manifest.v1+json',
    topDigest: id,
    topMediaType: 'application/vnd.oci.image.manifest.v1+json',
    configDigest: id,
    layers: [{ digest: id, size: 1000, mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip' }],
    size: 3000,
    user: '0',
    pulledAt: '2024-01-01T00:00:00.000Z',
  };
}

function sortById(records: readonly ImageRecord[]): ImageRecord[] {
  return [...records].sort((a, b) => a.id.localeCompare(b.id));
}
