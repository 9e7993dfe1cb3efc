/**
 * Issue 3, memory: the server process's peak RSS while pulling a 1 GiB image (4 × 256 MiB random
 * layers) from the local docker-registry. VmHWM covers the whole process life (start-up included);
 * the 50 ms VmRSS samples cover the pull alone.
 */
import { join } from 'node:path';
import { startRegistry } from '../helpers/registry.js';
import { acceptAnythingConfig, log, makeWorkDir, pullImage, pushLayout, removeDir, serverPid, startBenchServer } from './bench-env.js';
import { buildLargeOciImage } from './large-image.js';
import { printTable, type PartResult } from './report.js';
import { readMemoryStatus, sampleRss } from './rss.js';
import { MiB, msSince, round, timed } from './stats.js';

const LAYERS = 4;
const LAYER_SIZE = 256 * MiB;

export async function runMemoryBench(): Promise<PartResult> {
  const started = process.hrtime.bigint();
  const work = await makeWorkDir('memory');
  const registry = await startRegistry();
  try {
    const config = await acceptAnythingConfig(work);
    const layout = join(work, 'layout');
    log(`memory: generating ${LAYERS} x ${LAYER_SIZE / MiB} MiB random layers`);
    const gen = await timed(() => buildLargeOciImage(layout, { tag: 'v1', layerSizes: Array.from({ length: LAYERS }, () => LAYER_SIZE) }));
    log(`memory: generated in ${round(gen.ms / 1000)} s; pushing`);
    const push = await timed(() => pushLayout(layout, 'v1', registry.host, 'bench/huge:v1'));
    await removeDir(layout);
    log(`memory: pushed in ${round(push.ms / 1000)} s; pulling through pullguard`);

    const server = await startBenchServer({ registryHost: registry.host, ...config });
    const pid = serverPid(server);
    let pull: { ms: number };
    let before: ReturnType<typeof readMemoryStatus>;
    let memory: ReturnType<ReturnType<typeof sampleRss>['stop']>;
    try {
      before = readMemoryStatus(pid);
      const sampler = sampleRss(pid, 50);
      try {
        pull = await timed(() => pullImage(server, `${registry.host}/bench/huge:v1`));
      } finally {
        memory = sampler.stop();
      }
    } finally {
      await server.stop();
    }
    const bytes = gen.value.totalBytes;
    const idleMiB = (before?.rssBytes ?? Number.NaN) / MiB;
    console.log('\n=== memory (issue 3): server RSS while pulling a 1 GiB image ===');
    printTable(
      ['measure', 'value'],
      [
        ['image', `${LAYERS} x ${LAYER_SIZE / MiB} MiB layers, ${round(bytes / MiB)} MiB compressed`],
        ['pull time', `${Math.round(pull.ms)} ms (${round(bytes / MiB / (pull.ms / 1000))} MiB/s)`],
        ['RSS before the pull', `${round(idleMiB)} MiB`],
        ['peak VmRSS during the pull (50 ms samples)', `${round(memory.peakSampledMiB)} MiB (${memory.samples} samples)`],
        ['VmHWM (peak over process life)', `${round(memory.hwmMiB)} MiB`],
      ],
    );
    return {
      part: 'memory',
      figures: [
        { name: 'server peak RSS (VmHWM) pulling 1 GiB', value: round(memory.hwmMiB), unit: 'MiB', target: { op: '<', value: 150 } },
        { name: 'server peak sampled VmRSS during the pull', value: round(memory.peakSampledMiB), unit: 'MiB' },
        { name: '1 GiB pull time', value: Math.round(pull.ms), unit: 'ms' },
      ],
      details: { layers: LAYERS, layerBytes: LAYER_SIZE, compressedBytes: bytes, generateMs: gen.ms, pushMs: push.ms, pullMs: pull.ms, rssBeforeMiB: idleMiB, ...memory },
      seconds: round(msSince(started) / 1000),
    };
  } finally {
    await registry.stop();
    await removeDir(work);
  }
}
