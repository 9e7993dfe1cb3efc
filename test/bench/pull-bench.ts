/**
 * Issue 3, pull speed: pullguard's PullImage (fresh state dir each run, insecureAcceptAnything) versus
 * `skopeo copy docker://… oci:<fresh dir>` from the same local docker-registry, alternating, three
 * runs each, medians and the ratio pullguard/skopeo. Also --layer-concurrency 8 against the default 4.
 */
import { join } from 'node:path';
import { startRegistry } from '../helpers/registry.js';
import { acceptAnythingConfig, log, makeWorkDir, pullImage, pushLayout, removeDir, skopeoPullToOci, startBenchServer } from './bench-env.js';
import { buildLargeOciImage } from './large-image.js';
import type { Figure, PartResult } from './report.js';
import { printTable } from './report.js';
import { median, MiB, msSince, round, timed } from './stats.js';

const RUNS = 3;

interface Case {
  readonly name: string;
  readonly repo: string;
  readonly layerSizes: readonly number[];
}

const CASES: readonly Case[] = [
  { name: '4x64MiB', repo: 'bench/big4:v1', layerSizes: Array.from({ length: 4 }, () => 64 * MiB) },
  { name: '40x1MiB', repo: 'bench/many40:v1', layerSizes: Array.from({ length: 40 }, () => 1 * MiB) },
];

export async function runPullBench(): Promise<PartResult> {
  const started = process.hrtime.bigint();
  const work = await makeWorkDir('pull');
  const registry = await startRegistry();
  const figures: Figure[] = [];
  const details: Record<string, unknown> = { runs: RUNS, order: 'per run: pullguard(c=4), skopeo, pullguard(c=8)' };
  const rows: string[][] = [];
  try {
    const config = await acceptAnythingConfig(work);
    for (const c of CASES) {
      const layout = join(work, `layout-${c.name}`);
      log(`pull: building ${c.name}`);
      const image = await buildLargeOciImage(layout, { tag: 'v1', layerSizes: c.layerSizes });
      await pushLayout(layout, 'v1', registry.host, c.repo);
      await removeDir(layout);
      const reference = `${registry.host}/${c.repo}`;

      const samples: Record<'pullguard' | 'skopeo' | 'pullguardC8', number[]> = { pullguard: [], skopeo: [], pullguardC8: [] };
      const pullguardOnce = async (concurrency: number): Promise<number> => {
        const server = await startBenchServer({ registryHost: registry.host, ...config, extraArgs: ['--layer-concurrency', String(concurrency)] });
        try {
          return (await timed(() => pullImage(server, reference))).ms;
        } finally {
          await server.stop();
        }
      };
      for (let run = 1; run <= RUNS; run++) {
        samples.pullguard.push(await pullguardOnce(4));
        const dest = join(work, `skopeo-${c.name}-${run}`);
        samples.skopeo.push((await timed(() => skopeoPullToOci(registry.host, c.repo, dest))).ms);
        await removeDir(dest);
        samples.pullguardC8.push(await pullguardOnce(8));
        log(`pull: ${c.name} run ${run}: pullguard ${round(samples.pullguard.at(-1)!)} ms, skopeo ${round(samples.skopeo.at(-1)!)} ms, pullguard c=8 ${round(samples.pullguardC8.at(-1)!)} ms`);
      }
      const pg = median(samples.pullguard);
      const sk = median(samples.skopeo);
      const pg8 = median(samples.pullguardC8);
      const mib = image.totalBytes / MiB;
      figures.push(
        { name: `${c.name} pullguard median`, value: round(pg), unit: 'ms' },
        { name: `${c.name} skopeo median`, value: round(sk), unit: 'ms' },
        { name: `${c.name} ratio pullguard/skopeo`, value: round(pg / sk, 2), unit: '', target: { op: '<=', value: 1.0 } },
        { name: `${c.name} ratio pullguard(c=8)/skopeo`, value: round(pg8 / sk, 2), unit: '' },
      );
      rows.push(
        [c.name, 'pullguard --layer-concurrency 4', ...samples.pullguard.map((v) => String(Math.round(v))), String(Math.round(pg)), `${round(mib / (pg / 1000))}`, round(pg / sk, 2).toFixed(2)],
        [c.name, 'skopeo copy → oci:', ...samples.skopeo.map((v) => String(Math.round(v))), String(Math.round(sk)), `${round(mib / (sk / 1000))}`, '1.00'],
        [c.name, 'pullguard --layer-concurrency 8', ...samples.pullguardC8.map((v) => String(Math.round(v))), String(Math.round(pg8)), `${round(mib / (pg8 / 1000))}`, round(pg8 / sk, 2).toFixed(2)],
      );
      details[c.name] = { layers: c.layerSizes.length, bytes: image.totalBytes, samplesMs: samples, medianMs: { pullguard: pg, skopeo: sk, pullguardC8: pg8 } };
    }
  } finally {
    await registry.stop();
    await removeDir(work);
  }
  console.log('\n=== pull (issue 3): PullImage vs skopeo copy, same registry, fresh destination each run ===');
  printTable(['image', 'tool', ...Array.from({ length: RUNS }, (_, i) => `run ${i + 1} ms`), 'median ms', 'MiB/s', 'ratio'], rows);
  console.log('pullguard time is the PullImage call over the socket (server already up); skopeo time includes its process start-up.');
  return { part: 'pull', figures, details, seconds: round(msSince(started) / 1000) };
}
