/**
 * Resident memory of another process from /proc/<pid>/status: VmHWM is the kernel's own peak RSS
 * over the process's life; the sampler also polls VmRSS (every 50 ms by default) to show the peak
 * within a window, e.g. one pull, separately from start-up.
 */
import { readFileSync } from 'node:fs';
import { MiB } from './stats.js';

export interface MemoryStatus {
  readonly rssBytes: number;
  readonly hwmBytes: number;
}

export function readMemoryStatus(pid: number): MemoryStatus | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/status`, 'utf8');
  } catch {
    return undefined;
  }
  const kib = (field: string): number => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(text)?.[1] ?? Number.NaN) * 1024;
  return { rssBytes: kib('VmRSS'), hwmBytes: kib('VmHWM') };
}

export interface RssSampler {
  /** Stops polling; returns the peak VmRSS seen while polling and the process's VmHWM now (MiB). */
  stop(): { peakSampledMiB: number; hwmMiB: number; samples: number };
}

export function sampleRss(pid: number, intervalMs = 50): RssSampler {
  let peak = 0;
  let samples = 0;
  const poll = (): void => {
    const status = readMemoryStatus(pid);
    if (status === undefined) return;
    samples += 1;
    peak = Math.max(peak, status.rssBytes);
  };
  poll();
  const timer = setInterval(poll, intervalMs);
  return {
    stop() {
      clearInterval(timer);
      poll();
      const hwm = readMemoryStatus(pid)?.hwmBytes ?? Number.NaN;
      return { peakSampledMiB: peak / MiB, hwmMiB: hwm / MiB, samples };
    },
  };
}
