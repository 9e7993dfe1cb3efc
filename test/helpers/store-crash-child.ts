/**
 * Child process for the store crash test: opens the store at argv[2], prints "ready", then ingests
 * blobs, puts and removes records, leaves half-written ingests and runs GC in a loop until it is
 * SIGKILLed. Run compiled: `node dist/test/helpers/store-crash-child.js <root>`.
 */
import { randomBytes, randomInt } from 'node:crypto';
import type { Digest } from '../../src/domain/digest.js';
import { openStore } from '../../src/store/open-store.js';
import { digestOf, storeImageRecord } from './store-records.js';

const root = process.argv[2];
if (root === undefined) {
  process.stderr.write('usage: store-crash-child <root>\n');
  process.exit(2);
}

// Compact often, so kills also land in the middle of snapshot writes.
const { blobs, images } = await openStore(root, { compactAfter: 7 });
process.stdout.write('ready\n');

for (let step = 0; ; step++) {
  const roll = randomInt(100);
  const records = images.list();
  if (roll < 60 || records.length === 0) {
    const shared = records[randomInt(Math.max(records.length, 1))]?.layers[0];
    const lease = blobs.acquireLease([]);
    try {
      const record = await storeImageRecord(blobs, {
        repoTags: [`docker.io/library/app:${randomInt(6)}`],
        layerSizes: [randomInt(1, 300_000), randomInt(0, 20_000)],
        ...(shared !== undefined ? { sharedLayers: [{ digest: shared.digest, size: shared.size }] } : {}),
        pulledAt: new Date(1_700_000_000_000 + step * 1000).toISOString(),
      });
      await images.put({ ...record, verification: { step, note: 'x'.repeat(randomInt(2000)) } });
    } finally {
      lease.release();
    }
  } else if (roll < 75) {
    const victim = records[randomInt(records.length)];
    if (victim !== undefined) await images.remove(victim.id as Digest);
  } else if (roll < 85) {
    await images.collectGarbage();
  } else {
    // An ingest abandoned midway (a dropped pull): its temp file is left for the next open.
    const bytes = randomBytes(randomInt(1000, 100_000));
    const writer = await blobs.ingest({ mediaType: 'x', digest: digestOf(bytes), size: bytes.length });
    await writer.write(bytes.subarray(0, bytes.length >> 1));
  }
}
