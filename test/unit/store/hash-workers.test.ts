import { createHash, randomBytes } from 'node:crypto';
import { afterAll, describe, expect, it } from 'vitest';
import { HashWorkerPool, inlineHash } from '../../../src/store/hash-workers.js';

const pool = new HashWorkerPool(2);
afterAll(() => pool.close());

const expected = (parts: Uint8Array[], algorithm = 'sha256'): string => {
  const hash = createHash(algorithm);
  for (const part of parts) hash.update(part);
  return hash.digest('hex');
};

describe('HashWorkerPool', () => {
  it('hashes batches in order, many blobs at once without mixing them up', async () => {
    const blobs = Array.from({ length: 7 }, () => Array.from({ length: 5 }, () => randomBytes(100_000)));
    const hashes = blobs.map((_, i) => pool.create(i % 2 === 0 ? 'sha256' : 'sha512'));
    for (let part = 0; part < 5; part++) blobs.forEach((parts, i) => hashes[i]!.update(new Uint8Array(parts[part]!)));
    const digests = await Promise.all(hashes.map((h) => h.digest()));
    expect(digests).toEqual(blobs.map((parts, i) => expected(parts, i % 2 === 0 ? 'sha256' : 'sha512')));
  });

  it('copies bytes that share a buffer instead of taking the buffer away', async () => {
    const backing = randomBytes(64 * 1024);
    const view = backing.subarray(1000, 5000);
    const hash = pool.create('sha256');
    hash.update(view);
    expect(backing.length).toBe(64 * 1024);
    expect(await hash.digest()).toBe(expected([view]));
  });

  it('hashes an empty blob, and drop forgets a hash', async () => {
    expect(await pool.create('sha256').digest()).toBe(expected([]));
    const dropped = pool.create('sha256');
    dropped.update(new Uint8Array([1, 2, 3]));
    dropped.drop();
  });

  it('inline hashing gives the same digests', async () => {
    const parts = [randomBytes(10), randomBytes(20)];
    const hash = inlineHash('sha256');
    parts.forEach((p) => hash.update(p));
    expect(await hash.digest()).toBe(expected(parts));
  });
});
