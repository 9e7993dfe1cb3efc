/**
 * The CRI backend client against a fake runtime speaking the real protocol on a unix socket: raw
 * bytes both ways, fast BACKEND_UNAVAILABLE when the runtime is gone, recovery when it is back,
 * per-call deadlines, cancellation, the 16 MiB receive limit, and the runtime's messages kept.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createCriBackend, type CriBackend } from '../../../src/backend/cri-backend.js';
import { imageRpcCodec } from '../../../src/backend/cri-wire.js';
import { startFakeCriBackend, type FakeCriBackend } from './fake-cri-backend.js';

let dir: string;
let fake: FakeCriBackend;
const clients: CriBackend[] = [];

function client(options: Partial<Parameters<typeof createCriBackend>[0]> = {}): CriBackend {
  const c = createCriBackend({ endpoint: fake.endpoint, ...options });
  clients.push(c);
  return c;
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'pullguard-backend-'));
  fake = await startFakeCriBackend(join(dir, 'runtime.sock'));
});

afterEach(async () => {
  fake.answer = () => Buffer.alloc(0);
  fake.received.length = 0;
  await fake.start().catch(() => undefined); // restart if a test stopped it
});

afterAll(async () => {
  for (const c of clients) c.close();
  await fake.stop();
  await rm(dir, { recursive: true, force: true });
});

async function failure(promise: Promise<unknown>): Promise<{ code: string; message: string; facts: Record<string, unknown> }> {
  return promise.then(
    () => {
      throw new Error('expected a failure');
    },
    (err: { code: string; message: string; facts: Record<string, unknown> }) => err,
  );
}

describe('CRI backend client', () => {
  it('sends and returns raw bytes unchanged', async () => {
    const request = Buffer.from([0x0a, 0x03, 0x0a, 0x01, 0x78, 0xf8, 0x05, 0x01]); // ImageSpec{image:"x"} + unknown field 95
    fake.answer = () => Buffer.from([0xa2, 0x06, 0x02, 0x68, 0x69]); // only an unknown field 100
    const response = await client().call('ImageStatus', request);
    expect(fake.received[0]?.bytes).toEqual(request);
    expect(response).toEqual(Buffer.from([0xa2, 0x06, 0x02, 0x68, 0x69]));
  });

  it('encodes and decodes with the vendored proto', async () => {
    fake.answer = (_rpc, bytes) => {
      const request = imageRpcCodec('ImageStatus').decodeRequest(bytes) as { image: { image: string } };
      return imageRpcCodec('ImageStatus').encodeResponse({ image: { id: 'sha256:aa', size: '7', repo_tags: [request.image.image] }, info: {} });
    };
    const response = await client().callDecoded<{ image: { id: string; size: string; repo_tags: string[] } }>('ImageStatus', {
      image: { image: 'docker.io/library/a:b' },
    });
    expect(response.image).toMatchObject({ id: 'sha256:aa', size: '7', repo_tags: ['docker.io/library/a:b'] });
  });

  it('fails fast with BACKEND_UNAVAILABLE naming the socket when the runtime is not there', async () => {
    const missing = join(dir, 'nobody-here.sock');
    const c = createCriBackend({ endpoint: `unix://${missing}` });
    clients.push(c);
    for (let i = 0; i < 2; i++) {
      const started = Date.now();
      const err = await failure(c.call('ImageFsInfo', Buffer.alloc(0)));
      expect(Date.now() - started).toBeLessThan(1500);
      expect(err.code).toBe('BACKEND_UNAVAILABLE');
      expect(err.message).toContain(`unix://${missing}`);
    }
  });

  it('recovers by itself when the runtime comes back', async () => {
    const c = client();
    await c.call('ImageFsInfo', Buffer.alloc(0));
    await fake.stop();
    expect((await failure(c.call('ImageFsInfo', Buffer.alloc(0)))).code).toBe('BACKEND_UNAVAILABLE');
    await fake.start();
    const deadline = Date.now() + 5000;
    let ok = false;
    while (!ok && Date.now() < deadline) {
      ok = await c.call('ImageFsInfo', Buffer.alloc(0)).then(
        () => true,
        () => new Promise<boolean>((r) => setTimeout(() => r(false), 100)),
      );
    }
    expect(ok).toBe(true);
  });

  it('gives a hanging runtime a short deadline on non-pull calls', async () => {
    fake.answer = () => 'hang';
    const started = Date.now();
    const err = await failure(client({ callTimeoutMs: 300 }).call('ImageStatus', Buffer.alloc(0)));
    expect(Date.now() - started).toBeLessThan(2000);
    expect(err.code).toBe('BACKEND_UNAVAILABLE');
    expect(err.message).toMatch(/did not answer ImageStatus within 300 ms/);
  });

  it('does not give PullImage the short deadline, and cancels it with the caller', async () => {
    fake.answer = () => 'hang';
    const controller = new AbortController();
    const pending = failure(client({ callTimeoutMs: 100 }).call('PullImage', Buffer.alloc(0), { signal: controller.signal }));
    await new Promise((r) => setTimeout(r, 400)); // well past the non-pull deadline
    controller.abort();
    expect((await pending).code).toBe('CANCELLED');
  });

  it('can start the PullImage deadline later: not while pullguard is still fetching, then counted in full', async () => {
    fake.answer = () => 'hang';
    let fetchDone!: () => void;
    const fetched = new Promise<void>((resolve) => (fetchDone = resolve));
    const started = Date.now();
    let settledAt = 0;
    const pending = failure(client({ pullTimeoutMs: 200 }).call('PullImage', Buffer.alloc(0), { timeoutStartsWhen: fetched })).finally(
      () => (settledAt = Date.now()),
    );
    await new Promise((r) => setTimeout(r, 500)); // well past the pull deadline, but the fetch is not done
    expect(settledAt).toBe(0);
    fetchDone();
    const err = await pending;
    expect(err.code).toBe('BACKEND_UNAVAILABLE');
    expect(err.message).toMatch(/did not answer PullImage within 200 ms/);
    expect(settledAt - started).toBeGreaterThanOrEqual(650); // 500 ms of fetch, then the full 200 ms
  });

  it('accepts answers up to 16 MiB and refuses larger ones', async () => {
    const big = Buffer.alloc(12 * 1024 * 1024, 1);
    fake.answer = () => big;
    expect((await client().call('ListImages', Buffer.alloc(0))).length).toBe(big.length);
    fake.answer = () => Buffer.alloc(17 * 1024 * 1024, 1);
    const err = await failure(client().call('ListImages', Buffer.alloc(0)));
    expect(err.code).toBe('BACKEND_ERROR');
    expect(err.facts['backendCode']).toBe('RESOURCE_EXHAUSTED');
  });

  it("keeps the runtime's own error message and code", async () => {
    fake.answer = () => ({ code: grpc.status.NOT_FOUND, details: 'failed to resolve reference "x": not found' });
    const err = await failure(client().call('PullImage', Buffer.alloc(0)));
    expect(err).toMatchObject({ code: 'BACKEND_ERROR', message: 'container runtime: failed to resolve reference "x": not found' });
    expect(err.facts['backendCode']).toBe('NOT_FOUND');
    fake.answer = () => ({ code: grpc.status.INVALID_ARGUMENT, details: 'bad image' });
    expect((await failure(client().call('ImageStatus', Buffer.alloc(0)))).code).toBe('INVALID_ARGUMENT');
  });

  it('accepts only unix endpoints', () => {
    expect(() => createCriBackend({ endpoint: 'tcp://127.0.0.1:1' })).toThrow(expect.objectContaining({ code: 'INVALID_CONFIG' }));
  });
});
