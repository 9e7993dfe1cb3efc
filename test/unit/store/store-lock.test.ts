import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { lockStore } from '../../../src/store/store-lock.js';

const dirs: string[] = [];
afterEach(async () => {
  await Promise.all(dirs.splice(0).map((d) => rm(d, { recursive: true, force: true })));
});

async function root(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'pg-lock-'));
  dirs.push(dir);
  return dir;
}

describe('store lock', () => {
  it('records the owner and releases', async () => {
    const dir = await root();
    const lock = await lockStore(dir);
    expect((await readFile(join(dir, 'lock'), 'utf8')).trim()).toBe(String(process.pid));
    await lock.release();
    await expect(readFile(join(dir, 'lock'))).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('refuses while another live process owns the store, and takes over once it is gone', async () => {
    const dir = await root();
    const owner = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 30000)'], { stdio: 'ignore' });
    await writeFile(join(dir, 'lock'), `${owner.pid}\n`);
    await expect(lockStore(dir)).rejects.toMatchObject({ code: 'STORE_IO', message: expect.stringContaining(`in use by process ${owner.pid}`) });
    const exited = new Promise((r) => owner.once('exit', r));
    owner.kill('SIGKILL');
    await exited;
    const lock = await lockStore(dir);
    expect((await readFile(join(dir, 'lock'), 'utf8')).trim()).toBe(String(process.pid));
    await lock.release();
  });
});
