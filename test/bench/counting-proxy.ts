/**
 * A transparent HTTP/1.1 proxy in front of the real docker-registry that records every request
 * (the registry's own access log is disabled by the test helper), so the load benchmark can count
 * how often each blob was fetched. Streams bodies both ways; adds nothing to the protocol.
 */
import { Agent, createServer, request, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface ProxiedRequest {
  readonly method: string;
  readonly path: string;
  readonly status: number;
}

export interface CountingProxy {
  readonly host: string;
  readonly requests: ProxiedRequest[];
  /** GET requests per blob digest (`/v2/<repo>/blobs/<digest>`), any repository. */
  blobGets(): Map<string, number>;
  stop(): Promise<void>;
}

export async function startCountingProxy(targetHost: string): Promise<CountingProxy> {
  const [hostname, port] = [targetHost.slice(0, targetHost.lastIndexOf(':')), Number(targetHost.slice(targetHost.lastIndexOf(':') + 1))];
  const agent = new Agent({ keepAlive: true, maxSockets: 64 });
  const requests: ProxiedRequest[] = [];
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const upstream = request({ hostname, port, method: req.method, path: req.url, headers: { ...req.headers, host: targetHost }, agent }, (up) => {
      requests.push({ method: req.method ?? '', path: req.url ?? '', status: up.statusCode ?? 0 });
      res.writeHead(up.statusCode ?? 502, up.headers);
      up.pipe(res);
    });
    upstream.on('error', () => {
      requests.push({ method: req.method ?? '', path: req.url ?? '', status: 502 });
      if (!res.headersSent) res.writeHead(502).end();
      else res.destroy();
    });
    req.pipe(upstream);
  });
  await new Promise<void>((ok) => server.listen(0, '127.0.0.1', ok));
  const { port: own } = server.address() as AddressInfo;
  return {
    host: `127.0.0.1:${own}`,
    requests,
    blobGets() {
      const counts = new Map<string, number>();
      for (const r of requests) {
        const m = /^\/v2\/.+\/blobs\/(sha256:[0-9a-f]{64})(?:\?|$)/.exec(r.path);
        if (r.method === 'GET' && m?.[1] !== undefined) counts.set(m[1], (counts.get(m[1]) ?? 0) + 1);
      }
      return counts;
    },
    async stop() {
      server.closeAllConnections();
      await new Promise<void>((ok) => server.close(() => ok()));
      agent.destroy();
    },
  };
}
