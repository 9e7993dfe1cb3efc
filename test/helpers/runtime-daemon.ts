/**
 * What the runtime helpers (containerd.ts, crio.ts) share about the daemon process they start: wait
 * until its CRI answers, and stop it by PID — SIGTERM, then SIGKILL after a grace period.
 */
import type { ChildProcess } from 'node:child_process';
import type { CriImageClient } from '../../src/cli/cri-client.js';

/**
 * Until `cri` answers ImageFsInfo — the liveness probe kubelet uses; it answers only once the CRI
 * plugin is up. Fails (and kills the process) when it exits or does not answer in time.
 */
export async function waitForCri(name: string, proc: ChildProcess, cri: CriImageClient, timeoutMs: number, logTail: () => string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let lastError = '';
  while (Date.now() < deadline) {
    if (proc.exitCode !== null) throw new Error(`${name} exited with ${proc.exitCode}: ${logTail()}`);
    try {
      await cri.call('ImageFsInfo', {}, { deadlineMs: 1000 });
      return;
    } catch (err) {
      lastError = (err as Error).message;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  proc.kill('SIGKILL');
  throw new Error(`${name} did not answer CRI ImageFsInfo within ${timeoutMs / 1000} s (${lastError}): ${logTail()}`);
}

/** SIGTERM, and SIGKILL when it has not exited after `graceMs`; resolves once it has exited. */
export async function stopDaemon(proc: ChildProcess | undefined, graceMs: number): Promise<void> {
  if (proc === undefined || proc.exitCode !== null || proc.signalCode !== null) return;
  const exited = new Promise((r) => proc.once('exit', r));
  proc.kill('SIGTERM');
  await Promise.race([exited, new Promise((r) => setTimeout(r, graceMs))]);
  if (proc.exitCode === null && proc.signalCode === null) {
    proc.kill('SIGKILL');
    await exited;
  }
}
