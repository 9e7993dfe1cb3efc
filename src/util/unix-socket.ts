/**
 * The unix sockets pullguard listens on (the CRI socket, the verifier endpoint): prepared the same
 * way and bound so that they are never, even for an instant, more accessible than their mode.
 */
import { chmod, lstat, mkdir, unlink } from 'node:fs/promises';
import { createConnection, type Server } from 'node:net';
import { dirname } from 'node:path';
import { PullguardError } from '../domain/errors.js';

/**
 * Creates the socket's directory and removes a socket left by a process that is gone. Refuses a
 * path that is not a socket, or one another server still answers on. `what` names it in errors.
 */
export async function prepareSocketPath(socketPath: string, what: string): Promise<void> {
  await mkdir(dirname(socketPath), { recursive: true, mode: 0o750 });
  let stat;
  try {
    stat = await lstat(socketPath);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw new PullguardError('INVALID_CONFIG', `cannot inspect ${what} path ${socketPath}`, { cause: err });
  }
  if (!stat.isSocket()) throw new PullguardError('INVALID_CONFIG', `${what} path ${socketPath} exists and is not a socket; refusing to replace it`);
  const live = await new Promise<boolean>((resolve) => {
    const probe = createConnection(socketPath);
    probe.once('connect', () => {
      probe.destroy();
      resolve(true);
    });
    probe.once('error', () => resolve(false));
  });
  if (live) throw new PullguardError('INVALID_CONFIG', `another server is already listening on ${socketPath}`);
  await unlink(socketPath);
}

/** Binds under the umask that matches `mode`, then sets `mode` exactly. */
export async function listenOnUnixSocket(server: Server, socketPath: string, mode: number): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    const previous = process.umask(0o777 & ~mode);
    try {
      server.listen(socketPath, () => {
        server.off('error', reject);
        resolve();
      });
    } finally {
      process.umask(previous);
    }
  });
  await chmod(socketPath, mode);
}
