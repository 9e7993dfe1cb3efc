/**
 * A fault-injecting lookaside (signature storage) HTTP server for tests. It serves a directory laid
 * out as skopeo writes it with `lookaside-staging` (`<repo path>@sha256=<hex>/signature-N`), answers
 * 404 for anything missing, and lets a test replace any index with a fault. It speaks plain HTTP/1.1
 * via node:http on 127.0.0.1:0.
 *
 *   const server = useLookasideServer();               // at file/describe top level: starts in
 *                                                      // beforeAll, resets faults, requests and
 *                                                      // the directory in
 *                                                      // beforeEach, stops in afterAll
 *   // or: const server = await startLookasideServer(); … await server.stop();
 *   server.url                                          // 'http://127.0.0.1:PORT'
 *   await server.writeSignature('library/app', digest, 1, bytes);  // → <dir>/library/app@sha256=<hex>/signature-1
 *   server.fault(2, { status: 503, retryAfter: 1 });   // index 2 of any image
 *   server.fault(3, { failTimes: 1, fault: { reset: true }, then: 'serve' });
 *   server.fault(2, { html: true }, 'library/app');    // index 2 of that repository's images only
 *   server.requests                                    // every request: path, index, headers, time
 *   server.requestsFor(2)                              // those for signature-2
 *
 * Faults (per index, for every image):
 *   { status, retryAfter? }      that status (no body worth reading); 404 = missing
 *   { html: true }               200 text/html CDN error page (first byte '<' = 0x3c)
 *   { reset: true }              headers + part of the body, then the socket is destroyed
 *   { empty: true }              200 with an empty body
 *   { bytes: n, declareLength? } 200 with n bytes starting 0xa3 (looks like a signature), chunked
 *                                unless declareLength
 *   { stallMs, headers? }        wait stallMs (after sending headers if `headers`), then serve
 *   { armored: true }            the stored signature as ASCII armour (first byte '-' = 0x2d)
 *   { contentType }              the stored signature with this Content-Type
 *   { redirectLoop: true }       302 to itself (with a counter query) forever
 *   { redirectTo: url }          302 to url
 *   { redirects: n }             n 302 hops, then the stored signature
 *   { failTimes: n, fault?, then: 'serve' | 'missing' }   `fault` (default 503) for the first n
 *                                requests of that index, then serve it / 404
 */
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer, type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve, sep } from 'node:path';
import { afterAll, beforeAll, beforeEach } from 'vitest';

export type LookasideFault =
  | { readonly status: number; readonly retryAfter?: number | string }
  | { readonly html: true }
  | { readonly reset: true }
  | { readonly empty: true }
  | { readonly bytes: number; readonly declareLength?: boolean }
  | { readonly stallMs: number; readonly headers?: boolean }
  | { readonly armored: true }
  | { readonly contentType: string }
  | { readonly redirectLoop: true }
  | { readonly redirectTo: string }
  | { readonly redirects: number }
  | { readonly failTimes: number; readonly fault?: LookasideFault; readonly then: 'serve' | 'missing' };

export interface RecordedRequest {
  readonly method: string;
  /** Path and query as received. */
  readonly path: string;
  /** N of `signature-N`, if the path names one. */
  readonly index?: number;
  readonly headers: IncomingHttpHeaders;
  /** Date.now() when the request arrived. */
  readonly at: number;
}

export interface LookasideServer {
  readonly url: string;
  /** The served directory. */
  readonly dir: string;
  readonly requests: RecordedRequest[];
  requestsFor(index: number): RecordedRequest[];
  writeSignature(repoPath: string, digest: string, index: number, bytes: Uint8Array): Promise<string>;
  /** With repoPath, only for that repository's images; it takes precedence over an index-wide fault. */
  fault(index: number, fault: LookasideFault, repoPath?: string): void;
  /** Clears faults, per-index counters, recorded requests and the served directory. */
  reset(): Promise<void>;
  stop(): Promise<void>;
}

export const CDN_ERROR_PAGE =
  '<!DOCTYPE html>\n<html><head><title>503 Service Temporarily Unavailable</title></head>\n' +
  '<body><h1>Service Temporarily Unavailable</h1><p>The edge could not reach the origin.</p></body></html>\n';

/** OpenPGP ASCII armour (RFC 4880 §6) with its CRC-24, so the copy is a faithful "armored signature". */
export function armor(bytes: Uint8Array): string {
  let crc = 0xb704ce;
  for (const byte of bytes) {
    crc ^= byte << 16;
    for (let i = 0; i < 8; i++) {
      crc <<= 1;
      if (crc & 0x1000000) crc ^= 0x1864cfb;
    }
  }
  crc &= 0xffffff;
  const body = Buffer.from(bytes)
    .toString('base64')
    .replace(/.{1,64}/g, '$&\n');
  const sum = Buffer.from([crc >> 16, (crc >> 8) & 0xff, crc & 0xff]).toString('base64');
  return `-----BEGIN PGP MESSAGE-----\n\n${body}=${sum}\n-----END PGP MESSAGE-----\n`;
}

function signatureIndex(path: string): number | undefined {
  const match = /\/signature-(\d+)(?:\?|$)/.exec(path);
  return match?.[1] !== undefined ? Number(match[1]) : undefined;
}

/** `library/app` of `/library/app@sha256=<hex>/signature-N`. */
function repositoryPath(path: string): string | undefined {
  try {
    return /^\/(.+)@[a-z0-9]+=[0-9a-f]+\//.exec(decodeURIComponent(path))?.[1];
  } catch {
    return undefined; // malformed percent-encoding: no repository, index-wide faults only
  }
}

export async function startLookasideServer(): Promise<LookasideServer> {
  const dir = await mkdtemp(join(tmpdir(), 'pullguard-lookaside-'));
  const requests: RecordedRequest[] = [];
  const faults = new Map<number, LookasideFault>();
  const repoFaults = new Map<string, LookasideFault>(); // `${index} ${repoPath}`
  const served = new Map<string, number>();
  const timers = new Set<NodeJS.Timeout>();
  const later = (ms: number, fn: () => void): void => {
    const t = setTimeout(() => {
      timers.delete(t);
      fn();
    }, ms);
    timers.add(t);
  };

  async function stored(path: string): Promise<Buffer | undefined> {
    const file = resolve(dir, `.${decodeURIComponent(path.split('?')[0] ?? '')}`);
    if (!file.startsWith(dir + sep)) return undefined;
    try {
      return await readFile(file);
    } catch {
      return undefined;
    }
  }

  async function serveStored(req: IncomingMessage, res: ServerResponse, contentType = 'application/octet-stream'): Promise<void> {
    const body = await stored(req.url ?? '/');
    if (body === undefined) {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
      return;
    }
    res.writeHead(200, { 'content-type': contentType, 'content-length': body.length }).end(body);
  }

  async function apply(req: IncomingMessage, res: ServerResponse, fault: LookasideFault | undefined, attempt: number): Promise<void> {
    if (fault === undefined) return serveStored(req, res);
    const path = req.url ?? '/';
    if ('failTimes' in fault) {
      if (attempt <= fault.failTimes) return apply(req, res, fault.fault ?? { status: 503 }, attempt);
      if (fault.then === 'missing') return void res.writeHead(404).end();
      return serveStored(req, res);
    }
    if ('status' in fault) {
      const headers: Record<string, string> = { 'content-type': 'text/plain' };
      if (fault.retryAfter !== undefined) headers['retry-after'] = String(fault.retryAfter);
      res.writeHead(fault.status, headers).end(`status ${fault.status}\n`);
      return;
    }
    if ('html' in fault) {
      res.writeHead(200, { 'content-type': 'text/html; charset=UTF-8' }).end(CDN_ERROR_PAGE);
      return;
    }
    if ('reset' in fault) {
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': 1000 });
      res.write(Buffer.alloc(100, 0xa3), () => later(10, () => req.socket.destroy()));
      return;
    }
    if ('empty' in fault) {
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': 0 }).end();
      return;
    }
    if ('bytes' in fault) {
      const headers: Record<string, string | number> = { 'content-type': 'application/octet-stream' };
      if (fault.declareLength === true) headers['content-length'] = fault.bytes;
      res.writeHead(200, headers);
      const chunk = Buffer.alloc(64 * 1024, 0xa3);
      let left = fault.bytes;
      const pump = (): void => {
        while (left > 0) {
          const n = Math.min(left, chunk.length);
          left -= n;
          if (!res.write(chunk.subarray(0, n))) return void res.once('drain', pump);
        }
        res.end();
      };
      res.on('error', () => undefined);
      pump();
      return;
    }
    if ('stallMs' in fault) {
      if (fault.headers === true) {
        res.writeHead(200, { 'content-type': 'application/octet-stream' });
        res.flushHeaders();
        later(fault.stallMs, () => void stored(path).then((b) => res.end(b ?? Buffer.alloc(0))));
      } else {
        later(fault.stallMs, () => void serveStored(req, res));
      }
      return;
    }
    if ('armored' in fault) {
      const body = await stored(path);
      if (body === undefined) return void res.writeHead(404).end();
      res.writeHead(200, { 'content-type': 'application/pgp-signature' }).end(armor(body));
      return;
    }
    if ('contentType' in fault) return serveStored(req, res, fault.contentType);
    if ('redirectLoop' in fault) {
      const [bare, query] = path.split('?');
      const hop = Number(/loop=(\d+)/.exec(query ?? '')?.[1] ?? 0) + 1;
      res.writeHead(302, { location: `${bare}?loop=${hop}` }).end();
      return;
    }
    if ('redirectTo' in fault) {
      res.writeHead(302, { location: fault.redirectTo }).end();
      return;
    }
    if ('redirects' in fault) {
      const [bare, query] = path.split('?');
      const hop = Number(/hop=(\d+)/.exec(query ?? '')?.[1] ?? 0);
      if (hop < fault.redirects) return void res.writeHead(307, { location: `${bare}?hop=${hop + 1}` }).end();
      req.url = bare;
      return serveStored(req, res);
    }
  }

  const server = createServer((req, res) => {
    const path = req.url ?? '/';
    const index = signatureIndex(path);
    requests.push({ method: req.method ?? 'GET', path, ...(index !== undefined ? { index } : {}), headers: req.headers, at: Date.now() });
    // Redirect hops do not count as attempts of `failTimes`.
    const isHop = /[?&](loop|hop)=/.test(path);
    const repoPath = index === undefined ? undefined : repositoryPath(path);
    const repoKey = repoPath !== undefined ? `${index} ${repoPath}` : undefined;
    const repoFault = repoKey !== undefined ? repoFaults.get(repoKey) : undefined;
    // A repository's own fault counts that repository's requests; an index-wide one, every repository's.
    const counter = repoFault !== undefined ? (repoKey as string) : String(index);
    const attempt = index === undefined || isHop ? 0 : (served.get(counter) ?? 0) + 1;
    if (index !== undefined && !isHop) served.set(counter, attempt);
    const fault = index === undefined ? undefined : (repoFault ?? faults.get(index));
    apply(req, res, fault, attempt).catch(() => req.socket.destroy());
  });
  await new Promise<void>((ok) => server.listen(0, '127.0.0.1', ok));
  const { port } = server.address() as AddressInfo;

  let stopped = false;
  return {
    url: `http://127.0.0.1:${port}`,
    dir,
    requests,
    requestsFor: (index) => requests.filter((r) => r.index === index),
    async writeSignature(repoPath, digest, index, bytes) {
      const [algo, hex] = digest.split(':');
      const imageDir = join(dir, `${repoPath}@${algo}=${hex}`);
      await mkdir(imageDir, { recursive: true });
      const file = join(imageDir, `signature-${index}`);
      await writeFile(file, bytes);
      return file;
    },
    fault: (index, fault, repoPath) => void (repoPath === undefined ? faults.set(index, fault) : repoFaults.set(`${index} ${repoPath}`, fault)),
    async reset() {
      faults.clear();
      repoFaults.clear();
      served.clear();
      requests.length = 0;
      await rm(dir, { recursive: true, force: true });
      await mkdir(dir, { recursive: true });
    },
    async stop() {
      if (stopped) return;
      stopped = true;
      for (const t of timers) clearTimeout(t);
      server.closeAllConnections();
      await new Promise<void>((ok) => server.close(() => ok()));
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/**
 * Registers vitest hooks in the calling file/describe: the returned handle forwards to a server
 * started in beforeAll, reset before each test, and stopped in afterAll.
 */
export function useLookasideServer(): LookasideServer {
  let server: LookasideServer | undefined;
  const get = (): LookasideServer => {
    if (server === undefined) throw new Error('lookaside server not started yet (use it inside tests or hooks)');
    return server;
  };
  beforeAll(async () => {
    server = await startLookasideServer();
  });
  beforeEach(() => get().reset());
  afterAll(async () => {
    await server?.stop();
  });
  return {
    get url() {
      return get().url;
    },
    get dir() {
      return get().dir;
    },
    get requests() {
      return get().requests;
    },
    requestsFor: (index) => get().requestsFor(index),
    writeSignature: (repoPath, digest, index, bytes) => get().writeSignature(repoPath, digest, index, bytes),
    fault: (index, fault, repoPath) => get().fault(index, fault, repoPath),
    reset: () => get().reset(),
    stop: () => get().stop(),
  };
}

/** A sha256 digest of `text`, for laying out test images without a registry. */
export function testDigest(text: string): string {
  return `sha256:${createHash('sha256').update(text).digest('hex')}`;
}
