/**
 * SIGTERM with clients that keep their connections open, as kubelet always does: the real server
 * process must refuse new calls at once (on those connections too), give in-flight pulls the grace
 * period, and exit — whatever connections are still open.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createCriImageClient, type CriImageClient } from '../../src/cli/cri-client.js';
import { startFaultRegistry, type FaultRegistry } from '../helpers/fault-registry.js';
import { buildOciImage, type BuiltImage } from '../helpers/oci-image.js';
import { startPullguard, type RunningPullguard } from '../helpers/pullguard-server.js';

const GRACE_MS = 2000;
/** Process start-up of the clean-up path, a slow CI machine: generous, and still far below systemd's 90 s. */
const SLACK_MS = 5000;

let work: string;
let policy: string;
let faults: FaultRegistry;
let small: BuiltImage;
let stalled: BuiltImage;

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'pullguard-shutdown-'));
  policy = join(work, 'policy.json');
  await writeFile(policy, JSON.stringify({ default: [{ type: 'insecureAcceptAnything' }] }));
  faults = await startFaultRegistry();
  small = await buildOciImage(join(work, 'small'), { tag: 'v1', seed: 61, layers: [{ size: 2_000 }] });
  stalled = await buildOciImage(join(work, 'stalled'), { tag: 'v1', seed: 62, layers: [{ size: 300_000 }] });
  faults.addImage('small', 'v1', small);
  faults.addImage('stalled', 'v1', stalled);
}, 60_000);

afterAll(async () => {
  await faults?.stop();
  await rm(work, { recursive: true, force: true });
});

function start(): Promise<RunningPullguard> {
  return startPullguard({ args: ['--signature-policy', policy, '--insecure-registry', faults.host, '--shutdown-grace', `${GRACE_MS}ms`] });
}

/** Waits for the process to exit; kills it (and fails) when it outlives `withinMs`. */
async function exitOf(pg: RunningPullguard, withinMs: number): Promise<{ code: number | null; ms: number }> {
  const started = Date.now();
  const child = pg.process;
  const code = await new Promise<number | null>((resolve) => {
    if (child.exitCode !== null) return resolve(child.exitCode);
    const timer = setTimeout(() => resolve(-1), withinMs);
    child.once('exit', (c) => {
      clearTimeout(timer);
      resolve(c);
    });
  });
  if (code === -1) {
    child.kill('SIGKILL');
    throw new Error(`pullguard still running ${withinMs} ms after SIGTERM:\n${pg.logs().slice(-10).join('\n')}`);
  }
  return { code, ms: Date.now() - started };
}

const outcome = (p: Promise<unknown>): Promise<grpc.ServiceError | 'ok'> =>
  p.then(
    () => 'ok' as const,
    (err: grpc.ServiceError) => err,
  );

async function until(what: string, check: () => boolean, ms = 15_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** A pull that stalls mid-layer until the server cancels it, on its own client (its own connection). */
async function stalledPull(pg: RunningPullguard): Promise<{ client: CriImageClient; pending: Promise<grpc.ServiceError | 'ok'> }> {
  const layer = stalled.layers[0]!.digest;
  faults.fault(layer, { kind: 'stall-after', bytes: 50_000 });
  const client = createCriImageClient(pg.socket);
  const seen = faults.requests.length;
  const pending = outcome(client.call('PullImage', { image: { image: `${faults.host}/stalled:v1` } }));
  await until('the stalled layer request', () => faults.requests.slice(seen).some((r) => r.path.endsWith(layer)));
  return { client, pending };
}

describe('SIGTERM with open client connections', () => {
  it('exits promptly while idle clients keep their connections open', async () => {
    const pg = await start();
    // Several clients that each made a call and keep their channel (and connection) open.
    const idle = [createCriImageClient(pg.socket), createCriImageClient(pg.socket), createCriImageClient(pg.socket)];
    try {
      for (const c of idle) await c.call('ListImages', {});
      pg.process.kill('SIGTERM');
      const { code, ms } = await exitOf(pg, GRACE_MS + SLACK_MS);
      expect(code).toBe(0);
      expect(ms).toBeLessThan(GRACE_MS + SLACK_MS);
      // Nothing was in flight: no reason to wait for the grace period at all.
      expect(pg.logs().some((l) => l.includes('"stopped"'))).toBe(true);
    } finally {
      for (const c of idle) c.close();
      await pg.stop();
    }
  });

  it('refuses a new call on a kept connection at once with UNAVAILABLE, cancels the in-flight pull after the grace, then exits', async () => {
    const pg = await start();
    const idle = createCriImageClient(pg.socket);
    const { client: busy, pending } = await stalledPull(pg);
    try {
      await idle.call('ListImages', {});
      const signalled = Date.now();
      pg.process.kill('SIGTERM');
      await until('the shutdown log line', () => pg.logs().some((l) => l.includes('shutting down')), 5000);

      // New calls on both kept channels: refused, not served, and not held until the grace ends.
      const seen = faults.requests.length;
      for (const c of [busy, idle]) {
        const askedAt = Date.now();
        const err = await outcome(c.call('PullImage', { image: { image: `${faults.host}/small:v1` } }, { deadlineMs: GRACE_MS + SLACK_MS }));
        expect(err).not.toBe('ok');
        expect((err as grpc.ServiceError).code).toBe(grpc.status.UNAVAILABLE);
        expect(Date.now() - askedAt).toBeLessThan(GRACE_MS);
      }
      expect(faults.requests.slice(seen).filter((r) => r.path.includes('/small/'))).toEqual([]);

      // The in-flight pull had its grace period, then was cancelled; the process ends.
      const err = await pending;
      const cancelledAfter = Date.now() - signalled;
      expect(err).not.toBe('ok');
      expect(cancelledAfter).toBeGreaterThanOrEqual(GRACE_MS - 100);
      expect(cancelledAfter).toBeLessThan(GRACE_MS + SLACK_MS);
      const { code } = await exitOf(pg, GRACE_MS + SLACK_MS);
      expect(code).toBe(0);
      expect(Date.now() - signalled).toBeLessThan(GRACE_MS + SLACK_MS);
    } finally {
      idle.close();
      busy.close();
      faults.clearFaults(stalled.layers[0]!.digest);
      await pg.stop();
    }
  });
});
