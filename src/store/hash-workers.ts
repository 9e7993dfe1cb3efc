/**
 * Blob hashing off the main thread. A pull is CPU-bound on the one JS thread (sha256 of every byte
 * was ~30 % of it), while the second core idles; a small pool of worker threads hashes the batches
 * the writer has already written, in order, and answers the digest at commit.
 */
import { createHash } from 'node:crypto';
import { Worker } from 'node:worker_threads';

/** Plain JS (evaluated, so it runs the same from src/ under vitest and from dist/). */
const WORKER_SOURCE = `
const { parentPort } = require('node:worker_threads');
const { createHash } = require('node:crypto');
const hashes = new Map();
parentPort.on('message', (m) => {
  if (m.op === 'update') {
    let hash = hashes.get(m.id);
    if (hash === undefined) { hash = createHash(m.algorithm); hashes.set(m.id, hash); }
    hash.update(new Uint8Array(m.buffer, 0, m.length));
  } else if (m.op === 'digest') {
    const hash = hashes.get(m.id) ?? createHash(m.algorithm);
    hashes.delete(m.id);
    parentPort.postMessage({ id: m.id, hex: hash.digest('hex') });
  } else if (m.op === 'drop') {
    hashes.delete(m.id);
  }
});
`;

export interface IncrementalHash {
  /** Queues `bytes` (owned by the hasher from now on: the caller must not touch them again). */
  update(bytes: Uint8Array): void;
  /** Hex digest of everything queued. */
  digest(): Promise<string>;
  drop(): void;
}

export class HashWorkerPool {
  readonly #size: number;
  readonly #workers: Worker[] = [];
  readonly #waiting = new Map<number, { resolve: (hex: string) => void; reject: (err: Error) => void }>();
  readonly #pendingPerWorker = new Map<Worker, number>();
  #nextId = 1;
  #nextWorker = 0;

  constructor(size = 2) {
    this.#size = Math.max(1, size);
  }

  create(algorithm: 'sha256' | 'sha512'): IncrementalHash {
    const worker = this.#worker();
    const id = this.#nextId++;
    let done = false;
    return {
      update: (bytes) => {
        // Transfer when the bytes own their whole buffer; otherwise hand over a copy.
        const own = bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength && bytes.buffer instanceof ArrayBuffer ? bytes : new Uint8Array(bytes);
        const buffer = own.buffer as ArrayBuffer;
        worker.postMessage({ op: 'update', id, algorithm, buffer, length: own.byteLength }, [buffer]);
      },
      digest: () =>
        new Promise<string>((resolve, reject) => {
          done = true;
          // Keep the process alive while an answer is owed; idle workers are unref'd again.
          this.#pendingPerWorker.set(worker, (this.#pendingPerWorker.get(worker) ?? 0) + 1);
          worker.ref();
          const settle = (): void => {
            const left = (this.#pendingPerWorker.get(worker) ?? 1) - 1;
            this.#pendingPerWorker.set(worker, left);
            if (left === 0) worker.unref();
          };
          this.#waiting.set(id, {
            resolve: (hex) => {
              settle();
              resolve(hex);
            },
            reject: (err) => {
              settle();
              reject(err);
            },
          });
          worker.postMessage({ op: 'digest', id, algorithm });
        }),
      drop: () => {
        if (done) return;
        done = true;
        worker.postMessage({ op: 'drop', id });
      },
    };
  }

  async close(): Promise<void> {
    await Promise.all(this.#workers.splice(0).map((w) => w.terminate()));
  }

  #worker(): Worker {
    if (this.#workers.length < this.#size) {
      const worker = new Worker(WORKER_SOURCE, { eval: true });
      worker.on('message', (m: { id: number; hex: string }) => {
        const waiter = this.#waiting.get(m.id);
        this.#waiting.delete(m.id);
        waiter?.resolve(m.hex);
      });
      worker.on('error', (err) => {
        for (const [id, waiter] of this.#waiting) {
          this.#waiting.delete(id);
          waiter.reject(err);
        }
        this.#workers.splice(this.#workers.indexOf(worker), 1);
      });
      // Idle hashers must not keep the process alive (after the listeners: adding them re-refs).
      worker.unref();
      this.#workers.push(worker);
      return worker;
    }
    const worker = this.#workers[this.#nextWorker % this.#workers.length]!;
    this.#nextWorker += 1;
    return worker;
  }
}

/** On the calling thread: for small blobs, where a round trip to a worker costs more than the hash. */
export function inlineHash(algorithm: 'sha256' | 'sha512'): IncrementalHash {
  const hash = createHash(algorithm);
  return {
    update: (bytes) => void hash.update(bytes),
    digest: async () => hash.digest('hex'),
    drop: () => undefined,
  };
}
