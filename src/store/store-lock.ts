/**
 * One process per store: the index journal and garbage collection assume a single writer (leases
 * are in-process). Offline commands (fsck, verify) therefore refuse to run beside the server.
 *
 * The lock is an abstract unix socket bound under a name made from the store directory's device and
 * inode. The kernel holds the name for the process and frees it the moment the process dies (kill -9,
 * crash, reboot), so there is no stale state to judge and no check-then-act race: of two processes
 * binding at once exactly one succeeds, and a pid reused by an unrelated process after a reboot means
 * nothing. `<root>/lock` still records the owner's pid, only to name it in the refusal.
 *
 * Abstract socket names live in a network namespace: processes sharing one store must share the
 * network namespace (pullguard runs on the host; tests and a node do).
 */
import { createServer, type Server } from 'node:net';
import { readFile, stat, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { PullguardError } from '../domain/errors.js';

export interface StoreLock {
  release(): Promise<void>;
}

/** The kernel-held name of the store at `root`: its identity on disk, however the path is spelled. */
async function lockName(root: string): Promise<string> {
  const { dev, ino } = await stat(root, { bigint: true });
  return `\0pullguard-store-${dev}-${ino}`;
}

function bind(name: string): Promise<Server | 'in-use'> {
  return new Promise((resolve, reject) => {
    // Nobody is meant to connect; anyone who does is hung up on.
    const server = createServer((socket) => socket.destroy());
    server.once('error', (err: NodeJS.ErrnoException) => (err.code === 'EADDRINUSE' ? resolve('in-use') : reject(err)));
    server.listen({ path: name, backlog: 1 }, () => {
      server.unref(); // the lock must never keep the process alive
      resolve(server);
    });
  });
}

export async function lockStore(root: string): Promise<StoreLock> {
  const pidFile = join(root, 'lock');
  let bound: Server | 'in-use';
  try {
    bound = await bind(await lockName(root));
  } catch (err) {
    throw new PullguardError('STORE_IO', `cannot lock the store ${root}: ${(err as Error).message}`, { cause: err, facts: { root } });
  }
  if (bound === 'in-use') {
    const owner = Number((await readFile(pidFile, 'utf8').catch(() => '')).trim());
    const who = Number.isInteger(owner) && owner > 0 ? `process ${owner}` : 'another process';
    throw new PullguardError('STORE_IO', `the store ${root} is in use by ${who} (a running pullguard serve, fsck or verify); stop it first`, {
      facts: { root, ...(Number.isInteger(owner) && owner > 0 ? { owner } : {}) },
    });
  }
  const server = bound;
  // Informational only: whatever an earlier owner left here is overwritten.
  await writeFile(pidFile, `${process.pid}\n`, { mode: 0o644 }).catch(() => undefined);
  let released = false;
  return {
    async release() {
      if (released) return;
      released = true;
      if ((await readFile(pidFile, 'utf8').catch(() => '')).trim() === String(process.pid)) await unlink(pidFile).catch(() => undefined);
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
