import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { lockStore } from '../../../src/store/store-lock.js';
import { packageRoot } from '../../../src/util/package-root.js';

const COMPILED_LOCK = join(packageRoot(), 'dist/src/store/store-lock.js');

const dirs: string[] = [];
const children: ChildProcess[] = [];
afterEach(async () => {
  for (const child of children.splice(0)) child.kill('SIGKILL');
  await Promise.all(dirs.splice(0).map((d) => rm(d, { recursive: true, force: true })));
});

async function root(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'pg-lock-'));
  dirs.push(dir);
  return dir;
}

/**
 * Another process that takes the store lock when told `go` on stdin, prints `locked` or `busy`,
 * and holds the lock until its stdin closes.
 */
function lockingProcess(dir: string): { child: ChildProcess; go(): void; answer: Promise<string> } {
  const script = `
    const { lockStore } = await import(process.argv[1]);
    const lines = (await import('node:readline')).createInterface({ input: process.stdin });
    let lock;
    lines.once('line', async () => {
      try { lock = await lockStore(process.argv[2]); console.log('locked'); }
      catch (err) { console.log('busy ' + err.message); }
    });
    lines.once('close', async () => { await lock?.release(); process.exit(0); });`;
  const child = spawn(process.execPath, ['--input-type=module', '-e', script, COMPILED_LOCK, dir], { stdio: ['pipe', 'pipe', 'inherit'] });
  children.push(child);
  const answer = new Promise<string>((resolve, reject) => {
    createInterface({ input: child.stdout! }).once('line', resolve);
    child.once('exit', (code) => reject(new Error(`locking process exited ${code} before answering`)));
  });
  answer.catch(() => undefined);
  return { child, go: () => child.stdin!.write('go\n'), answer };
}

async function ended(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  await new Promise((resolve) => child.once('exit', resolve));
}

describe('store lock', () => {
  it('records the owner and releases', async () => {
    const dir = await root();
    const lock = await lockStore(dir);
    expect((await readFile(join(dir, 'lock'), 'utf8')).trim()).toBe(String(process.pid));
    await lock.release();
    await expect(readFile(join(dir, 'lock'))).rejects.toMatchObject({ code: 'ENOENT' });
    await (await lockStore(dir)).release();
  });

  it('refuses a second holder while the first holds it, naming the owner, and not after release', async () => {
    const dir = await root();
    const first = await lockStore(dir);
    await expect(lockStore(dir)).rejects.toMatchObject({ code: 'STORE_IO', message: expect.stringContaining(`in use by process ${process.pid}`) });
    await first.release();
    await (await lockStore(dir)).release();
  });

  it('two lockers at the same moment on a store with a stale lock file: exactly one wins, every round', async () => {
    const dir = await root();
    for (let round = 0; round < 30; round++) {
      await writeFile(join(dir, 'lock'), '999999999\n'); // a stale file left by a dead owner
      const racers = [lockingProcess(dir), lockingProcess(dir)];
      // Both are started and waiting before either is told to go.
      await new Promise((r) => setTimeout(r, 0));
      for (const racer of racers) racer.go();
      const answers = await Promise.all(racers.map((r) => r.answer));
      expect(
        answers.filter((a) => a === 'locked'),
        `round ${round}: ${answers.join(' | ')}`,
      ).toHaveLength(1);
      for (const racer of racers) racer.child.stdin!.end();
      await Promise.all(racers.map((r) => ended(r.child)));
    }
  });

  it('a lock file naming a live, unrelated process (pid reused after a reboot) does not block', async () => {
    const dir = await root();
    const unrelated = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], { stdio: 'ignore' });
    children.push(unrelated);
    await writeFile(join(dir, 'lock'), `${unrelated.pid}\n`);
    const lock = await lockStore(dir);
    expect((await readFile(join(dir, 'lock'), 'utf8')).trim()).toBe(String(process.pid));
    await lock.release();
  });

  it('the lock of a process killed with SIGKILL is free at once', async () => {
    const dir = await root();
    const owner = lockingProcess(dir);
    owner.go();
    expect(await owner.answer).toBe('locked');
    await expect(lockStore(dir)).rejects.toMatchObject({ message: expect.stringContaining(`in use by process ${owner.child.pid}`) });
    owner.child.kill('SIGKILL');
    await ended(owner.child);
    const lock = await lockStore(dir);
    await lock.release();
  });
});
