/**
 * The Prometheus scrape endpoint: `GET /metrics` and nothing else. It binds loopback unless told
 * otherwise, because metrics reveal what a node pulls and nothing here authenticates scrapers.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { PullguardError } from '../domain/errors.js';
import type { Logger } from '../log/logger.js';
import { isLoopbackHost, parseListenAddress } from '../util/listen-address.js';
import { EXPOSITION_CONTENT_TYPE, type MetricsRegistry } from './registry.js';

export const DEFAULT_METRICS_ADDRESS = '127.0.0.1:9464';

export interface MetricsServerOptions {
  /** `host:port` or `[v6]:port`; port 0 picks a free one. Default 127.0.0.1:9464. */
  readonly address?: string;
  readonly metrics: { readonly registry: MetricsRegistry };
  readonly logger: Logger;
  /** Required to bind anything but a loopback address. */
  readonly allowNonLoopback?: boolean;
}

export interface MetricsServer {
  /** e.g. `http://127.0.0.1:9464/metrics`. */
  readonly url: string;
  close(): Promise<void>;
}

export async function startMetricsServer(options: MetricsServerOptions): Promise<MetricsServer> {
  const { host, port } = parseListenAddress(options.address ?? DEFAULT_METRICS_ADDRESS, 'metrics address');
  if (!isLoopbackHost(host) && options.allowNonLoopback !== true) {
    throw new PullguardError('INVALID_CONFIG', `metrics address ${host} is not a loopback address; allow it explicitly to expose metrics beyond this host`, {
      facts: { host },
    });
  }
  const log = options.logger.child({ component: 'metrics' });
  const registry = options.metrics.registry;

  const server = createServer((request: IncomingMessage, response: ServerResponse) => {
    const path = (request.url ?? '/').split('?')[0];
    if (path !== '/metrics') {
      response.writeHead(404, { 'content-type': 'text/plain; charset=utf-8' }).end('not found\n');
      return;
    }
    if (request.method !== 'GET' && request.method !== 'HEAD') {
      response.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'text/plain; charset=utf-8' }).end('method not allowed\n');
      return;
    }
    let body: string;
    try {
      body = registry.expose();
    } catch (err) {
      log.error({ error: err instanceof Error ? err.message : String(err) }, 'rendering metrics failed');
      response.writeHead(500, { 'content-type': 'text/plain; charset=utf-8' }).end('internal error\n');
      return;
    }
    response.writeHead(200, { 'content-type': EXPOSITION_CONTENT_TYPE, 'content-length': Buffer.byteLength(body), 'cache-control': 'no-store' });
    response.end(request.method === 'HEAD' ? undefined : body);
  });
  // A scrape is tiny: slow or idle clients are cut off rather than held.
  server.requestTimeout = 10_000;
  server.headersTimeout = 5_000;
  server.keepAliveTimeout = 5_000;
  server.maxHeadersCount = 50;

  await new Promise<void>((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException): void => {
      reject(
        new PullguardError('INVALID_CONFIG', `cannot listen on metrics address ${options.address ?? DEFAULT_METRICS_ADDRESS}: ${err.code ?? err.message}`, {
          cause: err,
        }),
      );
    };
    server.once('error', onError);
    server.listen(port, host, () => {
      server.off('error', onError);
      resolve();
    });
  });
  server.on('error', (err) => log.error({ error: err.message }, 'metrics server error'));

  const bound = server.address() as AddressInfo;
  const urlHost = bound.family === 'IPv6' ? `[${bound.address}]` : bound.address;
  const url = `http://${urlHost}:${bound.port}/metrics`;
  log.info({ url }, 'metrics endpoint listening');

  let closing: Promise<void> | undefined;
  return {
    url,
    close() {
      closing ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
      return closing;
    },
  };
}
