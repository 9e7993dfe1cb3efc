/**
 * The cheapest verifier imaginable, for the containerd bench's floor row: downloads the given
 * blobs (two at a time, as pullguard does while a runtime waits) and checks their sha256 —
 * nothing stored, nothing forwarded, no policy. Whatever it costs while containerd pulls the same
 * image directly is a cost every verifying hop in the data path pays at least once.
 *
 *   node dist/test/bench/bare-verifier.js <digest>=<url> ...
 *
 * Prints "ready", starts on the first line on stdin, prints {"ms":…,"cpuMs":…} (its own wall and
 * CPU time for the work) when all blobs are checked, and exits.
 */
import { createHash } from 'node:crypto';
import { get } from 'node:http';

const CONCURRENCY = 2;

function fetchAndHash(url: string): Promise<string> {
  return new Promise((resolve, reject) => {
    get(url, (res) => {
      if (res.statusCode !== 200) {
        res.resume();
        reject(new Error(`${url}: HTTP ${res.statusCode}`));
        return;
      }
      const hash = createHash('sha256');
      res.on('data', (chunk: Buffer) => hash.update(chunk));
      res.on('end', () => resolve(`sha256:${hash.digest('hex')}`));
      res.on('error', reject);
    }).on('error', reject);
  });
}

async function verifyAll(blobs: readonly { digest: string; url: string }[]): Promise<void> {
  const queue = [...blobs];
  const worker = async (): Promise<void> => {
    for (let blob = queue.shift(); blob !== undefined; blob = queue.shift()) {
      const actual = await fetchAndHash(blob.url);
      if (actual !== blob.digest) throw new Error(`${blob.url}: digest ${actual}, expected ${blob.digest}`);
    }
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, worker));
}

const blobs = process.argv.slice(2).map((arg) => {
  const eq = arg.indexOf('=');
  return { digest: arg.slice(0, eq), url: arg.slice(eq + 1) };
});
process.stdout.write('ready\n');
process.stdin.once('data', () => {
  const started = performance.now();
  const cpuBefore = process.cpuUsage();
  verifyAll(blobs).then(
    () => {
      const cpu = process.cpuUsage(cpuBefore);
      process.stdout.write(`${JSON.stringify({ ms: performance.now() - started, cpuMs: (cpu.user + cpu.system) / 1000 })}\n`);
      process.exit(0);
    },
    (err: unknown) => {
      process.stderr.write(`${err instanceof Error ? err.message : String(err)}\n`);
      process.exit(1);
    },
  );
});
