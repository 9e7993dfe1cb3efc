/**
 * CPU time (user + system) other processes used, from /proc/<pid>/stat: to show where a
 * benchmark's wall time went on a small machine (a 2-core runner is often CPU-bound).
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';

const TICKS_PER_SECOND = 100; // USER_HZ on Linux

/** User + system CPU milliseconds of `pid` so far; 0 if it is gone. */
export function cpuMs(pid: number): number {
  try {
    // Fields after the ")" that closes the command name: utime is the 12th, stime the 13th.
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
    return ((Number(fields[11]) + Number(fields[12])) * 1000) / TICKS_PER_SECOND;
  } catch {
    return 0;
  }
}

/** Process ids whose command line matches `pattern` (pgrep -f). */
export function pidsMatching(pattern: string): number[] {
  try {
    return execFileSync('pgrep', ['-f', '--', pattern], { encoding: 'utf8' }).trim().split('\n').filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

/** Measures the CPU the given processes use while `work` runs. */
export async function cpuDuring<T>(
  pids: Readonly<Record<string, readonly number[]>>,
  work: () => Promise<T>,
): Promise<{ value: T; cpuMs: Record<string, number> }> {
  const total = (list: readonly number[]): number => list.reduce((sum, pid) => sum + cpuMs(pid), 0);
  const before = Object.fromEntries(Object.entries(pids).map(([name, list]) => [name, total(list)]));
  const value = await work();
  const used = Object.fromEntries(Object.entries(pids).map(([name, list]) => [name, total(list) - before[name]!]));
  return { value, cpuMs: used };
}
