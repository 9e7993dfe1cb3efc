/**
 * Issue 7, list: ListImages with 10,000 images in the index. The store is populated directly
 * (openStore → blobs.ingest + images.put, records built like test/helpers/store-records.ts: a
 * unique config and manifest per image, two shared layers), then the real server is started on
 * that state dir and ListImages is timed over 200 sequential calls with the response kept as bytes
 * (the server's cost, as kubelet sees it), plus 50 calls through the grpc-js client that decodes
 * every message. ImageStatus is timed too.
 */
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import type { Digest } from '../../src/domain/digest.js';
import { openStore } from '../../src/store/open-store.js';
import { commitBlob, storeImageRecord } from '../helpers/store-records.js';
import { acceptAnythingConfig, log, makeWorkDir, removeDir, startBenchServer, type BenchServer } from './bench-env.js';
import { printTable, type PartResult } from './report.js';
import { median, msSince, percentile, round, timed } from './stats.js';
import { seededBytes } from '../helpers/oci-image.js';

const IMAGES = 10_000;
const CALLS = 200;
const WRITERS = 32;

const LIST_PATH = '/runtime.v1.ImageService/ListImages';

/**
 * ListImages with the response left as bytes: server work plus transport, without grpc-js's
 * protobuf decode of 10,000 messages in this process (kubelet decodes in Go, far faster).
 */
function rawLister(socket: string): { list(): Promise<Buffer>; close(): void } {
  const client = new grpc.Client(`unix://${socket}`, grpc.credentials.createInsecure(), { 'grpc.max_receive_message_length': 64 * 1024 * 1024 });
  const identity = (b: Buffer): Buffer => b;
  return {
    list: () =>
      new Promise<Buffer>((resolve, reject) => {
        // An empty ListImagesRequest encodes as zero bytes.
        client.makeUnaryRequest(LIST_PATH, identity, identity, Buffer.alloc(0), new grpc.Metadata(), { deadline: Date.now() + 30_000 }, (err, res) =>
          err ? reject(err) : resolve(res!),
        );
      }),
    close: () => client.close(),
  };
}

/** durationMs of the server's own `ListImages ok` log lines (the handler, before serialisation). */
function handlerDurations(lines: readonly string[]): number[] {
  return lines.flatMap((line) => {
    if (!line.includes('ListImages ok')) return [];
    try {
      const ms = (JSON.parse(line) as { durationMs?: unknown }).durationMs;
      return typeof ms === 'number' ? [ms] : [];
    } catch {
      return [];
    }
  });
}

const tagOf = (i: number): string => `registry.bench.test/team${i % 50}/app${i}:v${i % 7}`;

async function populate(storeDir: string): Promise<number> {
  const store = await openStore(storeDir);
  try {
    const shared: { digest: Digest; size: number }[] = [];
    for (const [seed, size] of [
      [1, 4096],
      [2, 16384],
    ] as const) {
      shared.push({ digest: await commitBlob(store.blobs, seededBytes(size, seed)), size });
    }
    let next = 0;
    const writer = async (): Promise<void> => {
      for (let i = next++; i < IMAGES; i = next++) {
        const record = await storeImageRecord(store.blobs, {
          repoTags: [tagOf(i)],
          sharedLayers: shared,
          layerSizes: [],
          pulledAt: new Date(Date.UTC(2024, 0, 1) + i * 1000).toISOString(),
        });
        await store.images.put(record);
      }
    };
    await Promise.all(Array.from({ length: WRITERS }, writer));
    return store.images.list().length;
  } finally {
    await store.close(); // index and store lock: the server takes the store over next
  }
}

export async function runListBench(): Promise<PartResult> {
  const started = process.hrtime.bigint();
  const work = await makeWorkDir('list');
  const stateDir = join(work, 'state');
  let server: BenchServer | undefined;
  try {
    log(`list: populating the store with ${IMAGES} images`);
    const fill = await timed(() => populate(join(stateDir, 'store')));
    if (fill.value !== IMAGES) throw new Error(`store holds ${fill.value} images, expected ${IMAGES}`);
    log(`list: populated in ${round(fill.ms / 1000)} s; starting the server`);
    const config = await acceptAnythingConfig(work);
    // No registry is contacted: ListImages and ImageStatus read the index only.
    const boot = await timed(() => startBenchServer({ ...config, stateDir }));
    server = boot.value;
    const s = server;

    const first = await s.client.call<{ images: unknown[] }>('ListImages', {});
    if (first.images.length !== IMAGES) throw new Error(`ListImages returned ${first.images.length} images, expected ${IMAGES}`);
    const raw = rawLister(s.socket);
    const rawMs: number[] = [];
    const handlerMs: number[] = [];
    let responseBytes = 0;
    try {
      for (let i = 0; i < 5; i++) await raw.list(); // warm-up
      for (let i = 0; i < CALLS; i++) {
        const { ms, value } = await timed(() => raw.list());
        rawMs.push(ms);
        responseBytes = value.length;
      }
      await new Promise((r) => setTimeout(r, 200)); // let the last log lines arrive
      handlerMs.push(...handlerDurations(s.logs()).slice(-CALLS));
    } finally {
      raw.close();
    }
    for (let i = 0; i < 5; i++) await s.client.call('ListImages', {}); // warm-up
    const listMs: number[] = [];
    for (let i = 0; i < Math.min(CALLS, 50); i++) listMs.push((await timed(() => s.client.call('ListImages', {}))).ms);
    const statusMs: number[] = [];
    for (let i = 0; i < CALLS; i++) {
      const tag = tagOf((i * 7919) % IMAGES);
      const { ms, value } = await timed(() => s.client.call<{ image: { repo_tags: string[] } | null }>('ImageStatus', { image: { image: tag } }));
      if (value.image?.repo_tags[0] !== tag) throw new Error(`ImageStatus ${tag} did not find the image`);
      statusMs.push(ms);
    }
    const listP50 = median(rawMs);
    const listP99 = percentile(rawMs, 99);
    console.log(`\n=== list (issue 7): ${IMAGES} images in the index, ${CALLS} sequential calls each ===`);
    printTable(
      ['call', 'p50 ms', 'p99 ms', 'max ms'],
      [
        [
          'ListImages, response as bytes (server + transport)',
          round(listP50, 2).toFixed(2),
          round(listP99, 2).toFixed(2),
          round(Math.max(...rawMs), 2).toFixed(2),
        ],
        [
          '  of which the server handler (from its log)',
          round(median(handlerMs), 2).toFixed(2),
          round(percentile(handlerMs, 99), 2).toFixed(2),
          handlerMs.length > 0 ? round(Math.max(...handlerMs), 2).toFixed(2) : 'n/a',
        ],
        [
          `ListImages, grpc-js client decoding (${listMs.length} calls)`,
          round(median(listMs), 2).toFixed(2),
          round(percentile(listMs, 99), 2).toFixed(2),
          round(Math.max(...listMs), 2).toFixed(2),
        ],
        [
          'ImageStatus by tag',
          round(median(statusMs), 2).toFixed(2),
          round(percentile(statusMs, 99), 2).toFixed(2),
          round(Math.max(...statusMs), 2).toFixed(2),
        ],
      ],
    );
    console.log(`ListImages response: ${round(responseBytes / 1024 / 1024, 2)} MiB for ${IMAGES} images.`);
    console.log(`store populated in ${round(fill.ms / 1000, 1)} s; server start-up with ${IMAGES} images: ${Math.round(boot.ms)} ms`);
    return {
      part: 'list',
      figures: [
        { name: 'ListImages p50, 10,000 images', value: round(listP50, 2), unit: 'ms' },
        { name: 'ListImages p99, 10,000 images', value: round(listP99, 2), unit: 'ms', target: { op: '<', value: 50 } },
        { name: 'ListImages p99 incl. grpc-js client decode', value: round(percentile(listMs, 99), 2), unit: 'ms' },
        { name: 'ImageStatus p99, 10,000 images', value: round(percentile(statusMs, 99), 2), unit: 'ms' },
        { name: 'server start-up with 10,000 images', value: Math.round(boot.ms), unit: 'ms' },
      ],
      details: {
        images: IMAGES,
        calls: CALLS,
        populateMs: fill.ms,
        startupMs: boot.ms,
        responseBytes,
        rawListMs: rawMs,
        handlerMs,
        grpcJsListMs: listMs,
        statusP50Ms: median(statusMs),
        statusP99Ms: percentile(statusMs, 99),
      },
      seconds: round(msSince(started) / 1000),
    };
  } finally {
    await server?.stop();
    await removeDir(work);
  }
}
