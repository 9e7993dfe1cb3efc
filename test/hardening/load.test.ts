/**
 * A small version of the load benchmark for every `npm test`: concurrent PullImage calls over
 * images that share layers while ImageStatus and ListImages run in a loop. No call may fail and
 * every shared layer is downloaded once. (`npm run bench` runs the full 50 × 10 version.)
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFaultRegistry, type FaultRegistry } from '../helpers/fault-registry.js';
import { buildOciImage, type BuiltImage } from '../helpers/oci-image.js';
import { startPullguard, type RunningPullguard } from '../helpers/pullguard-server.js';
import { figure } from './fuzz-support.js';

const IMAGES = 5;
const PULLS = 20;

let work: string;
let registry: FaultRegistry;
let images: BuiltImage[];
let server: RunningPullguard;

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'pullguard-load-'));
  registry = await startFaultRegistry();
  // Every image: the same 400 kB base, one of two 100 kB middles, and a small unique layer.
  images = await Promise.all(
    Array.from({ length: IMAGES }, (_, i) =>
      buildOciImage(join(work, `img-${i}`), {
        tag: 'v1',
        seed: 90 + (i % 2),
        layers: [{ size: 400_000 }, { size: 100_000 }, { files: { [`etc/id-${i}`]: `image ${i}` } }],
      }),
    ),
  );
  for (const [i, image] of images.entries()) registry.addImage(`load${i}`, 'v1', image);
  const policy = join(work, 'policy.json');
  await writeFile(policy, JSON.stringify({ default: [{ type: 'insecureAcceptAnything' }] }));
  server = await startPullguard({ args: ['--signature-policy', policy, '--insecure-registry', registry.host] });
}, 60_000);

afterAll(async () => {
  await server?.stop();
  await registry?.stop();
  await rm(work, { recursive: true, force: true });
});

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? 0;
}

describe('load', () => {
  it(`${PULLS} concurrent pulls over ${IMAGES} images sharing layers, with ImageStatus/ListImages in a loop`, async () => {
    let pulling = true;
    const statusLatencies: number[] = [];
    let queryFailures = 0;
    const queries = (async () => {
      while (pulling) {
        const started = performance.now();
        await Promise.all([server.client.call('ImageStatus', { image: { image: `${registry.host}/load0:v1` } }), server.client.call('ListImages', {})]).catch(
          () => {
            queryFailures += 1;
          },
        );
        statusLatencies.push(performance.now() - started);
      }
    })();
    const started = performance.now();
    const results = await Promise.allSettled(
      Array.from({ length: PULLS }, (_, i) =>
        server.client.call<{ image_ref: string }>('PullImage', { image: { image: `${registry.host}/load${i % IMAGES}:v1` } }),
      ),
    );
    const seconds = (performance.now() - started) / 1000;
    pulling = false;
    await queries;

    expect(results.filter((r) => r.status === 'rejected')).toEqual([]);
    expect(queryFailures).toBe(0);
    const blobGets = new Map<string, number>();
    for (const request of registry.requests) {
      const digest = /\/blobs\/(sha256:[0-9a-f]{64})$/.exec(request.path)?.[1];
      if (request.method === 'GET' && digest !== undefined) blobGets.set(digest, (blobGets.get(digest) ?? 0) + 1);
    }
    expect([...blobGets.values()].every((n) => n === 1)).toBe(true);
    expect(blobGets.get(images[0]!.layers[0]!.digest)).toBe(1);
    const sorted = [...statusLatencies].sort((a, b) => a - b);
    figure('load_pulls_per_second', Math.round((PULLS / seconds) * 10) / 10);
    figure('load_query_p50_ms', Math.round(percentile(sorted, 50) * 10) / 10);
    figure('load_query_p99_ms', Math.round(percentile(sorted, 99) * 10) / 10);
    figure('load_failures', 0);
  });
});
