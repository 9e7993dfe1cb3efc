/** openStore for the offline commands: an absent store is an error and nothing is created. */
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { openStore } from '../../../src/store/open-store.js';

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'pullguard-open-'));
});
afterEach(async () => rm(dir, { recursive: true, force: true }));

describe('openStore({ create: false })', () => {
  it('refuses a root that does not exist, or holds no store, and creates nothing', async () => {
    const absent = join(dir, 'state', 'store');
    await expect(openStore(absent, { create: false })).rejects.toMatchObject({ code: 'STORE_IO', facts: { root: absent, notFound: true } });
    expect(existsSync(join(dir, 'state'))).toBe(false);
    const empty = join(dir, 'empty');
    await mkdir(empty);
    await expect(openStore(empty, { create: false })).rejects.toMatchObject({
      message: `no pullguard store at ${empty} (nothing was created); is the state directory right?`,
    });
    expect(existsSync(join(empty, 'lock'))).toBe(false);
  });

  it('opens a store that exists', async () => {
    const root = join(dir, 'store');
    await (await openStore(root)).close();
    const store = await openStore(root, { create: false });
    expect(store.images.list()).toEqual([]);
    await store.close();
  });
});
