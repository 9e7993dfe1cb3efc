/**
 * Crash suite: SIGKILL the real server at seeded-random moments while it pulls (from the real
 * docker-registry, and from the fault registry with blobs that stall mid-body so the kill lands
 * mid-ingest), removes images and collects garbage (RemoveImage runs GC) — often all at once, over
 * images that share layers. After every kill: `pullguard fsck --json` on the state dir must be
 * clean, every image whose PullImage (or RemoveImage) had returned must be exactly as the client was
 * told, and every interrupted pull must succeed when retried on the restarted server.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFaultRegistry, type FaultRegistry } from '../helpers/fault-registry.js';
import { buildOciImage, type BuiltImage } from '../helpers/oci-image.js';
import { MAIN, startPullguard, type RunningPullguard } from '../helpers/pullguard-server.js';
import { pushImage, startRegistry, type StartedRegistry } from '../helpers/registry.js';
import { figure, seededRandom, suiteSeed } from './fuzz-support.js';

const execFileAsync = promisify(execFile);
const KILLS = 24;
const SEED = suiteSeed('crash');
const rng = seededRandom(SEED);

/** What the client was last told about an image (`unknown`: the call was cut by the kill). */
type Known = 'present' | 'absent' | 'unknown';

interface Tracked {
  readonly name: string;
  readonly image: BuiltImage;
  readonly source: 'registry' | 'fault';
  state: Known;
  /** A pull of it was interrupted and has not been retried yet. */
  interrupted: boolean;
}

let work: string;
let policy: string;
let registry: StartedRegistry;
let faults: FaultRegistry;
const tracked: Tracked[] = [];

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'pullguard-crash-suite-'));
  policy = join(work, 'policy.json');
  const { writeFile } = await import('node:fs/promises');
  await writeFile(policy, JSON.stringify({ default: [{ type: 'insecureAcceptAnything' }] }));
  [registry, faults] = await Promise.all([startRegistry(), startFaultRegistry()]);
  // Images share a base and a middle layer (seed 60), and each has one unique layer: removing one
  // while pulling another makes GC and ingest race over the shared blobs.
  for (const i of [0, 1, 2, 3]) {
    const image = await buildOciImage(join(work, `reg-${i}`), {
      tag: 'v1',
      seed: 60,
      layers: [{ size: 1_000_000 }, { size: 400_000 }, { files: { [`etc/unique-${i}`]: `registry image ${i}` } }],
    });
    await pushImage(image.dir, `crash/app${i}:v1`, registry);
    tracked.push({ name: `${registry.host}/crash/app${i}:v1`, image, source: 'registry', state: 'absent', interrupted: false });
  }
  for (const i of [0, 1, 2]) {
    const image = await buildOciImage(join(work, `fault-${i}`), {
      tag: 'v1',
      seed: 61,
      layers: [{ size: 600_000 }, { size: 300_000 + i * 1000 }, { files: { [`etc/unique-${i}`]: `fault image ${i}` } }],
    });
    faults.addImage(`slow${i}`, 'v1', image);
    tracked.push({ name: `${faults.host}/slow${i}:v1`, image, source: 'fault', state: 'absent', interrupted: false });
  }
}, 120_000);

afterAll(async () => {
  await Promise.all([registry?.stop(), faults?.stop()]);
  await rm(work, { recursive: true, force: true });
});

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

interface FsckJson {
  ok: boolean;
  blobsChecked: number;
  recordsChecked: number;
  corruptBlobs: unknown[];
  brokenRecords: unknown[];
  staleIngests: unknown[];
}

async function fsckJson(stateDir: string): Promise<FsckJson> {
  const run = await execFileAsync(process.execPath, [MAIN, 'fsck', '--state-dir', stateDir, '--json']).then(
    (r) => ({ code: 0, stdout: r.stdout }),
    (e: { code: number; stdout: string; stderr: string }) => ({ code: e.code, stdout: e.stdout || e.stderr }),
  );
  if (!run.stdout.trimStart().startsWith('{')) throw new Error(`fsck failed: ${run.stdout}`);
  const report = JSON.parse(run.stdout) as FsckJson;
  expect(report.corruptBlobs).toEqual([]);
  expect(report.brokenRecords).toEqual([]);
  expect(report.ok).toBe(true);
  expect(run.code).toBe(0);
  return report;
}

/** A stall queued for a blob the pull never asked for must not hit the retry: read it away. */
async function drainFault(digest: string, requestsBefore: number): Promise<void> {
  const seen = faults.requests.filter((r) => r.method === 'GET' && r.path.endsWith(`/blobs/${digest}`)).length;
  if (seen > requestsBefore) return;
  const controller = new AbortController();
  const res = await fetch(`${faults.url}/v2/slow0/blobs/${digest}`, { signal: controller.signal });
  controller.abort();
  await res.body?.cancel().catch(() => undefined);
}

describe('SIGKILL during pulls, removals and GC', () => {
  it(`survives ${KILLS} kills at random moments with nothing lost (seed ${SEED})`, async () => {
    const stateDir = join(work, 'state');
    const args = ['--signature-policy', policy, '--insecure-registry', registry.host, '--insecure-registry', faults.host, '--layer-concurrency', '2'];
    let kills = 0;
    let dataLost = 0;
    let retried = 0;
    let staleTempFiles = 0;
    let resolvedBeforeKill = 0;
    let faultsInjected = 0;
    const scenarios = new Map<string, number>();

    const verifyAndRetry = async (pg: RunningPullguard): Promise<void> => {
      for (const t of tracked) {
        const status = await pg.client.call<{ image: { id: string } | null }>('ImageStatus', { image: { image: t.name } });
        if (t.state === 'present' && status.image?.id !== t.image.configDigest) {
          dataLost += 1;
          console.log(`LOST after kill ${kills}: ${t.name} (was pulled successfully)`);
        }
        if (t.state === 'absent') expect(status.image, `${t.name} was removed (RemoveImage returned) but is back`).toBeNull();
        if (t.state === 'unknown') t.state = status.image === null ? 'absent' : 'present';
      }
      for (const t of tracked.filter((x) => x.interrupted)) {
        const { image_ref } = await pg.client.call<{ image_ref: string }>('PullImage', { image: { image: t.name } }, { deadlineMs: 30_000 });
        expect(image_ref).toBe(t.image.configDigest);
        t.interrupted = false;
        t.state = 'present';
        retried += 1;
      }
    };

    for (let round = 0; round <= KILLS; round++) {
      const pg = await startPullguard({ stateDir, args });
      try {
        await verifyAndRetry(pg);
        if (round === KILLS) {
          // The last round only checks; stop cleanly so the final fsck has the store to itself.
          await pg.stop({ keepState: true });
          break;
        }

        const present = tracked.filter((t) => t.state === 'present');
        const scenario = rng.pick(['pull-registry', 'pull-fault', 'remove', 'remove+pull', 'pulls'] as const);
        scenarios.set(scenario, (scenarios.get(scenario) ?? 0) + 1);
        const ops: Promise<void>[] = [];
        const drains: [string, number][] = [];
        const pull = (t: Tracked): void => {
          if (t.source === 'fault') {
            // Stall one of its layers part-way so the kill can land mid-ingest.
            const layer = rng.pick(t.image.layers);
            const before = faults.requests.filter((r) => r.method === 'GET' && r.path.endsWith(`/blobs/${layer.digest}`)).length;
            faults.fault(layer.digest, { kind: 'stall-after', bytes: rng.int(0, Math.max(0, layer.size - 1)) });
            faultsInjected += 1;
            drains.push([layer.digest, before]);
          }
          ops.push(
            pg.client.call<{ image_ref: string }>('PullImage', { image: { image: t.name } }).then(
              (r) => {
                expect(r.image_ref).toBe(t.image.configDigest);
                t.state = 'present';
                resolvedBeforeKill += 1;
              },
              () => {
                // Cut by the kill: the record may or may not have been written; either is correct.
                if (t.state !== 'present') {
                  t.state = 'unknown';
                  t.interrupted = true;
                }
              },
            ),
          );
        };
        const remove = (t: Tracked): void => {
          t.state = 'unknown';
          ops.push(
            pg.client.call('RemoveImage', { image: { image: t.name } }).then(
              () => {
                t.state = 'absent';
                resolvedBeforeKill += 1;
              },
              () => undefined,
            ),
          );
        };
        const candidates = (source?: Tracked['source']): Tracked[] => tracked.filter((t) => source === undefined || t.source === source);
        if (scenario === 'pull-registry') pull(rng.pick(candidates('registry')));
        else if (scenario === 'pull-fault') pull(rng.pick(candidates('fault')));
        else if (scenario === 'pulls') {
          const a = rng.pick(candidates());
          const b = rng.pick(candidates().filter((t) => t !== a));
          pull(a);
          pull(b);
        } else {
          const victim = present.length > 0 ? rng.pick(present) : undefined;
          if (victim !== undefined) remove(victim);
          if (scenario === 'remove+pull' || victim === undefined) pull(rng.pick(candidates().filter((t) => t !== victim)));
        }

        await sleep(scenario === 'remove' ? rng.int(0, 40) : rng.int(0, 300));
        await pg.stop({ keepState: true, signal: 'SIGKILL' });
        kills += 1;
        await Promise.all(ops);
        for (const [digest, before] of drains) await drainFault(digest, before);
      } catch (err) {
        await pg.stop({ keepState: true, signal: 'SIGKILL' });
        throw err;
      }
      if (existsSync(join(stateDir, 'store', 'ingest'))) staleTempFiles += (await readdir(join(stateDir, 'store', 'ingest'))).length;
      await fsckJson(stateDir);
    }

    const final = await fsckJson(stateDir);
    figure('crash.kills_survived', kills);
    figure('crash.data_lost', dataLost);
    figure('crash.calls_completed_before_kill', resolvedBeforeKill);
    figure('crash.interrupted_pulls_retried_ok', retried);
    figure('crash.stale_temp_files_cleaned', staleTempFiles);
    figure('crash.faults_injected', faultsInjected + kills);
    figure('crash.final_images', final.recordsChecked);
    console.log(`crash scenarios: ${JSON.stringify(Object.fromEntries(scenarios))}`);
    expect(kills).toBeGreaterThanOrEqual(20);
    expect(dataLost).toBe(0);
    expect(retried).toBeGreaterThan(0);
  }, 240_000);
});
