import { randomBytes } from 'node:crypto';
import { appendFile, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { digestHex } from '../../../src/domain/digest.js';
import { fsck } from '../../../src/store/fsck.js';
import { openStore, type OpenedStore } from '../../../src/store/open-store.js';
import { commitBlob, storeImageRecord } from '../../helpers/store-records.js';

const roots: string[] = [];
const opened: OpenedStore[] = [];
afterEach(async () => {
  await Promise.all(opened.splice(0).map((s) => s.close()));
  await Promise.all(roots.splice(0).map((r) => rm(r, { recursive: true, force: true })));
});

async function fresh(): Promise<{ root: string } & OpenedStore> {
  const root = await mkdtemp(join(tmpdir(), 'pg-fsck-'));
  roots.push(root);
  const store = await openStore(root);
  opened.push(store);
  return { root, ...store };
}

describe('fsck', () => {
  it('finds nothing wrong in a sound store', async () => {
    const { blobs, images } = await fresh();
    await images.put(await storeImageRecord(blobs, { repoTags: ['docker.io/library/a:1'] }));
    const report = await fsck(blobs, images);
    expect(report).toMatchObject({ ok: true, blobsChecked: 4, recordsChecked: 1, corruptBlobs: [], brokenRecords: [], staleIngests: [], unreachableBlobs: [] });
  });

  it('reports a record whose manifest, config and layers disagree', async () => {
    const { blobs, images } = await fresh();
    const a = await storeImageRecord(blobs, { repoTags: ['docker.io/library/a:1'] });
    const b = await storeImageRecord(blobs, { repoTags: ['docker.io/library/b:1'] });
    // a's manifest and config with b's layers: every blob is there and sound, the record is not.
    await images.put({ ...a, layers: b.layers });
    const report = await fsck(blobs, images);
    expect(report.ok).toBe(false);
    expect(report.corruptBlobs).toEqual([]);
    expect(report.brokenRecords).toHaveLength(1);
    expect(report.brokenRecords[0]?.problems).toEqual([
      expect.stringContaining(`manifest ${a.manifestDigest} names layers [${a.layers.map((l) => `${l.digest}/${l.size}`).join(', ')}]`),
    ]);
  });

  it('reports corrupt blobs, broken records, stale temp files and unreachable blobs, then repairs only those', async () => {
    const { root, blobs, images } = await fresh();
    const sound = await images.put(await storeImageRecord(blobs, { repoTags: ['docker.io/library/sound:1'] }));
    const damaged = await images.put(await storeImageRecord(blobs, { repoTags: ['docker.io/library/damaged:1'], sharedLayers: [sound.layers[0]!] }));
    const missing = await images.put(await storeImageRecord(blobs, { repoTags: ['docker.io/library/missing:1'] }));
    const orphan = await commitBlob(blobs, randomBytes(77));
    // Bit rot in one of damaged's own layers; one of missing's blobs deleted behind the index's back.
    const rotten = damaged.layers[1]!.digest;
    await appendFile(join(root, 'blobs', 'sha256', digestHex(rotten)), 'rot');
    await blobs.delete(missing.configDigest);
    await writeFile(join(root, 'ingest', 'leftover-from-a-crash'), 'half');

    const report = await fsck(blobs, images);
    expect(report.ok).toBe(false);
    expect(report.corruptBlobs.map((c) => c.digest)).toEqual([rotten]);
    expect(report.brokenRecords.map((r) => r.id).sort()).toEqual([damaged.id, missing.id].sort());
    expect(report.brokenRecords.find((r) => r.id === damaged.id)?.problems).toEqual([`blob ${rotten} is corrupt`]);
    expect(report.brokenRecords.find((r) => r.id === missing.id)?.problems).toEqual([`blob ${missing.configDigest} is missing`]);
    expect(report.staleIngests).toEqual(['leftover-from-a-crash']);
    expect(report.unreachableBlobs).toContain(orphan);
    expect(report.unreachableBlobs).not.toContain(sound.layers[0]!.digest); // shared with a sound record
    expect(report.repaired).toBeUndefined();
    expect(await blobs.has(rotten)).toBe(true); // report-only touches nothing

    const repaired = await fsck(blobs, images, { repair: true });
    expect([...repaired.repaired!.removedRecords].sort()).toEqual([damaged.id, missing.id].sort());
    expect(repaired.repaired!.deletedBlobs).toContain(rotten);
    expect(repaired.repaired!.deletedBlobs).toContain(orphan);
    expect(repaired.repaired!.removedIngests).toEqual(['leftover-from-a-crash']);
    expect(images.list().map((r) => r.id)).toEqual([sound.id]);
    for (const d of [sound.configDigest, sound.manifestDigest, ...sound.layers.map((l) => l.digest)]) expect(await blobs.has(d)).toBe(true);

    const after = await fsck(blobs, images);
    expect(after).toMatchObject({ ok: true, corruptBlobs: [], brokenRecords: [], staleIngests: [], unreachableBlobs: [], blobsChecked: 4 });
  });

  it('flags a record whose layer size disagrees with the stored blob', async () => {
    const { blobs, images } = await fresh();
    const rec = await storeImageRecord(blobs, { repoTags: ['docker.io/library/a:1'] });
    await images.put({ ...rec, layers: [{ ...rec.layers[0]!, size: rec.layers[0]!.size + 1 }, rec.layers[1]!] });
    const report = await fsck(blobs, images);
    expect(report.brokenRecords[0]?.problems[0]).toMatch(/is 1024 bytes, the record says 1025/);
  });
});
