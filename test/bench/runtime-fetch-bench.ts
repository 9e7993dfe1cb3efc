/**
 * Issue 17, runtime fetches (backend mode's default): crictl through pullguard against crictl
 * straight at containerd, same registry, same run, alternating, fresh containerd root each run.
 *   (a) `crictl --image-endpoint <pullguard> pull REF`: pullguard resolves, decides (insecureAcceptAnything,
 *       so only the pipeline is compared), keeps manifest and config, asks containerd for REF@digest;
 *   (b) `crictl --image-endpoint <containerd> pull REF`.
 *   (c) `crictl --image-endpoint <containerd> pull REF` with pullguard as containerd 2's image verifier
 *       (`pullguard verifier install`; `pullguard serve` answers the verifier socket): the deployment
 *       where kubelet talks to containerd only. Compared with (b): what the verifier costs.
 * Three shapes: 4 × 64 MiB, 40 × 1 MiB, 2 × 1 MiB (random, incompressible layers). Five runs, each
 * with the three stacks fresh and side by side, pulling 6 distinct images of the shape on
 * each stack in turn (the order rotated from image to image, so each
 * path takes each place equally often): medians of 30 pulls per path (a 4 × 64 MiB pull varies
 * by ±20 % from one to the next on this VM's disk).
 * Ratios (a)/(b) and (c)/(b) for the large shapes and the added milliseconds for the small one;
 * what (a) added to pullguard's state directory as a share of the image; pullguard's peak RSS during (a),
 * and the verifying pullguard's during (c).
 * Each path first pulls three small unrelated images (untimed): a node's pullguard and containerd
 * are long-running, so connections are open and V8 has optimised the pull path by the time kubelet
 * asks (the first pulls of a fresh process run 2-3x slower); both paths get the same warm-up.
 * containerd is the 2.x built by .ci/build-peers (the current release), crictl too.
 */
import { execFile } from 'node:child_process';
import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { containerdUnavailableReason, startContainerd, type RunningContainerd } from '../helpers/containerd.js';
import { peerBinary, peerUnavailableReason } from '../helpers/peers.js';
import { MAIN } from '../helpers/pullguard-server.js';
import { startRegistry, type StartedRegistry } from '../helpers/registry.js';
import { acceptAnythingConfig, log, makeWorkDir, pushLayout, removeDir, serverPid, startBenchServer, touchFreeMemory } from './bench-env.js';
import { buildLargeOciImage, type LargeImage } from './large-image.js';
import { printTable, type Figure, type PartResult } from './report.js';
import { sampleRss } from './rss.js';
import { median, MiB, round, timed } from './stats.js';

const execFileAsync = promisify(execFile);
/** PULLGUARD_BENCH_RUNS=N overrides it for a quick look. */
const RUNS = Number(process.env['PULLGUARD_BENCH_RUNS'] ?? 5);
/** Distinct images of each shape, each pulled once per stack and run; a multiple of 3, so each path takes each place in the rotation equally often. */
const IMAGES_PER_RUN = 6;
const TOUCH_BYTES = 768 * MiB;

type Target = { readonly ratio: number } | { readonly addedMs: number };

interface Shape {
  readonly name: string;
  readonly layerSizes: readonly number[];
  /** (a)/(b) at most this, or (for small images) (a) − (b) at most this many ms. */
  readonly target: Target;
  /** The same for (c)/(b): containerd with pullguard as its image verifier. */
  readonly verifierTarget: Target;
}

const SHAPES: readonly Shape[] = [
  { name: '4x64MiB', layerSizes: Array.from({ length: 4 }, () => 64 * MiB), target: { ratio: 1.05 }, verifierTarget: { ratio: 1.03 } },
  { name: '40x1MiB', layerSizes: Array.from({ length: 40 }, () => MiB), target: { ratio: 1.1 }, verifierTarget: { ratio: 1.05 } },
  { name: '2x1MiB', layerSizes: [MiB, MiB], target: { addedMs: 20 }, verifierTarget: { addedMs: 30 } },
];
const VERIFIER_TIMEOUT = '  per_verifier_timeout = "60s"';

async function crictlPull(endpoint: string, reference: string): Promise<{ ms: number; imageId: string }> {
  const crictl = peerBinary('crictl');
  if (crictl === undefined) throw new Error(peerUnavailableReason('crictl'));
  const { ms, value } = await timed(() => execFileAsync(crictl, ['--image-endpoint', endpoint, '--timeout', '10m', 'pull', reference], { timeout: 600_000 }));
  // "Image is up to date for sha256:…"
  const imageId = /sha256:[0-9a-f]{64}/.exec(value.stdout)?.[0] ?? '';
  return { ms, imageId };
}

/**
 * containerd's own time for its last pull of `reference`, from its CRI log line
 * `Pulled image "REF" with image id … in 1.234s` (Go's time.Duration; the whole PullImage handler).
 * Set beside crictl's wall time it splits what pullguard (or the verifier) adds from what the runtime's
 * own pull took on this disk this time.
 */
export function runtimePullMs(log: string, reference: string): number {
  let found: number | undefined;
  for (const m of log.matchAll(/Pulled image \\"([^"\\]+)\\" with image id [^\n]*? in ((?:\d+h)?(?:\d+m(?!s))?[\d.]+(?:ns|µs|us|ms|s))"/g)) {
    if (m[1] === reference) found = goDurationMs(m[2]!);
  }
  if (found === undefined) throw new Error(`containerd's log has no "Pulled image" line for ${reference}`);
  return found;
}

function goDurationMs(text: string): number {
  const units: Record<string, number> = { h: 3_600_000, m: 60_000, s: 1000, ms: 1, us: 1e-3, µs: 1e-3, ns: 1e-6 };
  let ms = 0;
  for (const [, value, unit] of text.matchAll(/([\d.]+)(h|ms|m|s|us|µs|ns)/g)) ms += Number(value) * units[unit!]!;
  return ms;
}

async function dirBytes(dir: string): Promise<number> {
  let total = 0;
  for (const entry of await readdir(dir, { withFileTypes: true, recursive: true })) {
    if (entry.isFile()) total += (await stat(join(entry.parentPath, entry.name))).size;
  }
  return total;
}

interface Sample {
  readonly viaMs: number;
  readonly directMs: number;
  readonly verifierMs: number;
  /** containerd's own PullImage time in each arm (its log), the rest of each arm's time is crictl's and pullguard's. */
  readonly runtimeMs: { readonly via: number; readonly direct: number; readonly verifier: number };
  /** What the via-pullguard pull added to pullguard's state directory. */
  readonly stateBytes: number;
  /** pullguard's peak RSS during (a), and the verifying pullguard's during (c). */
  readonly peakRssMiB: number;
  readonly verifierPeakRssMiB: number;
}

interface ShapeImage {
  readonly reference: string;
  readonly image: LargeImage;
}

/**
 * One run: the three stacks side by side — (a) pullguard in front of a fresh containerd, (b) a fresh
 * containerd alone, (c) a fresh containerd whose image verifier is pullguard — each warmed up, then
 * every image of the shape pulled once on each, alternating, the order rotated from image to image.
 */
async function oneRun(
  registry: StartedRegistry,
  images: readonly ShapeImage[],
  warmUp: readonly string[],
  config: { policy: string; registriesD: string },
  work: string,
  run: number,
): Promise<Sample[]> {
  const stops: (() => Promise<unknown>)[] = [];
  try {
    const viaContainerd = await startContainerd({ release: '2', plainHttp: [registry.host] });
    stops.push(() => viaContainerd.destroy());
    const stateDir = join(work, `state-${run}`);
    const front = await startBenchServer({ registryHost: registry.host, ...config, stateDir, extraArgs: ['--backend', viaContainerd.endpoint] });
    stops.unshift(() => front.stop());
    const direct = await startContainerd({ release: '2', plainHttp: [registry.host] });
    stops.push(() => direct.destroy());
    const verifierState = join(work, `verifier-state-${run}`);
    const binDir = join(work, `verifier-bin-${run}`);
    const verifying = await startBenchServer({ registryHost: registry.host, ...config, stateDir: verifierState });
    stops.push(
      () => verifying.stop(),
      () => removeDir(binDir),
    );
    await execFileAsync(process.execPath, [MAIN, 'verifier', 'install', '--bin-dir', binDir, '--state-dir', verifierState, '--per-verifier-timeout', '60s']);
    const withVerifier = await startContainerd({
      release: '2',
      plainHttp: [registry.host],
      verifierBinDir: binDir,
      extraToml: VERIFIER_TIMEOUT,
    });
    stops.unshift(() => withVerifier.destroy());
    const endpoints = { via: `unix://${front.socket}`, direct: direct.endpoint, verifier: withVerifier.endpoint };
    const runtimes: Record<keyof typeof endpoints, RunningContainerd> = { via: viaContainerd, direct, verifier: withVerifier };
    for (const endpoint of Object.values(endpoints)) for (const warm of warmUp) await crictlPull(endpoint, warm);

    const samples: Sample[] = [];
    for (const [k, { reference, image }] of images.entries()) {
      const ms: Partial<Record<keyof typeof endpoints, number>> = {};
      const runtimeMs: Partial<Record<keyof typeof endpoints, number>> = {};
      // pullguard asks its runtime for the verified digest, crictl asks for the tag.
      const pinned = `${reference.slice(0, reference.lastIndexOf(':'))}@${image.manifestDigest}`;
      let stateBytes = 0;
      let peakRssMiB = 0;
      let verifierPeakRssMiB = 0;
      const arms = (['via', 'direct', 'verifier'] as const).map((_, i, all) => all[(i + k + run) % all.length]!);
      for (const arm of arms) {
        // Every timed pull starts with the earlier pulls' writes on disk, not still being written back.
        await execFileAsync('sync');
        if (image.totalBytes > 32 * MiB) await touchFreeMemory(TOUCH_BYTES);
        const before = arm === 'via' ? await dirBytes(join(stateDir, 'store')) : 0;
        const rss = arm === 'direct' ? undefined : sampleRss(serverPid(arm === 'via' ? front : verifying));
        const pulled = await crictlPull(endpoints[arm], reference);
        if (rss !== undefined) {
          const peak = rss.stop().peakSampledMiB;
          if (arm === 'via') peakRssMiB = peak;
          else verifierPeakRssMiB = peak;
        }
        if (arm === 'via') stateBytes = (await dirBytes(join(stateDir, 'store'))) - before;
        if (pulled.imageId !== image.configDigest) throw new Error(`crictl (${arm}) pulled ${pulled.imageId}, expected ${image.configDigest}`);
        ms[arm] = pulled.ms;
        runtimeMs[arm] = runtimePullMs(runtimes[arm].log(), arm === 'via' ? pinned : reference);
      }
      // The verifier really ran: pullguard answered containerd for this image.
      const asked = verifying
        .logRecords()
        .some((r) => r['verifier'] !== undefined && String((r['verifier'] as { name?: unknown }).name) === reference && r['allowed'] === true);
      if (!asked) throw new Error(`pullguard's verifier was not asked about ${reference}`);
      samples.push({
        viaMs: ms.via!,
        directMs: ms.direct!,
        verifierMs: ms.verifier!,
        runtimeMs: { via: runtimeMs.via!, direct: runtimeMs.direct!, verifier: runtimeMs.verifier! },
        stateBytes,
        peakRssMiB,
        verifierPeakRssMiB,
      });
    }
    return samples;
  } finally {
    for (const stop of stops) await stop();
    await removeDir(join(work, `state-${run}`));
    await removeDir(join(work, `verifier-state-${run}`));
  }
}

export async function runRuntimeFetchBench(): Promise<PartResult> {
  const started = Date.now();
  const unavailable = containerdUnavailableReason('2') ?? peerUnavailableReason('crictl');
  if (unavailable !== undefined) throw new Error(`runtime-fetch bench cannot run: ${unavailable}`);
  const work = await makeWorkDir('runtime-fetch');
  const registry = await startRegistry();
  const figures: Figure[] = [];
  const rows: string[][] = [];
  const details: Record<string, unknown> = {};
  try {
    const config = await acceptAnythingConfig(work);
    const warmUp: string[] = [];
    for (const n of [1, 2, 3]) {
      const warm = await buildLargeOciImage(join(work, `warm-up-${n}`), { tag: 'v1', layerSizes: [64 * 1024, 64 * 1024] });
      await pushLayout(warm.dir, 'v1', registry.host, `bench/warm-up-${n}:v1`);
      warmUp.push(`${registry.host}/bench/warm-up-${n}:v1`);
    }
    // PULLGUARD_BENCH_SHAPES=2x1MiB,… runs only those (a quick look); the full part runs all three.
    const only = process.env['PULLGUARD_BENCH_SHAPES']?.split(',');
    for (const shape of SHAPES.filter((s) => only === undefined || only.includes(s.name))) {
      const images: ShapeImage[] = [];
      for (let k = 0; k < IMAGES_PER_RUN; k++) {
        const repository = `bench/${shape.name.toLowerCase()}-${k}`;
        const image = await buildLargeOciImage(join(work, `${shape.name}-${k}`), { tag: 'v1', layerSizes: shape.layerSizes });
        await pushLayout(image.dir, 'v1', registry.host, `${repository}:v1`);
        await removeDir(image.dir);
        images.push({ reference: `${registry.host}/${repository}:v1`, image });
      }
      const image = images[0]!.image;
      const samples: Sample[] = [];
      for (let run = 0; run < RUNS; run++) {
        for (const last of await oneRun(registry, images, warmUp, config, work, run)) {
          samples.push(last);
          log(
            `runtime-fetch ${shape.name} run ${run + 1}: via ${round(last.viaMs)} ms (containerd ${round(last.runtimeMs.via)}), direct ${round(last.directMs)} ms (${round(last.runtimeMs.direct)}), with verifier ${round(last.verifierMs)} ms (${round(last.runtimeMs.verifier)})`,
          );
        }
      }
      const via = median(samples.map((s) => s.viaMs));
      const direct = median(samples.map((s) => s.directMs));
      const verifier = median(samples.map((s) => s.verifierMs));
      const state = median(samples.map((s) => s.stateBytes));
      const rss = Math.max(...samples.map((s) => s.peakRssMiB));
      const verifierRss = Math.max(...samples.map((s) => s.verifierPeakRssMiB));
      if ('ratio' in shape.target) {
        figures.push({
          name: `${shape.name} crictl via-pullguard/direct`,
          value: round(via / direct, 2),
          unit: '',
          target: { op: '<=', value: shape.target.ratio },
        });
      } else {
        figures.push({
          name: `${shape.name} crictl via-pullguard − direct`,
          value: round(via - direct, 1),
          unit: 'ms',
          target: { op: '<=', value: shape.target.addedMs },
        });
      }
      if ('ratio' in shape.verifierTarget) {
        figures.push({
          name: `${shape.name} containerd with pullguard verifier/without`,
          value: round(verifier / direct, 2),
          unit: '',
          target: { op: '<=', value: shape.verifierTarget.ratio },
        });
      } else {
        figures.push({
          name: `${shape.name} containerd with pullguard verifier − without`,
          value: round(verifier - direct, 1),
          unit: 'ms',
          target: { op: '<=', value: shape.verifierTarget.addedMs },
        });
      }
      figures.push({
        name: `${shape.name} pullguard state / image`,
        value: round((100 * state) / image.totalBytes, 2),
        unit: '%',
        target: { op: '<', value: 5 },
      });
      // Where the difference comes from: what pullguard adds outside the runtime's own pull (crictl's
      // own overhead, the same in both arms, cancels), and how the runtime's own pulls compared.
      const outside = (total: number, runtime: number): number => total - runtime;
      figures.push({
        name: `${shape.name} pullguard's own time around the runtime's pull`,
        value: round(median(samples.map((s) => outside(s.viaMs, s.runtimeMs.via) - outside(s.directMs, s.runtimeMs.direct))), 1),
        unit: 'ms',
      });
      figures.push({
        name: `${shape.name} containerd's own pull asked by pullguard/by crictl`,
        value: round(median(samples.map((s) => s.runtimeMs.via)) / median(samples.map((s) => s.runtimeMs.direct)), 2),
        unit: '',
      });
      figures.push({
        name: `${shape.name} containerd's own pull with the verifier/without`,
        value: round(median(samples.map((s) => s.runtimeMs.verifier)) / median(samples.map((s) => s.runtimeMs.direct)), 2),
        unit: '',
      });
      figures.push({ name: `${shape.name} pullguard peak RSS during pull`, value: round(rss, 1), unit: 'MiB' });
      figures.push({ name: `${shape.name} verifying pullguard peak RSS during pull`, value: round(verifierRss, 1), unit: 'MiB' });
      rows.push([
        shape.name,
        `${round(via)} ms`,
        `${round(direct)} ms`,
        `${round(verifier)} ms`,
        `${round(via / direct, 2)}`,
        `${round(via - direct, 1)} ms`,
        `${round(verifier / direct, 2)}`,
        `${round(state / 1024, 1)} KiB`,
        `${round(rss, 1)} / ${round(verifierRss, 1)} MiB`,
      ]);
      details[shape.name] = { samples, imageBytes: image.totalBytes };
    }
  } finally {
    await registry.stop();
    await removeDir(work);
  }
  printTable(
    ['image', 'via pullguard', 'direct', 'with verifier', 'via/direct', 'via added', 'verifier/direct', 'pullguard state', 'peak RSS (a) / (c)'],
    rows,
  );
  return { part: 'runtime-fetch', figures, details, seconds: Math.round((Date.now() - started) / 1000) };
}
