/**
 * Issue 7, load: 50 concurrent PullImage calls over 10 images that share layers (one base layer in
 * all ten, a middle layer in one of three variants, one small unique layer each), while ImageStatus
 * and ListImages are called in loops. Images live in the real docker-registry behind a counting
 * proxy; each layer blob must be fetched from the registry once. A second, warm round re-pulls the
 * stored images (signature phase and manifest only).
 */
import { join } from 'node:path';
import { buildOciImage, seededBytes } from '../helpers/oci-image.js';
import { startRegistry } from '../helpers/registry.js';
import { acceptAnythingConfig, log, makeWorkDir, pullImage, pushLayout, removeDir, serverPid, startBenchServer, type BenchServer } from './bench-env.js';
import { startCountingProxy, type CountingProxy } from './counting-proxy.js';
import { printTable, type Figure, type PartResult } from './report.js';
import { sampleRss } from './rss.js';
import { median, MiB, msSince, percentile, round, timed } from './stats.js';

const IMAGES = 10;
const CONCURRENT_PULLS = 50;
const MIDDLE_VARIANTS = 3;
const BASE_SIZE = 8 * MiB;
const MIDDLE_SIZE = 2 * MiB;
const UNIQUE_SIZE = 16 * 1024;

interface RoundResult {
  readonly wallMs: number;
  readonly pullMs: number[];
  readonly failures: string[];
  readonly statusMs: number[];
  readonly listMs: number[];
  readonly peakRssMiB: number;
}

async function loadRound(server: BenchServer, references: readonly string[], expectedIds: readonly string[]): Promise<RoundResult> {
  const failures: string[] = [];
  const statusMs: number[] = [];
  const listMs: number[] = [];
  const pullMs: number[] = [];
  let pullsDone = false;
  const sampler = sampleRss(serverPid(server), 50);
  const record = (what: string) => (err: unknown) => void failures.push(`${what}: ${err instanceof Error ? err.message : String(err)}`);

  // Status and list loops run until every pull has finished (sequential calls, like kubelet's pollers).
  const statusLoop = async (): Promise<void> => {
    for (let i = 0; !pullsDone; i++) {
      const ref = references[i % references.length]!;
      await timed(() => server.client.call('ImageStatus', { image: { image: ref } })).then(({ ms }) => void statusMs.push(ms), record(`ImageStatus ${ref}`));
    }
  };
  const listLoop = async (): Promise<void> => {
    while (!pullsDone) await timed(() => server.client.call('ListImages', {})).then(({ ms }) => void listMs.push(ms), record('ListImages'));
  };
  const start = process.hrtime.bigint();
  const loops = [statusLoop(), listLoop()];
  await Promise.all(
    Array.from({ length: CONCURRENT_PULLS }, (_, i) => {
      const ref = references[i % references.length]!;
      const expected = expectedIds[i % references.length]!;
      return timed(() => pullImage(server, ref, 300_000)).then(
        ({ ms, value }) => {
          if (value !== expected) failures.push(`PullImage ${ref}: image_ref ${value}, expected ${expected}`);
          pullMs.push(ms);
        },
        record(`PullImage ${ref}`),
      );
    }),
  );
  const wallMs = msSince(start);
  pullsDone = true;
  await Promise.all(loops);
  const { hwmMiB } = sampler.stop();
  // Every image must be in the index once its pulls returned.
  try {
    const listed = await server.client.call<{ images: unknown[] }>('ListImages', {});
    if (listed.images.length !== references.length) failures.push(`ListImages after the round: ${listed.images.length} images, expected ${references.length}`);
  } catch (err) {
    record('ListImages after the round')(err);
  }
  return { wallMs, pullMs, failures, statusMs, listMs, peakRssMiB: hwmMiB };
}

export async function runLoadBench(): Promise<PartResult> {
  const started = process.hrtime.bigint();
  const work = await makeWorkDir('load');
  const registry = await startRegistry();
  let proxy: CountingProxy | undefined;
  let server: BenchServer | undefined;
  try {
    log('load: building and pushing 10 images with shared layers');
    const layout = join(work, 'layout');
    const base = seededBytes(BASE_SIZE, 7001);
    const middles = Array.from({ length: MIDDLE_VARIANTS }, (_, v) => seededBytes(MIDDLE_SIZE, 7100 + v));
    const built = [];
    for (let i = 0; i < IMAGES; i++) {
      built.push(
        await buildOciImage(layout, {
          tag: `i${i}`,
          seed: 7200 + i,
          layers: [{ files: { 'base.bin': base } }, { files: { 'middle.bin': middles[i % MIDDLE_VARIANTS]! } }, { size: UNIQUE_SIZE }],
        }),
      );
    }
    for (let i = 0; i < IMAGES; i += 2) {
      await Promise.all([i, i + 1].filter((k) => k < IMAGES).map((k) => pushLayout(layout, `i${k}`, registry.host, `load/img${k}:v1`)));
    }
    const sharedDigests = new Map<string, string>([[built[0]!.layers[0]!.digest, 'base (all 10 images)']]);
    for (let v = 0; v < MIDDLE_VARIANTS; v++)
      sharedDigests.set(built[v]!.layers[1]!.digest, `middle variant ${v} (${built.filter((_, i) => i % MIDDLE_VARIANTS === v).length} images)`);
    const layerDigests = new Set(built.flatMap((b) => b.layers.map((l) => l.digest)));

    proxy = await startCountingProxy(registry.host);
    const references = Array.from({ length: IMAGES }, (_, i) => `${proxy!.host}/load/img${i}:v1`);
    server = await startBenchServer({ registryHost: proxy.host, ...(await acceptAnythingConfig(work)) });

    log(`load: cold round, ${CONCURRENT_PULLS} concurrent PullImage over ${IMAGES} images`);
    const expectedIds = built.map((b) => b.configDigest);
    const cold = await loadRound(server, references, expectedIds);
    const coldBlobGets = proxy.blobGets();
    const requestsAfterCold = proxy.requests.length;
    log(`load: warm round (images stored)`);
    const warm = await loadRound(server, references, expectedIds);
    const warmBlobGets = new Map<string, number>();
    for (const r of proxy.requests.slice(requestsAfterCold)) {
      const m = /\/blobs\/(sha256:[0-9a-f]{64})/.exec(r.path);
      if (r.method === 'GET' && m?.[1] !== undefined && layerDigests.has(m[1])) warmBlobGets.set(m[1], (warmBlobGets.get(m[1]) ?? 0) + 1);
    }

    const layerGets = [...layerDigests].map((d) => coldBlobGets.get(d) ?? 0);
    const maxLayerGets = Math.max(...layerGets);
    const missingLayers = layerGets.filter((n) => n === 0).length;
    const failures = [...cold.failures, ...warm.failures];

    console.log(
      `\n=== load (issue 7): ${CONCURRENT_PULLS} concurrent PullImage over ${IMAGES} images with shared layers, ImageStatus + ListImages in loops ===`,
    );
    const roundRow = (name: string, r: RoundResult): string[] => [
      name,
      String(r.pullMs.length),
      String(r.failures.length),
      String(Math.round(r.wallMs)),
      round(CONCURRENT_PULLS / (r.wallMs / 1000), 1).toFixed(1),
      round(median(r.pullMs)).toFixed(0),
      String(r.statusMs.length),
      round(median(r.statusMs), 2).toFixed(2),
      round(percentile(r.statusMs, 99), 2).toFixed(2),
      String(r.listMs.length),
      round(percentile(r.listMs, 99), 2).toFixed(2),
      round(r.peakRssMiB).toFixed(1),
    ];
    printTable(
      [
        'round',
        'pulls ok',
        'failures',
        'wall ms',
        'pulls/s',
        'pull p50 ms',
        'ImageStatus calls',
        'status p50 ms',
        'status p99 ms',
        'ListImages calls',
        'list p99 ms',
        'server VmHWM MiB',
      ],
      [roundRow('cold (empty store)', cold), roundRow('warm (all stored)', warm)],
    );
    console.log('\nRegistry GETs per shared layer blob (cold round; must be 1):');
    printTable(
      ['layer', 'digest', 'GETs'],
      [...sharedDigests].map(([digest, name]) => [name, digest.slice(0, 19), String(coldBlobGets.get(digest) ?? 0)]),
    );
    console.log(
      `All ${layerDigests.size} distinct layer blobs: max ${maxLayerGets} GET each, ${missingLayers} never fetched; warm round layer GETs: ${[...warmBlobGets.values()].reduce((a, b) => a + b, 0)}.`,
    );
    if (failures.length > 0) console.log(`FAILURES:\n  ${failures.slice(0, 20).join('\n  ')}`);

    const figures: Figure[] = [
      { name: 'failed calls (both rounds)', value: failures.length, unit: 'calls', target: { op: '==', value: 0 } },
      { name: 'max registry GETs per layer blob (cold)', value: maxLayerGets, unit: 'GETs', target: { op: '==', value: 1 } },
      { name: 'cold pulls/s (50 pulls, 10 images)', value: round(CONCURRENT_PULLS / (cold.wallMs / 1000), 1), unit: 'pulls/s' },
      { name: 'warm pulls/s (all stored)', value: round(CONCURRENT_PULLS / (warm.wallMs / 1000), 1), unit: 'pulls/s' },
      { name: 'ImageStatus p50 under load (cold)', value: round(median(cold.statusMs), 2), unit: 'ms' },
      { name: 'ImageStatus p99 under load (cold)', value: round(percentile(cold.statusMs, 99), 2), unit: 'ms' },
      { name: 'ImageStatus p99 under load (warm)', value: round(percentile(warm.statusMs, 99), 2), unit: 'ms' },
      { name: 'server peak RSS (VmHWM)', value: round(Math.max(cold.peakRssMiB, warm.peakRssMiB), 1), unit: 'MiB' },
    ];
    return {
      part: 'load',
      figures,
      details: {
        images: IMAGES,
        concurrentPulls: CONCURRENT_PULLS,
        layers: { baseBytes: BASE_SIZE, middleBytes: MIDDLE_SIZE, middleVariants: MIDDLE_VARIANTS, uniqueBytes: UNIQUE_SIZE },
        cold: summarize(cold),
        warm: summarize(warm),
        sharedLayerGets: Object.fromEntries([...sharedDigests].map(([d, name]) => [name, coldBlobGets.get(d) ?? 0])),
        distinctLayerBlobs: layerDigests.size,
        maxLayerGets,
        warmLayerGets: Object.fromEntries(warmBlobGets),
        registryRequests: proxy.requests.length,
        failures: failures.slice(0, 50),
      },
      seconds: round(msSince(started) / 1000),
    };
  } finally {
    await server?.stop();
    await proxy?.stop();
    await registry.stop();
    await removeDir(work);
  }
}

function summarize(r: RoundResult): Record<string, number> {
  return {
    wallMs: r.wallMs,
    pulls: r.pullMs.length,
    failures: r.failures.length,
    pullP50Ms: median(r.pullMs),
    pullMaxMs: Math.max(...r.pullMs),
    statusCalls: r.statusMs.length,
    statusP50Ms: median(r.statusMs),
    statusP99Ms: percentile(r.statusMs, 99),
    listCalls: r.listMs.length,
    listP50Ms: median(r.listMs),
    listP99Ms: percentile(r.listMs, 99),
    peakRssMiB: r.peakRssMiB,
  };
}
