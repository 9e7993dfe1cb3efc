/**
 * One process per store: the index journal and garbage collection assume a single writer (leases
 * are in-process). The owner's pid is kept in `<root>/lock`; a lock whose process is gone (kill -9,
 * crash) is taken over. Offline commands (fsck, verify) therefore refuse to run beside the server.
 */
import { open, readFile, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { PullguardError } from '../domain/errors.js';

export interface StoreLock {
  release(): Promise<void>;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

export async function lockStore(root: string): Promise<StoreLock> {
  const path = join(root, 'lock');
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      const handle = await open(path, 'wx', 0o644);
      await handle.writeFile(`${process.pid}\n`);
      await handle.close();
      let released = false;
      return {
        async release() {
          if (released) return;
          released = true;
          await unlink(path).catch(() => undefined);
        },
      };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw new PullguardError('STORE_IO', `cannot lock the store ${root}: ${(err as Error).message}`, { cause: err, facts: { root } });
    }
    const owner = Number((await readFile(path, 'utf8').catch(() => '')).trim());
    if (Number.isInteger(owner) && owner > 0 && owner !== process.pid && alive(owner)) {
      throw new PullguardError('STORE_IO', `the store ${root} is in use by process ${owner} (a running pullguard serve); stop it first`, { facts: { root, owner } });
    }
    // The owner is gone: its lock is stale.
    await unlink(path).catch(() => undefined);
  }
  throw new PullguardError('STORE_IO', `cannot lock the store ${root}: another process keeps taking the lock`, { facts: { root } });
}
