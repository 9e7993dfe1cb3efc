/**
 * On-disk form of the image index: a snapshot plus an append-only journal.
 *
 *   <dir>/snapshot.json        {"version":1,"generation":N,"records":[…]}, replaced atomically
 *   <dir>/journal-<N>.log      one op per line: `<16 hex of sha256(json)> <json>\n`
 *
 * The snapshot of generation N holds everything before journal N, so loading is "snapshot, then
 * replay journal N". A line that is torn (kill -9 mid-write) or fails its checksum ends the replay
 * and is cut off, so later appends never follow garbage. Compaction writes snapshot N+1 (temp,
 * fsync, rename, fsync dir) before journal N+1 exists; a crash anywhere in between loads either
 * the old pair or the new snapshot with an empty journal.
 */
import { createHash, randomBytes } from 'node:crypto';
import { join } from 'node:path';
import type { Digest } from '../domain/digest.js';
import { PullguardError } from '../domain/errors.js';
import { errnoCode, syncDirectory, writeFully, type StoreFs } from './fs-facade.js';
import type { ImageRecord } from '../domain/image-record.js';

export type IndexOp = { readonly op: 'put'; readonly record: ImageRecord } | { readonly op: 'remove'; readonly id: Digest };

const SNAPSHOT = 'snapshot.json';
const SNAPSHOT_VERSION = 1;
const JOURNAL_RE = /^journal-(\d+)\.log$/;
const TEMP_RE = /^snapshot\.json\.tmp-/;

export function journalName(generation: number): string {
  return `journal-${generation}.log`;
}

export function encodeOp(op: IndexOp): Buffer {
  const json = JSON.stringify(op);
  return Buffer.from(`${checksum(json)} ${json}\n`, 'utf8');
}

function checksum(json: string): string {
  return createHash('sha256').update(json, 'utf8').digest('hex').slice(0, 16);
}

export interface LoadedIndex {
  readonly generation: number;
  readonly records: readonly ImageRecord[];
  readonly ops: readonly IndexOp[];
  /** Length of the valid journal prefix (where appends continue). */
  readonly journalBytes: number;
  /** Bytes cut off the journal's end: a torn or corrupt tail. */
  readonly droppedBytes: number;
}

export async function loadIndexFiles(fs: StoreFs, dir: string): Promise<LoadedIndex> {
  let generation = 0;
  let records: ImageRecord[] = [];
  const snapshotText = await readIfPresent(fs, join(dir, SNAPSHOT));
  if (snapshotText !== undefined) {
    let parsed: { version?: unknown; generation?: unknown; records?: unknown };
    try {
      parsed = JSON.parse(snapshotText.toString('utf8')) as typeof parsed;
    } catch (err) {
      // Never silently forget every image: a snapshot is written atomically, so this is real damage.
      throw new PullguardError('STORE_IO', `image index snapshot ${join(dir, SNAPSHOT)} is not valid JSON`, { cause: err });
    }
    if (parsed.version !== SNAPSHOT_VERSION || !Number.isSafeInteger(parsed.generation) || !Array.isArray(parsed.records)) {
      throw new PullguardError('STORE_IO', `image index snapshot ${join(dir, SNAPSHOT)} has an unknown format`);
    }
    generation = parsed.generation as number;
    records = parsed.records as ImageRecord[];
  }

  const ops: IndexOp[] = [];
  let journalBytes = 0;
  let droppedBytes = 0;
  const journalPath = join(dir, journalName(generation));
  const journal = await readIfPresent(fs, journalPath);
  if (journal !== undefined) {
    let start = 0;
    while (start < journal.length) {
      const newline = journal.indexOf(0x0a, start);
      if (newline === -1) break;
      const op = decodeLine(journal.subarray(start, newline).toString('utf8'));
      if (op === undefined) break;
      ops.push(op);
      start = newline + 1;
    }
    journalBytes = start;
    droppedBytes = journal.length - start;
    if (droppedBytes > 0) {
      const handle = await fs.open(journalPath, 'r+');
      try {
        await handle.truncate(journalBytes);
        await handle.sync();
      } finally {
        await handle.close();
      }
    }
  }

  // Journals of other generations and half-written snapshots are leftovers of a crash mid-compaction.
  for (const name of await fs.readdir(dir)) {
    const match = JOURNAL_RE.exec(name);
    if ((match !== null && Number(match[1]) !== generation) || TEMP_RE.test(name)) await unlinkIfPresent(fs, join(dir, name));
  }
  return { generation, records, ops, journalBytes, droppedBytes };
}

function decodeLine(line: string): IndexOp | undefined {
  const space = line.indexOf(' ');
  if (space !== 16) return undefined;
  const json = line.slice(space + 1);
  if (checksum(json) !== line.slice(0, space)) return undefined;
  try {
    const op = JSON.parse(json) as IndexOp;
    if (op.op === 'put' && typeof op.record === 'object' && op.record !== null) return op;
    if (op.op === 'remove' && typeof op.id === 'string') return op;
  } catch {
    // fall through: not an op
  }
  return undefined;
}

export async function writeSnapshot(fs: StoreFs, dir: string, generation: number, records: readonly ImageRecord[]): Promise<void> {
  const temp = join(dir, `${SNAPSHOT}.tmp-${randomBytes(6).toString('hex')}`);
  const body = Buffer.from(JSON.stringify({ version: SNAPSHOT_VERSION, generation, records }), 'utf8');
  const handle = await fs.open(temp, 'wx', 0o644);
  try {
    await writeFully(handle, body);
    await handle.sync();
  } catch (err) {
    await handle.close().catch(() => undefined);
    await unlinkIfPresent(fs, temp).catch(() => undefined);
    throw err;
  }
  await handle.close();
  try {
    await fs.rename(temp, join(dir, SNAPSHOT));
  } catch (err) {
    await unlinkIfPresent(fs, temp).catch(() => undefined);
    throw err;
  }
  await syncDirectory(fs, dir);
}

async function readIfPresent(fs: StoreFs, path: string): Promise<Buffer | undefined> {
  try {
    return await fs.readFile(path);
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return undefined;
    throw err;
  }
}

export async function unlinkIfPresent(fs: StoreFs, path: string): Promise<void> {
  try {
    await fs.unlink(path);
  } catch (err) {
    if (errnoCode(err) !== 'ENOENT') throw err;
  }
}
