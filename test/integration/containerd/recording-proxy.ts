/**
 * A plain HTTP reverse proxy in front of the real docker-registry that records every request
 * (method, path, User-Agent), so a test can tell who fetched what from "the registry".
 */
import { createServer, request as httpRequest } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface RecordedRequest {
  readonly method: string;
  readonly path: string;
  readonly userAgent: string;
}

export interface RecordingProxy {
  readonly host: string;
  readonly requests: RecordedRequest[];
  close(): Promise<void>;
}

export async function startRecordingProxy(target: { host: string }): Promise<RecordingProxy> {
  const [targetHost = '127.0.0.1', targetPort = '80'] = target.host.split(':');
  const requests: RecordedRequest[] = [];
  const server = createServer((req, res) => {
    requests.push({ method: req.method ?? '', path: req.url ?? '', userAgent: String(req.headers['user-agent'] ?? '') });
    const upstream = httpRequest(
      { host: targetHost, port: Number(targetPort), method: req.method, path: req.url, headers: { ...req.headers, host: target.host }, timeout: 30_000 },
      (up) => {
        // Location headers point at the registry itself; rewrite so redirects stay on the proxy.
        const headers = { ...up.headers };
        if (typeof headers.location === 'string') headers.location = headers.location.replace(`http://${target.host}`, `http://${host}`);
        res.writeHead(up.statusCode ?? 502, headers);
        up.pipe(res);
      },
    );
    upstream.on('error', () => res.destroy());
    upstream.on('timeout', () => upstream.destroy());
    req.pipe(upstream);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const host = `127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    host,
    requests,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
