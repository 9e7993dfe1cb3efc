/**
 * kill -9 at random moments while a child process ingests blobs and writes records; after every
 * kill the store must reopen consistent: no corrupt or partial blob visible, no record pointing at
 * a missing blob, no temp files left after open.
 */
import { spawn } from 'node:child_process';
import { randomInt } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { fsck } from '../../../src/store/fsck.js';
import { openStore } from '../../../src/store/open-store.js';

const CHILD = fileURLToPath(new URL('../../../dist/test/helpers/store-crash-child.js', import.meta.url));
const KILLS = 12;

describe('store crash consistency', () => {
  let root = '';
  afterAll(async () => {
    if (root !== '') await rm(root, { recursive: true, force: true });
  });

  it(`stays consistent across ${KILLS} SIGKILLs at random moments`, async () => {
    expect(existsSync(CHILD), `${CHILD} missing: run tsc first`).toBe(true);
    root = await mkdtemp(join(tmpdir(), 'pg-crash-'));
    let maxRecords = 0;
    let staleRemoved = 0;
    let tornTails = 0;
    for (let kill = 0; kill < KILLS; kill++) {
      await runAndKill(root, randomInt(30, 400));
      const staleBefore = (await readdir(join(root, 'ingest'))).length;
      const store = await openStore(root);
      const { blobs, images } = store;
      staleRemoved += staleBefore;
      if (images.loadReport.droppedJournalBytes > 0) tornTails += 1;
      expect(await readdir(join(root, 'ingest'))).toEqual([]);
      const report = await fsck(blobs, images);
      expect(report.corruptBlobs).toEqual([]);
      expect(report.brokenRecords).toEqual([]);
      expect(report.staleIngests).toEqual([]);
      expect(report.ok).toBe(true);
      maxRecords = Math.max(maxRecords, report.recordsChecked);
      await store.close();
    }
    console.log(
      `crash test: ${KILLS} kills, up to ${maxRecords} records, ${staleRemoved} orphaned temp files removed on open, ${tornTails} torn journal tails cut`,
    );
    expect(maxRecords).toBeGreaterThan(0); // the child really did work before being killed
    const store = await openStore(root);
    const { blobs, images } = store;
    const repaired = await fsck(blobs, images, { repair: true });
    expect(repaired.ok).toBe(true);
    const after = await fsck(blobs, images);
    expect(after.unreachableBlobs).toEqual([]);
    expect(after.recordsChecked).toBe(repaired.recordsChecked);
    await store.close();
  });
});

async function runAndKill(root: string, afterMs: number): Promise<void> {
  const child = spawn(process.execPath, [CHILD, root], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.on('exit', (code, signal) => resolve({ code, signal })),
  );
  await new Promise<void>((resolve, reject) => {
    child.stdout.on('data', (d: Buffer) => {
      if (d.toString().includes('ready')) resolve();
    });
    void exited.then(({ code }) => reject(new Error(`child exited early (${code}): ${stderr}`)));
  });
  await new Promise((r) => setTimeout(r, afterMs));
  child.kill('SIGKILL');
  const { signal } = await exited;
  expect(signal, `child died on its own: ${stderr}`).toBe('SIGKILL');
}
