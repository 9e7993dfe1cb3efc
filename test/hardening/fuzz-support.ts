/**
 * Shared pieces of the hardening suites: a printed, reproducible seed (override with
 * PULLGUARD_HARDENING_SEED), a seeded PRNG for the crash suite, the `FIGURE name=value` lines the
 * README "Reliability" table is built from, and a tree snapshot for "nothing was created" checks.
 */
import { lstat, readdir } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { ERROR_CODES, isPullguardError } from '../../src/domain/errors.js';

/** A seed from the environment (to replay a failure) or a fresh one; printed either way. */
export function suiteSeed(suite: string): number {
  const given = process.env['PULLGUARD_HARDENING_SEED'];
  const seed = given !== undefined && /^\d+$/.test(given) ? Number(given) : Math.floor(Math.random() * 2 ** 31);
  console.log(`FIGURE ${suite}.seed=${seed} (replay: PULLGUARD_HARDENING_SEED=${seed})`);
  return seed;
}

export function figure(name: string, value: number | string): void {
  console.log(`FIGURE ${name}=${value}`);
}

/** mulberry32: small, fast, reproducible; not for cryptography. */
export function seededRandom(seed: number): { next(): number; int(min: number, max: number): number; pick<T>(items: readonly T[]): T } {
  let a = seed >>> 0;
  const next = (): number => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return {
    next,
    int: (min, max) => min + Math.floor(next() * (max - min + 1)),
    pick: <T>(items: readonly T[]): T => items[Math.floor(next() * items.length)] as T,
  };
}

/**
 * Runs `fn`; a return or a coded PullguardError is fine, anything else is a bug and rethrown with
 * the offending input so fast-check shrinks and reports it.
 */
export async function expectCodedOrOk(what: string, input: unknown, fn: () => unknown): Promise<'ok' | string> {
  try {
    await fn();
    return 'ok';
  } catch (err) {
    if (isPullguardError(err) && (ERROR_CODES as readonly string[]).includes(err.code) && err.message.length > 0) return err.code;
    const shown = typeof input === 'string' ? JSON.stringify(input.slice(0, 300)) : String(input);
    throw new Error(`${what} threw an uncoded ${err instanceof Error ? `${err.name}: ${err.message}` : String(err)} for input ${shown}`, { cause: err });
  }
}

/** Every path under `root` with its type and size (directories and files), sorted. */
export async function snapshotTree(root: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (dir: string): Promise<void> => {
    let entries: string[];
    try {
      entries = await readdir(dir);
    } catch {
      return;
    }
    for (const name of entries) {
      const path = join(dir, name);
      const st = await lstat(path).catch(() => undefined);
      if (st === undefined) continue;
      const kind = st.isDirectory() ? 'd' : st.isSocket() ? 's' : st.isSymbolicLink() ? 'l' : 'f';
      out.push(`${kind} ${relative(root, path)}${kind === 'f' ? ` ${st.size}` : ''}`);
      if (st.isDirectory()) await walk(path);
    }
  };
  await walk(root);
  return out.sort();
}
