/**
 * A read-only OCI distribution endpoint over pullguard's store, for the container runtime's pulls.
 * The runtime is only ever asked for `name@<verified digest>`, so manifests are served by digest
 * only, and only what a verified image record references (see allow-set.ts). Loopback only: the
 * mirror has no authentication, and the runtime runs on the same node.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { pipeline } from 'node:stream/promises';
import { isDigest, type Digest } from '../domain/digest.js';
import { isPullguardError, PullguardError } from '../domain/errors.js';
import type { Logger } from '../log/logger.js';
import type { InFlightImage } from '../pull/in-flight-images.js';
import type { BlobStore } from '../store/blob-store.js';
import { buildAllowSet, lookupRepository, withInFlight, type AllowSet, type RecordSource } from './allow-set.js';
import { isLoopbackHost, parseListenAddress } from '../util/listen-address.js';
import { decideRange } from './http-range.js';
import type { ImageRecord } from '../domain/image-record.js';

export interface MirrorOptions {
  /** `host:port` to listen on; the host must be a loopback address. Port 0 picks a free port. */
  readonly address: string;
  readonly blobs: Pick<BlobStore, 'stat' | 'openRead'>;
  readonly index: RecordSource;
  /** Allowed images still being fetched (their blobs are served as each is committed). */
  readonly inFlight?: { list(): readonly InFlightImage[] };
  readonly logger: Logger;
  /** Called once per answered request (tests, metrics). */
  readonly onServe?: (event: MirrorServeEvent) => void;
  /** Longest a client may take to send headers; default 10 s. */
  readonly headersTimeoutMs?: number;
}

export interface MirrorServeEvent {
  readonly method: string;
  readonly repository: string;
  readonly kind: 'manifest' | 'blob' | 'base' | 'other';
  readonly reference: string;
  readonly status: number;
  readonly bytes: number;
}

export interface RunningMirror {
  /** `http://127.0.0.1:PORT` */
  readonly url: string;
  /** `127.0.0.1:PORT`, as written in a containerd hosts.toml or registries.conf. */
  readonly host: string;
  close(): Promise<void>;
}

const API_VERSION_HEADER = { 'Docker-Distribution-API-Version': 'registry/2.0' } as const;
// distribution's repository name grammar (path components separated by '/').
const NAME_RE = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:\/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$/;
const ROUTE_RE = /^\/v2\/(.+)\/(manifests|blobs)\/([^/]+)$/;

export async function startMirror(options: MirrorOptions): Promise<RunningMirror> {
  const { hostname, port } = parseMirrorAddress(options.address);
  // The index hands out the same frozen list until it changes: build its allow set once per list.
  const recordAllowSets = new WeakMap<readonly ImageRecord[], AllowSet>();
  const allowSet = async (): Promise<AllowSet> => {
    const records = await options.index.list();
    let base = recordAllowSets.get(records);
    if (base === undefined) {
      base = buildAllowSet(records);
      if (Object.isFrozen(records)) recordAllowSets.set(records, base);
    }
    return withInFlight(base, options.inFlight?.list() ?? []);
  };
  const server = createServer((req, res) => {
    handle(req, res, options, allowSet).catch((err: unknown) => {
      options.logger.warn({ err: err instanceof Error ? err.message : String(err), path: req.url }, 'mirror request failed');
      if (!res.headersSent) sendError(res, 500, 'UNKNOWN', 'internal error', req.method === 'HEAD');
      else res.destroy();
    });
  });
  server.headersTimeout = options.headersTimeoutMs ?? 10_000;
  server.requestTimeout = 0; // a large layer may take long to stream; the runtime sets its own timeouts
  server.keepAliveTimeout = 30_000;

  await new Promise<void>((resolve, reject) => {
    server.once('error', (err) => reject(new PullguardError('INVALID_CONFIG', `mirror cannot listen on ${options.address}: ${err.message}`, { cause: err })));
    server.listen(port, hostname, () => resolve());
  });
  const bound = server.address() as AddressInfo;
  const host = bound.family === 'IPv6' ? `[${bound.address}]:${bound.port}` : `${bound.address}:${bound.port}`;
  options.logger.info({ mirror: `http://${host}` }, 'local mirror listening');
  let closing: Promise<void> | undefined;
  return {
    url: `http://${host}`,
    host,
    close() {
      closing ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
      return closing;
    },
  };
}

/** `127.0.0.1:5050`, `[::1]:5050`, `localhost:0`; anything but loopback is refused. */
export function parseMirrorAddress(address: string): { hostname: string; port: number } {
  const { host, port } = parseListenAddress(address, 'mirror address');
  if (!isLoopbackHost(host)) {
    throw new PullguardError(
      'INVALID_CONFIG',
      `mirror address ${JSON.stringify(address)} is not a loopback address; the mirror has no authentication and must not be reachable from the network`,
    );
  }
  return { hostname: host === 'localhost' ? '127.0.0.1' : host, port };
}

async function handle(req: IncomingMessage, res: ServerResponse, options: MirrorOptions, allowSet: () => Promise<AllowSet>): Promise<void> {
  const method = req.method ?? 'GET';
  const url = new URL(req.url ?? '/', 'http://mirror.invalid');
  const head = method === 'HEAD';
  const served = (repository: string, kind: MirrorServeEvent['kind'], reference: string, bytes: number): void => {
    options.onServe?.({ method, repository, kind, reference, status: res.statusCode, bytes });
    options.logger.debug({ method, repository, kind, reference, status: res.statusCode, bytes }, 'mirror served');
  };

  if (url.pathname === '/v2/' || url.pathname === '/v2') {
    if (method !== 'GET' && method !== 'HEAD') return void sendUnsupported(res, head);
    res.writeHead(200, { ...API_VERSION_HEADER, 'Content-Type': 'application/json', 'Content-Length': '2' });
    res.end(head ? undefined : '{}');
    return served('', 'base', '', 0);
  }
  const route = ROUTE_RE.exec(url.pathname);
  if (method !== 'GET' && method !== 'HEAD') {
    sendUnsupported(res, head);
    return served(route?.[1] ?? '', 'other', route?.[3] ?? '', 0);
  }
  if (route === null) {
    sendError(res, 404, 'NOT_FOUND', 'not found', head);
    return served('', 'other', url.pathname, 0);
  }
  const [, repository = '', kind, reference = ''] = route;
  if (!NAME_RE.test(repository)) {
    sendError(res, 400, 'NAME_INVALID', 'invalid repository name', head);
    return served(repository, 'other', reference, 0);
  }
  const content = lookupRepository(await allowSet(), repository, url.searchParams.get('ns'));

  if (kind === 'manifests') {
    // Tags are never served: the runtime must ask for the digest pullguard verified.
    const mediaType = isDigest(reference) ? content?.manifests.get(reference) : undefined;
    const bytes = mediaType !== undefined ? await sendBlob(req, res, options.blobs, reference as Digest, mediaType, false) : undefined;
    if (bytes === undefined) sendError(res, 404, 'MANIFEST_UNKNOWN', 'manifest unknown', head);
    return served(repository, 'manifest', reference, bytes ?? 0);
  }
  if (!isDigest(reference)) {
    sendError(res, 400, 'DIGEST_INVALID', 'invalid digest', head);
    return served(repository, 'blob', reference, 0);
  }
  const allowed =
    content !== undefined && (content.blobs.has(reference) || content.manifests.has(reference) || (await committedInFlight(content.inFlight, reference, req)));
  const bytes = allowed ? await sendBlob(req, res, options.blobs, reference, 'application/octet-stream', true) : undefined;
  if (bytes === undefined) sendError(res, 404, 'BLOB_UNKNOWN', 'blob unknown to registry', head);
  return served(repository, 'blob', reference, bytes ?? 0);
}

/**
 * Waits until a blob of an allowed image still being fetched is committed (verified): true then,
 * false when that pull ends without it or the client goes away. Never serves bytes before that.
 */
async function committedInFlight(images: readonly InFlightImage[], digest: Digest, req: IncomingMessage): Promise<boolean> {
  const waiting = images.filter((image) => image.blobs.has(digest));
  if (waiting.length === 0) return false;
  let onClose: (() => void) | undefined;
  const clientGone = new Promise<boolean>((resolve) => {
    onClose = () => resolve(false);
    req.socket.once('close', onClose);
  });
  try {
    // True as soon as one pull has committed it; false once every pull ended without it.
    const committed = new Promise<boolean>((resolve) => {
      let pending = waiting.length;
      for (const image of waiting) {
        void image.ready(digest).then((ok) => {
          pending -= 1;
          if (ok || pending === 0) resolve(ok);
        });
      }
    });
    return await Promise.race([committed, clientGone]);
  } finally {
    if (onClose !== undefined) req.socket.off('close', onClose);
  }
}

/** Streams a stored blob; undefined when the store does not have it (e.g. collected meanwhile). */
async function sendBlob(
  req: IncomingMessage,
  res: ServerResponse,
  blobs: MirrorOptions['blobs'],
  digest: Digest,
  contentType: string,
  ranges: boolean,
): Promise<number | undefined> {
  const stat = await blobs.stat(digest);
  if (stat === undefined) return undefined;
  const head = req.method === 'HEAD';
  const headers: Record<string, string> = {
    ...API_VERSION_HEADER,
    'Content-Type': contentType,
    'Docker-Content-Digest': digest,
    ETag: `"${digest}"`,
    ...(ranges ? { 'Accept-Ranges': 'bytes' } : {}),
  };
  const decision = ranges ? decideRange(req.headers.range, stat.size) : ({ kind: 'full' } as const);
  if (decision.kind === 'unsatisfiable') {
    res.writeHead(416, { ...headers, 'Content-Range': `bytes */${stat.size}`, 'Content-Type': 'application/json' });
    res.end(head ? undefined : errorBody('BLOB_UNKNOWN', 'requested range not satisfiable'));
    return 0;
  }
  const range = decision.kind === 'partial' ? { start: decision.start, end: decision.end } : undefined;
  const length = range === undefined ? stat.size : range.end - range.start + 1;
  let stream;
  try {
    // An empty blob has nothing to read; openRead of a zero-length file is still fine, but skip it.
    stream = head || length === 0 ? undefined : await blobs.openRead(digest, range);
  } catch (err) {
    if (isPullguardError(err, 'STORE_IO') && err.facts['notFound'] === true) return undefined;
    throw err;
  }
  if (range !== undefined) {
    res.writeHead(206, { ...headers, 'Content-Length': String(length), 'Content-Range': `bytes ${range.start}-${range.end}/${stat.size}` });
  } else {
    res.writeHead(200, { ...headers, 'Content-Length': String(length) });
  }
  if (stream === undefined) {
    res.end();
    return 0;
  }
  await pipeline(stream, res);
  return length;
}

function sendUnsupported(res: ServerResponse, head: boolean): void {
  sendError(res, 405, 'UNSUPPORTED', 'the operation is unsupported: this mirror is read-only', head, { Allow: 'GET, HEAD' });
}

function sendError(res: ServerResponse, status: number, code: string, message: string, head: boolean, extra: Record<string, string> = {}): void {
  const body = errorBody(code, message);
  res.writeHead(status, { ...API_VERSION_HEADER, 'Content-Type': 'application/json', 'Content-Length': String(Buffer.byteLength(body)), ...extra });
  res.end(head ? undefined : body);
}

function errorBody(code: string, message: string): string {
  return JSON.stringify({ errors: [{ code, message, detail: null }] });
}
