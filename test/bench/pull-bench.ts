/**
 * Issue 3, pull speed: pullguard's PullImage versus `skopeo copy docker://… oci:<fresh dir>` from
 * the same local docker-registry (insecureAcceptAnything, so only the transport is compared).
 *
 * pullguard is a daemon that kubelet (or `pullguard pull`) talks to; the pull a node sees is served
 * by a process that has pulled before. So each run starts a fresh server on a fresh store, lets it
 * pull a *different* image with as many layers, each at most 1 MiB (its own random bytes: nothing is
 * shared; small, so it warms the code path without churning 256 MiB of page cache first), and then
 * times the pull of the image under test — "warm daemon", the figure the target applies to. The
 * very first pull of a just-started process ("cold", JIT still warming up) is measured too and
 * reported beside it. skopeo's time includes its process start, which is what a skopeo user pays.
 * One untimed round of all three comes first, so neither tool pays the first touch of page cache.
 */
import { join } from 'node:path';
import { startRegistry } from '../helpers/registry.js';
import { acceptAnythingConfig, log, makeWorkDir, pullImage, pushLayout, removeDir, skopeoPullToOci, startBenchServer, warmFreeMemory } from './bench-env.js';
import { buildLargeOciImage } from './large-image.js';
import type { Figure, PartResult } from './report.js';
import { printTable } from './report.js';
import { median, MiB, msSince, round, timed } from './stats.js';

const RUNS = 5;

interface Case {
  readonly name: string;
  readonly repo: string;
  readonly layerSizes: readonly number[];
}

const CASES: readonly Case[] = [
  { name: '4x64MiB', repo: 'bench/big4', layerSizes: Array.from({ length: 4 }, () => 64 * MiB) },
  { name: '40x1MiB', repo: 'bench/many40', layerSizes: Array.from({ length: 40 }, () => 1 * MiB) },
];

type Tool = 'warm' | 'cold' | 'skopeo';

export async function runPullBench(): Promise<PartResult> {
  const started = process.hrtime.bigint();
  await warmFreeMemory();
  const work = await makeWorkDir('pull');
  const registry = await startRegistry();
  const figures: Figure[] = [];
  const details: Record<string, unknown> = { runs: RUNS, order: 'untimed round, then per run: pullguard warm daemon, skopeo, pullguard cold' };
  const rows: string[][] = [];
  try {
    const config = await acceptAnythingConfig(work);
    for (const c of CASES) {
      log(`pull: building ${c.name} (the image under test and a smaller warm-up image)`);
      const image = await buildLargeOciImage(join(work, `layout-${c.name}`), { tag: 'v1', layerSizes: c.layerSizes });
      await pushLayout(image.dir, 'v1', registry.host, `${c.repo}:v1`);
      await removeDir(image.dir);
      const warmUp = await buildLargeOciImage(join(work, `layout-${c.name}-warm`), { tag: 'v1', layerSizes: c.layerSizes.map((size) => Math.min(size, MiB)) });
      await pushLayout(warmUp.dir, 'v1', registry.host, `${c.repo}-warmup:v1`);
      await removeDir(warmUp.dir);
      const reference = `${registry.host}/${c.repo}:v1`;

      const once = async (tool: Tool, run: number): Promise<number> => {
        if (tool === 'skopeo') {
          const dest = join(work, `skopeo-${c.name}-${run}`);
          try {
            return (await timed(() => skopeoPullToOci(registry.host, `${c.repo}:v1`, dest))).ms;
          } finally {
            await removeDir(dest);
          }
        }
        const server = await startBenchServer({ registryHost: registry.host, ...config });
        try {
          if (tool === 'warm') await pullImage(server, `${registry.host}/${c.repo}-warmup:v1`);
          return (await timed(() => pullImage(server, reference))).ms;
        } finally {
          await server.stop();
        }
      };
      const samples: Record<Tool, number[]> = { warm: [], skopeo: [], cold: [] };
      for (const tool of ['warm', 'skopeo', 'cold'] as const) await once(tool, 0);
      for (let run = 1; run <= RUNS; run++) {
        for (const tool of ['warm', 'skopeo', 'cold'] as const) samples[tool].push(await once(tool, run));
        log(
          `pull: ${c.name} run ${run}: pullguard warm ${round(samples.warm.at(-1)!)} ms, skopeo ${round(samples.skopeo.at(-1)!)} ms, pullguard cold ${round(samples.cold.at(-1)!)} ms`,
        );
      }
      const warm = median(samples.warm);
      const sk = median(samples.skopeo);
      const cold = median(samples.cold);
      const mib = image.totalBytes / MiB;
      figures.push(
        { name: `${c.name} pullguard (warm daemon) median`, value: round(warm), unit: 'ms' },
        { name: `${c.name} skopeo median`, value: round(sk), unit: 'ms' },
        { name: `${c.name} ratio pullguard/skopeo`, value: round(warm / sk, 2), unit: '', target: { op: '<=', value: 1.0 } },
        { name: `${c.name} ratio pullguard first pull after start/skopeo`, value: round(cold / sk, 2), unit: '' },
      );
      const row = (label: string, values: number[], med: number): string[] => [
        c.name,
        label,
        ...values.map((v) => String(Math.round(v))),
        String(Math.round(med)),
        `${round(mib / (med / 1000))}`,
        round(med / sk, 2).toFixed(2),
      ];
      rows.push(
        row('pullguard, warm daemon', samples.warm, warm),
        row('skopeo copy → oci:', samples.skopeo, sk),
        row('pullguard, first pull after start', samples.cold, cold),
      );
      details[c.name] = { layers: c.layerSizes.length, bytes: image.totalBytes, samplesMs: samples, medianMs: { warm, skopeo: sk, cold } };
    }
  } finally {
    await registry.stop();
    await removeDir(work);
  }
  console.log('\n=== pull (issue 3): PullImage vs skopeo copy, same registry, fresh destination each run ===');
  printTable(['image', 'tool', ...Array.from({ length: RUNS }, (_, i) => `run ${i + 1} ms`), 'median ms', 'MiB/s', 'ratio'], rows);
  console.log(
    'pullguard time is the PullImage call over the socket on a fresh store; "warm daemon" = the server pulled another image with as many (≤ 1 MiB) layers first. skopeo time includes its process start-up.',
  );
  return { part: 'pull', figures, details, seconds: round(msSince(started) / 1000) };
}
