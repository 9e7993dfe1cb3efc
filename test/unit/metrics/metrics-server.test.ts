import { Writable } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import { PullguardError } from '../../../src/domain/errors.js';
import { createLogger } from '../../../src/log/logger.js';
import { createPullguardMetrics } from '../../../src/metrics/pullguard-metrics.js';
import { startMetricsServer, type MetricsServer } from '../../../src/metrics/metrics-server.js';
import { parseExposition } from './exposition.js';

const lines: string[] = [];
const logger = createLogger({
  level: 'debug',
  destination: new Writable({
    write(chunk: Buffer, _enc, done) {
      lines.push(chunk.toString());
      done();
    },
  }),
});

const servers: MetricsServer[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.close()));
});

async function start(): Promise<{ server: MetricsServer; metrics: ReturnType<typeof createPullguardMetrics> }> {
  const metrics = createPullguardMetrics();
  const server = await startMetricsServer({ address: '127.0.0.1:0', metrics, logger });
  servers.push(server);
  return { server, metrics };
}

describe('startMetricsServer', () => {
  it('serves GET /metrics over real HTTP in format 0.0.4', async () => {
    const { server, metrics } = await start();
    metrics.recordPull('allowed', 0.4);
    metrics.recordRpc('PullImage', 0);
    expect(server.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/metrics$/);
    const response = await fetch(server.url);
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toBe('text/plain; version=0.0.4; charset=utf-8');
    const families = parseExposition(await response.text());
    expect(families.get('pullguard_pulls_total')?.samples.find((s) => s.labels['outcome'] === 'allowed')?.value).toBe(1);
    expect(families.get('pullguard_rpc_total')?.samples).toEqual([{ name: 'pullguard_rpc_total', labels: { code: 'OK', rpc: 'PullImage' }, value: 1 }]);
  });

  it('answers 404 elsewhere and 405 for other methods; HEAD has no body', async () => {
    const { server } = await start();
    const base = new URL(server.url);
    expect((await fetch(new URL('/', base))).status).toBe(404);
    expect((await fetch(new URL('/metrics/x', base))).status).toBe(404);
    const post = await fetch(server.url, { method: 'POST', body: 'x' });
    expect(post.status).toBe(405);
    expect(post.headers.get('allow')).toBe('GET, HEAD');
    const head = await fetch(server.url, { method: 'HEAD' });
    expect(head.status).toBe(200);
    expect(await head.text()).toBe('');
    // A query string is fine (some scrapers add one).
    expect((await fetch(`${server.url}?name[]=x`)).status).toBe(200);
  });

  it('refuses a non-loopback address unless allowed', async () => {
    const metrics = createPullguardMetrics();
    await expect(startMetricsServer({ address: '0.0.0.0:0', metrics, logger })).rejects.toMatchObject({ code: 'INVALID_CONFIG' });
    await expect(startMetricsServer({ address: '[::]:0', metrics, logger })).rejects.toMatchObject({ code: 'INVALID_CONFIG' });
    const allowed = await startMetricsServer({ address: '0.0.0.0:0', metrics, logger, allowNonLoopback: true });
    servers.push(allowed);
    expect(allowed.url).toMatch(/^http:\/\/0\.0\.0\.0:\d+\/metrics$/);
  });

  it('reports a port in use as INVALID_CONFIG', async () => {
    const { server } = await start();
    const port = new URL(server.url).port;
    const err = await startMetricsServer({ address: `127.0.0.1:${port}`, metrics: createPullguardMetrics(), logger }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PullguardError);
    expect((err as PullguardError).code).toBe('INVALID_CONFIG');
    expect((err as PullguardError).message).toContain('EADDRINUSE');
  });

  it('close() stops listening and is idempotent', async () => {
    const { server } = await start();
    await server.close();
    await server.close();
    await expect(fetch(server.url)).rejects.toThrow();
  });
});
