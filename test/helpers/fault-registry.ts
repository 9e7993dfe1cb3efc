/**
 * A small node:http server that speaks the distribution protocol (`/v2/`, manifests by tag or digest,
 * blobs with Range/206, JSON error bodies) and injects faults the real registry cannot produce.
 *
 *   const reg = await startFaultRegistry();
 *   reg.addImage('app', 'v1', builtImage);                 // from buildOciImage (blobs + manifest)
 *   reg.addManifest('app', 'v2', bytes, mediaType);         // raw manifest bytes (also by digest)
 *   reg.addBlob(bytes)                                      // → digest
 *   reg.fault(digestOrPath, { kind: 'reset-after', bytes: 1000 }, { kind: 'status', status: 503 });
 *       // faults queue per blob digest (or manifest `repo:ref`); each request consumes one
 *   reg.requests      // [{ method, path, range, authorization }] — assert the Range header was seen
 *   reg.host          // '127.0.0.1:PORT' — use with `insecureRegistries: [reg.host]`
 *   await reg.stop();
 *
 * Fault kinds: status (any status, optional headers such as Retry-After), reset-after (send N bytes
 * of a full-length response, then destroy the socket), corrupt (flip one byte, same length; optionally
 * after a delay),
 * truncate (send only N bytes with a matching Content-Length), stall-after (send N bytes then
 * nothing), ignore-range (answer 200 with the full body even when Range was asked), redirect
 * (307 to `location`, e.g. another fault registry's `/v2/x/blobs/<digest>`, like blob storage),
 * drip (headers at once, then `bytes` (default 1) every `intervalMs`: never idle long enough for an
 * idle timeout, so only an overall deadline ends it; also for the key `/v2/`, the ping).
 * `startFaultRegistry({ basic: { username, password } })` demands HTTP Basic on every /v2 request.
 */
import { createHash } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import type { BuiltImage } from './oci-image.js';

export type Fault =
  | { readonly kind: 'status'; readonly status: number; readonly headers?: Readonly<Record<string, string>>; readonly body?: string }
  | { readonly kind: 'reset-after'; readonly bytes: number }
  | { readonly kind: 'corrupt' /** Hold the body back this long first (a slow, bad blob). */; readonly delayMs?: number }
  | { readonly kind: 'truncate'; readonly bytes: number }
  | { readonly kind: 'stall-after'; readonly bytes: number }
  | { readonly kind: 'ignore-range' }
  | { readonly kind: 'redirect'; readonly location: string }
  | { readonly kind: 'drip'; readonly intervalMs: number; readonly bytes?: number };

export interface RecordedRequest {
  readonly method: string;
  readonly path: string;
  readonly range?: string;
  readonly authorization?: string;
}

export interface FaultRegistry {
  readonly host: string;
  readonly url: string;
  readonly requests: RecordedRequest[];
  addBlob(bytes: Uint8Array): string;
  addManifest(repo: string, tag: string | undefined, bytes: Uint8Array, mediaType: string): string;
  addImage(repo: string, tag: string, image: BuiltImage): void;
  /** Queues faults for a blob digest or a manifest key `repo:ref` (or `/v2/`: only `drip`). */
  fault(key: string, ...faults: Fault[]): void;
  /** Drops the faults still queued for `key`: it is served intact from now on. */
  clearFaults(key: string): void;
  stop(): Promise<void>;
}

function digestOf(bytes: Uint8Array): string {
  return `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
}

function errorBody(code: string, message: string): string {
  return JSON.stringify({ errors: [{ code, message }] });
}

export async function startFaultRegistry(options: { readonly basic?: { readonly username: string; readonly password: string } } = {}): Promise<FaultRegistry> {
  const expectedAuth =
    options.basic === undefined ? undefined : `Basic ${Buffer.from(`${options.basic.username}:${options.basic.password}`).toString('base64')}`;
  const blobs = new Map<string, Uint8Array>();
  const manifests = new Map<string, { bytes: Uint8Array; mediaType: string }>();
  const faults = new Map<string, Fault[]>();
  const requests: RecordedRequest[] = [];
  const sockets = new Set<Socket>();

  function serve(res: ServerResponse, req: IncomingMessage, key: string, bytes: Uint8Array, mediaType: string, digest: string): void {
    const fault = faults.get(key)?.shift();
    if (fault?.kind === 'redirect') {
      res.writeHead(307, { location: fault.location }).end();
      return;
    }
    if (fault?.kind === 'status') {
      res.writeHead(fault.status, { 'content-type': 'application/json', ...fault.headers });
      res.end(fault.body ?? errorBody(fault.status === 429 ? 'TOOMANYREQUESTS' : 'UNAVAILABLE', `injected ${fault.status}`));
      return;
    }
    const range = /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
    let body = Buffer.from(bytes);
    let status = 200;
    const headers: Record<string, string | number> = { 'content-type': mediaType, 'docker-content-digest': digest };
    if (range !== null && fault?.kind !== 'ignore-range') {
      const start = Number(range[1]);
      if (start >= body.length) {
        res.writeHead(416, { 'content-range': `bytes */${body.length}` }).end();
        return;
      }
      headers['content-range'] = `bytes ${start}-${body.length - 1}/${body.length}`;
      body = body.subarray(start);
      status = 206;
    }
    if (fault?.kind === 'corrupt') {
      body = Buffer.from(body);
      body[body.length >> 1] = (body[body.length >> 1] ?? 0) ^ 0xff;
    }
    if (fault?.kind === 'truncate') body = body.subarray(0, fault.bytes);
    headers['content-length'] = body.length;
    res.writeHead(status, headers);
    if (req.method === 'HEAD') {
      res.end();
      return;
    }
    if (fault?.kind === 'reset-after') {
      res.write(body.subarray(0, fault.bytes), () => setTimeout(() => res.socket?.destroy(), 20));
      return;
    }
    if (fault?.kind === 'drip') {
      drip(res, body, fault);
      return;
    }
    if (fault?.kind === 'stall-after') {
      res.write(body.subarray(0, fault.bytes)); // and never finish; stop() destroys the socket
      return;
    }
    if (fault?.kind === 'corrupt' && fault.delayMs !== undefined) {
      setTimeout(() => res.end(body), fault.delayMs);
      return;
    }
    res.end(body);
  }

  function drip(res: ServerResponse, body: Buffer, fault: Extract<Fault, { kind: 'drip' }>): void {
    res.flushHeaders();
    let offset = 0;
    const timer = setInterval(() => {
      if (offset >= body.length) {
        clearInterval(timer);
        res.end();
        return;
      }
      res.write(body.subarray(offset, offset + (fault.bytes ?? 1)));
      offset += fault.bytes ?? 1;
    }, fault.intervalMs);
    res.on('close', () => clearInterval(timer));
  }

  const server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    requests.push({
      method: req.method ?? '',
      path: url.pathname,
      ...(req.headers.range !== undefined ? { range: req.headers.range } : {}),
      ...(req.headers.authorization !== undefined ? { authorization: req.headers.authorization } : {}),
    });
    if (expectedAuth !== undefined && req.headers.authorization !== expectedAuth) {
      res
        .writeHead(401, { 'content-type': 'application/json', 'www-authenticate': 'Basic realm="fault-registry"' })
        .end(errorBody('UNAUTHORIZED', 'authentication required'));
      return;
    }
    if (url.pathname === '/v2/' || url.pathname === '/v2') {
      const fault = faults.get('/v2/')?.shift();
      res.writeHead(200, { 'content-type': 'application/json', 'docker-distribution-api-version': 'registry/2.0' });
      if (fault?.kind === 'drip') drip(res, Buffer.from('{}'), fault);
      else res.end('{}');
      return;
    }
    const m = /^\/v2\/(.+)\/(manifests|blobs)\/([^/]+)$/.exec(url.pathname);
    if (m === null) {
      res.writeHead(404, { 'content-type': 'application/json' }).end(errorBody('NOT_FOUND', 'not found'));
      return;
    }
    const [, repo, what, ref] = m as unknown as [string, string, string, string];
    if (what === 'manifests') {
      const key = `${repo}:${ref}`;
      const found = manifests.get(key);
      if (found === undefined) {
        const early = faults.get(key)?.[0];
        if (early?.kind === 'status') return serve(res, req, key, new Uint8Array(), 'application/json', '');
        res.writeHead(404, { 'content-type': 'application/json' }).end(errorBody('MANIFEST_UNKNOWN', 'manifest unknown'));
        return;
      }
      serve(res, req, key, found.bytes, found.mediaType, digestOf(found.bytes));
      return;
    }
    const blob = blobs.get(ref);
    if (blob === undefined) {
      res.writeHead(404, { 'content-type': 'application/json' }).end(errorBody('BLOB_UNKNOWN', 'blob unknown'));
      return;
    }
    serve(res, req, ref, blob, 'application/octet-stream', ref);
  });
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  const host = `127.0.0.1:${port}`;

  const registry: FaultRegistry = {
    host,
    url: `http://${host}`,
    requests,
    addBlob(bytes) {
      const digest = digestOf(bytes);
      blobs.set(digest, bytes);
      return digest;
    },
    addManifest(repo, tag, bytes, mediaType) {
      const digest = digestOf(bytes);
      manifests.set(`${repo}:${digest}`, { bytes, mediaType });
      if (tag !== undefined) manifests.set(`${repo}:${tag}`, { bytes, mediaType });
      return digest;
    },
    addImage(repo, tag, image) {
      for (const layer of image.layers) registry.addBlob(layer.bytes);
      registry.addBlob(image.config.bytes);
      registry.addManifest(repo, tag, image.manifest.bytes, image.manifest.mediaType);
    },
    fault(key, ...more) {
      faults.set(key, [...(faults.get(key) ?? []), ...more]);
    },
    clearFaults(key) {
      faults.delete(key);
    },
    async stop() {
      for (const s of sockets) s.destroy();
      await new Promise((r) => server.close(r));
    },
  };
  return registry;
}
