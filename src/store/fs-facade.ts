/**
 * The few filesystem calls the store makes, behind an interface so tests can inject faults
 * (ENOSPC, EIO) without mocking modules. `nodeStoreFs` is the real thing.
 */
import { createReadStream } from 'node:fs';
import * as fsp from 'node:fs/promises';
import type { Readable } from 'node:stream';

export interface StoreFileHandle {
  write(buffer: Uint8Array, offset: number, length: number, position: number | null): Promise<{ bytesWritten: number }>;
  sync(): Promise<void>;
  datasync(): Promise<void>;
  truncate(length: number): Promise<void>;
  close(): Promise<void>;
}

export interface StoreFs {
  open(path: string, flags: string, mode?: number): Promise<StoreFileHandle>;
  link(existingPath: string, newPath: string): Promise<void>;
  rename(from: string, to: string): Promise<void>;
  unlink(path: string): Promise<void>;
  mkdir(path: string): Promise<void>;
  readdir(path: string): Promise<string[]>;
  stat(path: string): Promise<{ readonly size: number; isFile(): boolean }>;
  realpath(path: string): Promise<string>;
  readFile(path: string): Promise<Buffer>;
  /** `end` is inclusive, as in fs.createReadStream. */
  createReadStream(path: string, range: { start?: number; end?: number }): Readable;
}

export const nodeStoreFs: StoreFs = {
  open: async (path, flags, mode) => {
    const handle = await fsp.open(path, flags, mode);
    return {
      write: (buffer, offset, length, position) => handle.write(buffer, offset, length, position),
      sync: () => handle.sync(),
      datasync: () => handle.datasync(),
      truncate: (length) => handle.truncate(length),
      close: () => handle.close(),
    };
  },
  link: (existingPath, newPath) => fsp.link(existingPath, newPath),
  rename: (from, to) => fsp.rename(from, to),
  unlink: (path) => fsp.unlink(path),
  mkdir: async (path) => {
    await fsp.mkdir(path, { recursive: true });
  },
  readdir: (path) => fsp.readdir(path),
  stat: (path) => fsp.stat(path),
  realpath: (path) => fsp.realpath(path),
  readFile: (path) => fsp.readFile(path),
  // 1 MiB reads: the mirror streams whole layers to the runtime; 64 KiB reads halve its throughput.
  createReadStream: (path, range) => createReadStream(path, { ...range, highWaterMark: 1024 * 1024 }),
};

export function errnoCode(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : undefined;
}

/** Writes all of `data` (a regular-file write may be short). */
export async function writeFully(handle: StoreFileHandle, data: Uint8Array): Promise<void> {
  let done = 0;
  while (done < data.length) {
    const { bytesWritten } = await handle.write(data, done, data.length - done, null);
    done += bytesWritten;
  }
}

/** fsync a directory so a rename/link/unlink inside it survives power loss. */
export async function syncDirectory(fs: StoreFs, dir: string): Promise<void> {
  let handle: StoreFileHandle;
  try {
    handle = await fs.open(dir, 'r');
  } catch (err) {
    // Some filesystems refuse opening directories for sync; durability then is the fs's business.
    if (errnoCode(err) === 'EISDIR' || errnoCode(err) === 'EPERM') return;
    throw err;
  }
  try {
    await handle.sync();
  } catch (err) {
    if (errnoCode(err) !== 'EINVAL' && errnoCode(err) !== 'EBADF') throw err;
  } finally {
    await handle.close();
  }
}

/**
 * Directory fsyncs shared by concurrent callers: one that arrives while a sync runs waits for the
 * next one (which starts after its own link/rename, so it covers it), and every caller arriving
 * meanwhile shares that next sync. Concurrent blob commits then cost about one directory sync each
 * round instead of one each.
 */
export class CoalescedDirectorySync {
  readonly #fs: StoreFs;
  readonly #dir: string;
  #running: Promise<void> | undefined;
  #next: Promise<void> | undefined;

  constructor(fs: StoreFs, dir: string) {
    this.#fs = fs;
    this.#dir = dir;
  }

  sync(): Promise<void> {
    if (this.#running === undefined) return this.#start();
    this.#next ??= this.#running
      .catch(() => undefined)
      .then(() => {
        this.#next = undefined;
        return this.#start();
      });
    return this.#next;
  }

  #start(): Promise<void> {
    const running = syncDirectory(this.#fs, this.#dir).finally(() => {
      if (this.#running === running) this.#running = undefined;
    });
    this.#running = running;
    return running;
  }
}
