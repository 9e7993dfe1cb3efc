/**
 * The OCI distribution client: `createRegistryClient(options)` returns an ImageSource that resolves
 * references (mirrors first, then the source), verifies every manifest against its digest, picks
 * the platform instance of an index, and streams blobs into a BlobWriter with retries and Range
 * resumes. All I/O goes through an injected undici Dispatcher; time, sleep and jitter are injectable.
 */
import { createHash } from 'node:crypto';
import { setTimeout as delay } from 'node:timers/promises';
import type { Dispatcher } from 'undici';
import { digestAlgorithm, type Digest } from '../domain/digest.js';
import { isPullguardError, PullguardError, type ErrorCode } from '../domain/errors.js';
import type { Descriptor, Platform } from '../domain/image.js';
import { formatReference, type ImageReference } from '../domain/reference.js';
import type { BlobWriter, ImageSource, ResolvedImage, ResolveOptions } from '../pull/ports.js';
import type { AuthFile } from './auth-file.js';
import { RegistryConnections } from './connections.js';
import { DEFAULT_TIMEOUTS, header, pumpBody, readCapped, readErrorBody, type HttpResponse, type Timeouts } from './http.js';
import { MANIFEST_ACCEPT, parseManifest } from './manifest.js';
import { formatPlatform, selectInstance } from './platform.js';
import { EMPTY_REGISTRIES_CONFIG, isInsecureHost, pullSources, type PullSource, type RegistriesConfig } from './registries-conf.js';
import { RegistryAuth, type Endpoint } from './registry-auth.js';
import { cancelledError, classifyTransportError, isRetryableTransport, statusError, transportError, type RequestSubject } from './registry-errors.js';
import { DEFAULT_RETRY, RegistryRequests, type ReadOptions, type RegistryRequestEvent, type RetryPolicy } from './registry-requests.js';

export { DEFAULT_RETRY, type RetryPolicy } from './registry-requests.js';

export const MAX_MANIFEST_BYTES = 4 * 1024 * 1024;
/**
 * A blob must arrive at 64 KiB/s on average after the `readMs` allowance (0.5 Mbit/s; four layers at
 * once need 2 Mbit/s). Drips and stalls fail shortly after the allowance whatever this is, so it only
 * decides how slow an honest, steadily progressing link may be: low enough for a constrained edge
 * link, and still a bound (a 100 MiB layer gets 30 s + 26 min).
 */
export const DEFAULT_MIN_BLOB_BYTES_PER_SECOND = 64 * 1024;

/** Credential-free notes for logs: the request layer's retries and redirects, and the client's own. */
export type RegistryEvent =
  | RegistryRequestEvent
  | { readonly type: 'resume'; readonly host: string; readonly repository: string; readonly digest: string; readonly offset: number; readonly status: number }
  | { readonly type: 'source-failed'; readonly host: string; readonly repository: string; readonly mirror: boolean; readonly code: ErrorCode }
  | { readonly type: 'digest-hint-mismatch'; readonly host: string; readonly repository: string; readonly header: string; readonly computed: string };

export interface RegistryClientOptions {
  /** The node's platform; main passes `platformForNodeArch(process.arch)`. */
  readonly platform: Platform;
  /** Used for every host without a custom CA. Default: an Agent with the connect timeout. */
  readonly dispatcher?: Dispatcher;
  readonly registries?: RegistriesConfig;
  /** `host[:port]` spoken to over plain HTTP (`--insecure-registry`). */
  readonly insecureRegistries?: readonly string[];
  /** Extra CA certificates: certs.d-style `<certsDir>/<host>/*.crt`, and/or an explicit host → PEM files map. */
  readonly tls?: { readonly certsDir?: string; readonly caFiles?: Readonly<Record<string, readonly string[]>> };
  /** Credentials from this auth file (`--auth-file`), when the request carries none. */
  readonly authFile?: AuthFile;
  /** `readMs` bounds every whole read (manifest, token, ping) and is a blob's allowance. */
  readonly timeouts?: Partial<Timeouts>;
  /** Minimum average blob transfer rate after the `readMs` allowance; below it: REGISTRY_UNAVAILABLE. */
  readonly minBlobBytesPerSecond?: number;
  readonly retry?: Partial<RetryPolicy>;
  readonly onEvent?: (event: RegistryEvent) => void;
  /** Milliseconds since the epoch (token expiry). */
  readonly clock?: () => number;
  readonly sleep?: (ms: number, signal?: AbortSignal) => Promise<void>;
  /** [0, 1) for backoff jitter. */
  readonly random?: () => number;
  readonly maxManifestBytes?: number;
  readonly userAgent?: string;
}

export interface RegistryImageSource extends ImageSource, ImageArtifactReader {
  /** Closes the Agents this client created (not an injected dispatcher). */
  close(): Promise<void>;
}

/**
 * A manifest fetched by tag from a resolved image's repository. A 4xx answer other than 401 is
 * returned as data (status and the capped error body) so callers can apply their own "not found"
 * dialects (sigstore attachments); everything else throws as for `resolve`.
 */
export type TaggedManifest =
  | { readonly kind: 'manifest'; readonly bytes: Uint8Array; readonly contentType: string | undefined }
  | { readonly kind: 'client-error'; readonly status: number; readonly body: Uint8Array | undefined };

/** Reads extra artifacts (signature attachments) stored beside a resolved image, with the image's auth and transport. */
export interface ImageArtifactReader {
  /** Not digest-verified (a tag has no digest to check); capped at the client's manifest limit. */
  fetchManifestByTag(image: ResolvedImage, tag: string, opts: ResolveOptions): Promise<TaggedManifest>;
  /** A whole blob into memory: refused above `maxBytes` (TOO_LARGE), size and digest checked (SIZE_MISMATCH / DIGEST_MISMATCH). */
  fetchBlobBytes(image: ResolvedImage, blob: Pick<Descriptor, 'digest' | 'size' | 'mediaType'>, opts: ResolveOptions, maxBytes: number): Promise<Uint8Array>;
}

/** Internal: a client error passed through repoRequest to fetchManifestByTag. */
class ClientErrorAnswer {
  constructor(
    readonly status: number,
    readonly body: Uint8Array | undefined,
  ) {}
}

/** Where a resolved image's blobs come from. */
const endpointOf = new WeakMap<ResolvedImage, Endpoint>();

function apiHost(domain: string): string {
  return domain === 'docker.io' ? 'registry-1.docker.io' : domain;
}

function endpointFor(domain: string, insecure: boolean): Endpoint {
  return { host: domain, base: `${insecure ? 'http' : 'https'}://${apiHost(domain)}` };
}

function computeDigest(bytes: Uint8Array, algorithm: 'sha256' | 'sha512'): Digest {
  return `${algorithm}:${createHash(algorithm).update(bytes).digest('hex')}` as Digest;
}

const FALL_THROUGH = new Set<ErrorCode>([
  'REGISTRY_NOT_FOUND',
  'REGISTRY_UNAVAILABLE',
  'REGISTRY_UNAUTHORIZED',
  'REGISTRY_DENIED',
  'REGISTRY_TOO_MANY_REQUESTS',
  'REGISTRY_PROTOCOL',
  'REGISTRY_TLS',
]);

export function createRegistryClient(options: RegistryClientOptions): RegistryImageSource {
  return new RegistryClient(options);
}

class RegistryClient implements RegistryImageSource {
  private readonly registries: RegistriesConfig;
  private readonly insecure: ReadonlySet<string>;
  private readonly connections: RegistryConnections;
  private readonly requests: RegistryRequests;
  private readonly auth: RegistryAuth;
  private readonly maxManifestBytes: number;
  /** Aborted by close(): reads no caller can cancel (the shared ping) must not hold the Agents open. */
  private readonly lifetime = new AbortController();

  constructor(private readonly options: RegistryClientOptions) {
    const timeouts = { ...DEFAULT_TIMEOUTS, ...options.timeouts };
    const now = options.clock ?? Date.now;
    const userAgent = options.userAgent ?? 'pullguard';
    this.registries = options.registries ?? EMPTY_REGISTRIES_CONFIG;
    this.insecure = new Set(options.insecureRegistries ?? []);
    this.connections = new RegistryConnections({
      ...(options.dispatcher !== undefined ? { dispatcher: options.dispatcher } : {}),
      ...(options.tls !== undefined ? { tls: options.tls } : {}),
      connectMs: timeouts.connectMs,
    });
    this.requests = new RegistryRequests({
      connections: this.connections,
      timeouts,
      retry: { ...DEFAULT_RETRY, ...options.retry },
      minBlobRate: options.minBlobBytesPerSecond ?? DEFAULT_MIN_BLOB_BYTES_PER_SECOND,
      userAgent,
      now,
      sleep: options.sleep ?? ((ms, signal) => delay(ms, undefined, signal === undefined ? undefined : { signal })),
      random: options.random ?? Math.random,
      ...(options.onEvent !== undefined ? { onEvent: options.onEvent } : {}),
    });
    this.auth = new RegistryAuth({
      requests: this.requests,
      ...(options.authFile !== undefined ? { authFile: options.authFile } : {}),
      userAgent,
      now,
      lifetime: this.lifetime.signal,
    });
    this.maxManifestBytes = options.maxManifestBytes ?? MAX_MANIFEST_BYTES;
  }

  async close(): Promise<void> {
    this.lifetime.abort();
    await this.connections.close();
  }

  /**
   * An authenticated request for `repository`; answers with a 2xx response (or 206), throwing
   * coded errors for everything else. One re-authentication on 401.
   */
  private async repoRequest(
    endpoint: Endpoint,
    repository: string,
    path: string,
    headers: Record<string, string>,
    subject: RequestSubject,
    opts: ReadOptions,
    passClientErrors = false,
  ): Promise<HttpResponse> {
    const creds = this.auth.credentials(endpoint, repository, opts.credentials);
    let challenge = await this.auth.ping(endpoint, opts.signal);
    const scope = `repository:${repository}:pull`;
    for (let reauth = 0; ; reauth++) {
      const authz = await this.auth.authorization(endpoint, challenge, scope, creds, subject, opts);
      const res = await this.requests.withRetries(
        subject,
        opts.signal,
        () =>
          this.requests.sendOnce(
            new URL(`${endpoint.base}${path}`),
            { method: 'GET', headers: { ...headers, ...(authz !== undefined ? { authorization: authz } : {}) }, signal: opts.signal, maxRedirects: 5 },
            subject,
          ),
        opts.deadline,
      );
      if (res.status >= 200 && res.status < 300) return res;
      const body = await readErrorBody(res);
      if (res.status === 401 && reauth === 0) {
        // The token may have expired or the scope changed: drop it and take the fresh challenge.
        this.auth.forgetToken(endpoint.host, scope, creds);
        challenge = this.auth.pickChallenge(res) ?? challenge;
        if (challenge !== undefined && (challenge.scheme === 'bearer' || creds !== undefined)) continue;
      }
      if (passClientErrors && res.status >= 400 && res.status < 500 && res.status !== 401) throw new ClientErrorAnswer(res.status, body);
      if (res.status === 401) {
        throw new PullguardError(
          'REGISTRY_UNAUTHORIZED',
          creds === undefined
            ? `unauthorized: authentication required for ${endpoint.host}/${repository} and no credentials were given`
            : `unauthorized: ${endpoint.host} rejected the credentials for ${endpoint.host}/${repository}`,
          { facts: { host: endpoint.host, repository, status: 401, credentials: creds === undefined ? 'none' : 'provided', kind: subject.kind } },
        );
      }
      throw statusError(subject, res.status, body);
    }
  }

  // ---- manifests -----------------------------------------------------------------------------

  private async fetchManifest(
    endpoint: Endpoint,
    physical: ImageReference,
    ref: string,
    opts: ResolveOptions,
  ): Promise<{ bytes: Uint8Array; contentType: string | undefined; dcd: string | undefined }> {
    const display = ref.includes(':') ? `${physical.name}@${ref}` : `${physical.name}:${ref}`;
    const subject: RequestSubject = { host: endpoint.host, repository: physical.path, kind: 'manifest', display };
    return this.requests.withDeadline(subject, opts, undefined, async (read) => {
      const res = await this.repoRequest(endpoint, physical.path, `/v2/${physical.path}/manifests/${ref}`, { accept: MANIFEST_ACCEPT }, subject, read);
      const bytes = await this.readManifestBody(res, subject, read);
      return { bytes, contentType: header(res, 'content-type'), dcd: header(res, 'docker-content-digest') };
    });
  }

  private readManifestBody(res: HttpResponse, subject: RequestSubject, read: ReadOptions): Promise<Uint8Array> {
    return readCapped(res, this.maxManifestBytes, `manifest ${subject.display}`, (n) => read.deadline?.progress(n)).catch((err: unknown) => {
      if (isPullguardError(err)) throw err;
      throw transportError(subject, read.signal?.aborted === true ? 'aborted' : classifyTransportError(err), err);
    });
  }

  async resolve(reference: ImageReference, opts: ResolveOptions): Promise<ResolvedImage> {
    const sources = pullSources(this.registries, reference, this.insecure);
    const failures: string[] = [];
    for (const [i, source] of sources.entries()) {
      try {
        return await this.resolveFrom(reference, source, opts);
      } catch (err) {
        const last = i === sources.length - 1;
        if (!isPullguardError(err) || !FALL_THROUGH.has(err.code) || opts.signal?.aborted === true) throw err;
        this.options.onEvent?.({
          type: 'source-failed',
          host: source.reference.domain,
          repository: source.reference.path,
          mirror: source.mirror,
          code: err.code,
        });
        if (!last) {
          failures.push(`${source.reference.domain}/${source.reference.path}: ${err.message}`);
          continue;
        }
        if (failures.length === 0) throw err;
        throw new PullguardError(err.code, `${err.message} (mirrors tried first: ${failures.join('; ')})`, {
          cause: err,
          facts: { ...err.facts, mirrorsTried: failures.length },
        });
      }
    }
    throw new PullguardError('INTERNAL', `no pull source for ${formatReference(reference)}`);
  }

  private async resolveFrom(reference: ImageReference, source: PullSource, opts: ResolveOptions): Promise<ResolvedImage> {
    const physical = source.reference;
    const endpoint = endpointFor(physical.domain, source.insecure);
    const top = await this.fetchManifest(endpoint, physical, physical.digest ?? physical.tag ?? 'latest', opts);
    const display = formatReference(physical);
    let topDigest: Digest;
    if (physical.digest !== undefined) {
      topDigest = computeDigest(top.bytes, digestAlgorithm(physical.digest));
      if (topDigest !== physical.digest) {
        throw new PullguardError('DIGEST_MISMATCH', `manifest for ${display} has digest ${topDigest}, not the requested ${physical.digest}`, {
          facts: { host: endpoint.host, repository: physical.path, expected: physical.digest, actual: topDigest },
        });
      }
    } else {
      topDigest = computeDigest(top.bytes, 'sha256');
      if (top.dcd?.startsWith('sha256:') && top.dcd !== topDigest) {
        this.options.onEvent?.({ type: 'digest-hint-mismatch', host: endpoint.host, repository: physical.path, header: top.dcd, computed: topDigest });
      }
    }
    const parsedTop = parseManifest(top.bytes, top.contentType, display);
    let manifestBytes = top.bytes;
    let manifestDigest = topDigest;
    let manifest = parsedTop;
    let platform: Platform | undefined;
    if (parsedTop.kind === 'index') {
      const wanted = this.options.platform;
      const instance = selectInstance(parsedTop.manifests, wanted);
      if (instance === undefined) {
        const available = parsedTop.manifests.flatMap((d) => (d.platform !== undefined ? [formatPlatform(d.platform)] : []));
        throw new PullguardError(
          'PLATFORM_NOT_FOUND',
          `no image for platform ${formatPlatform(wanted)} in ${display} (available: ${available.join(', ') || 'none'})`,
          {
            facts: { host: endpoint.host, repository: physical.path, platform: formatPlatform(wanted) },
          },
        );
      }
      const child = await this.fetchManifest(endpoint, physical, instance.digest, opts);
      const childDigest = computeDigest(child.bytes, digestAlgorithm(instance.digest));
      if (childDigest !== instance.digest || child.bytes.length !== instance.size) {
        throw new PullguardError(
          childDigest !== instance.digest ? 'DIGEST_MISMATCH' : 'SIZE_MISMATCH',
          `platform manifest ${instance.digest} of ${display} does not match its index entry (got ${childDigest}, ${child.bytes.length} bytes; expected ${instance.size} bytes)`,
          { facts: { host: endpoint.host, repository: physical.path, expected: instance.digest, actual: childDigest } },
        );
      }
      manifest = parseManifest(child.bytes, child.contentType ?? instance.mediaType, `${physical.name}@${instance.digest}`);
      if (manifest.kind !== 'manifest') {
        throw new PullguardError('MANIFEST_UNSUPPORTED', `nested index ${instance.digest} in ${display} is not supported`, {
          facts: { host: endpoint.host, repository: physical.path },
        });
      }
      manifestBytes = child.bytes;
      manifestDigest = childDigest;
      platform = instance.platform;
    }
    if (manifest.kind !== 'manifest') throw new PullguardError('INTERNAL', 'unreachable: manifest kind');
    const resolved: ResolvedImage = Object.freeze({
      reference,
      topDigest,
      topMediaType: parsedTop.mediaType,
      manifestDigest,
      manifestMediaType: manifest.mediaType,
      manifestBytes,
      ...(parsedTop.kind === 'index' ? { indexBytes: top.bytes } : {}),
      config: manifest.config,
      layers: manifest.layers,
      ...(platform !== undefined ? { platform } : {}),
      physicalReference: physical,
    });
    endpointOf.set(resolved, endpoint);
    return resolved;
  }

  // ---- artifacts beside an image (sigstore attachments) -----------------------------------------

  private endpointForImage(image: ResolvedImage): Endpoint {
    const physical = image.physicalReference;
    return endpointOf.get(image) ?? endpointFor(physical.domain, isInsecureHost(this.registries, physical.domain, this.insecure));
  }

  async fetchManifestByTag(image: ResolvedImage, tag: string, opts: ResolveOptions): Promise<TaggedManifest> {
    const physical = image.physicalReference;
    const endpoint = this.endpointForImage(image);
    const display = `${physical.name}:${tag}`;
    const subject: RequestSubject = { host: endpoint.host, repository: physical.path, kind: 'manifest', display };
    return this.requests.withDeadline(subject, opts, undefined, async (read): Promise<TaggedManifest> => {
      let res: HttpResponse;
      try {
        res = await this.repoRequest(
          endpoint,
          physical.path,
          `/v2/${physical.path}/manifests/${encodeURIComponent(tag)}`,
          { accept: MANIFEST_ACCEPT },
          subject,
          read,
          true,
        );
      } catch (err) {
        if (err instanceof ClientErrorAnswer) return { kind: 'client-error', status: err.status, body: err.body };
        throw err;
      }
      const bytes = await this.readManifestBody(res, subject, read);
      return { kind: 'manifest', bytes, contentType: header(res, 'content-type') };
    });
  }

  async fetchBlobBytes(
    image: ResolvedImage,
    blob: Pick<Descriptor, 'digest' | 'size' | 'mediaType'>,
    opts: ResolveOptions,
    maxBytes: number,
  ): Promise<Uint8Array> {
    if (blob.size > maxBytes) {
      throw new PullguardError('TOO_LARGE', `blob ${blob.digest} of ${image.physicalReference.name} is ${blob.size} bytes (limit ${maxBytes})`, {
        facts: { digest: blob.digest, size: blob.size, cap: maxBytes },
      });
    }
    const writer = new VerifyingBufferWriter(blob);
    await this.fetchBlob(image, blob, writer, opts);
    return writer.bytes();
  }

  // ---- blobs -----------------------------------------------------------------------------------

  async fetchBlob(image: ResolvedImage, blob: Descriptor, writer: BlobWriter, opts: ResolveOptions): Promise<void> {
    const physical = image.physicalReference;
    const endpoint = endpointOf.get(image) ?? endpointFor(physical.domain, isInsecureHost(this.registries, physical.domain, this.insecure));
    const subject: RequestSubject = { host: endpoint.host, repository: physical.path, kind: 'blob', display: `${physical.name}@${blob.digest}` };
    try {
      // The transfer is bounded; the commit after it is local work (hashing, fsync).
      await this.requests.withDeadline(subject, opts, blob.size, (read) => this.streamBlob(image, endpoint, subject, blob, writer, read));
      await writer.commit();
    } catch (err) {
      await writer.abort().catch(() => undefined);
      throw err;
    }
  }

  private async streamBlob(
    image: ResolvedImage,
    endpoint: Endpoint,
    subject: RequestSubject,
    blob: Descriptor,
    writer: BlobWriter,
    opts: ReadOptions,
  ): Promise<void> {
    const physical = image.physicalReference;
    for (let attempt = 1; ; attempt++) {
      const offset = writer.offset;
      if (offset >= blob.size && offset > 0) return;
      const headers: Record<string, string> = offset > 0 ? { range: `bytes=${offset}-` } : {};
      const res = await this.repoRequest(endpoint, physical.path, `/v2/${physical.path}/blobs/${blob.digest}`, headers, subject, opts);
      let skip = 0;
      if (offset > 0) {
        if (res.status === 206) {
          const start = /^bytes (\d+)-/.exec(header(res, 'content-range') ?? '')?.[1];
          if (start === undefined || Number(start) !== offset) {
            res.body.destroy();
            throw new PullguardError('REGISTRY_PROTOCOL', `${endpoint.host} answered a resume of ${subject.display} at ${offset} with the wrong range`, {
              facts: { host: endpoint.host, repository: physical.path, offset },
            });
          }
        } else {
          skip = offset; // The server ignored Range: drop what the writer already holds.
        }
        this.options.onEvent?.({ type: 'resume', host: endpoint.host, repository: physical.path, digest: blob.digest, offset, status: res.status });
      }
      try {
        await pumpBody(res.body, (chunk) => {
          let data: Uint8Array = chunk;
          if (skip > 0) {
            const n = Math.min(skip, data.length);
            skip -= n;
            data = data.subarray(n);
            if (data.length === 0) return undefined;
          }
          if (writer.offset + data.length > blob.size) {
            throw new PullguardError('SIZE_MISMATCH', `blob ${subject.display} from ${endpoint.host} is larger than its descriptor's ${blob.size} bytes`, {
              facts: { host: endpoint.host, repository: physical.path, digest: blob.digest, expectedSize: blob.size },
            });
          }
          opts.deadline?.progress(data.length);
          return writer.write(data);
        });
        return;
      } catch (err) {
        if (isPullguardError(err)) throw err;
        const kind = classifyTransportError(err);
        if (kind === 'aborted' || opts.signal?.aborted === true) throw cancelledError(subject, err);
        if (!isRetryableTransport(kind) || attempt >= this.requests.retry.maxAttempts) throw transportError(subject, kind, err, attempt);
        const ms = this.requests.backoff(attempt);
        if (opts.deadline !== undefined && ms >= opts.deadline.remainingMs()) throw transportError(subject, kind, err, attempt);
        this.options.onEvent?.({ type: 'retry', host: endpoint.host, repository: physical.path, kind: 'blob', attempt, delayMs: ms, reason: kind });
        await this.requests.pause(ms, opts.signal, subject);
      }
    }
  }
}

/**
 * Fetches the config blob bytes (capped, digest-verified) — the store records `config.User`.
 * Works with any ImageSource.
 */
export async function fetchConfigBlob(source: ImageSource, image: ResolvedImage, opts: ResolveOptions, maxBytes = MAX_MANIFEST_BYTES): Promise<Uint8Array> {
  const config = image.config;
  if (config.size > maxBytes) {
    throw new PullguardError('TOO_LARGE', `config blob ${config.digest} of ${formatReference(image.reference)} is ${config.size} bytes (limit ${maxBytes})`, {
      facts: { digest: config.digest, size: config.size, cap: maxBytes },
    });
  }
  const writer = new VerifyingBufferWriter(config);
  await source.fetchBlob(image, config, writer, opts);
  return writer.bytes();
}

/** A small in-memory BlobWriter that checks size and digest on commit. */
export class VerifyingBufferWriter implements BlobWriter {
  private chunks: Buffer[] = [];
  private length = 0;
  private done = false;

  constructor(private readonly expected: Pick<Descriptor, 'digest' | 'size'>) {}

  get offset(): number {
    return this.length;
  }

  write(chunk: Uint8Array): Promise<void> | undefined {
    if (this.length + chunk.length > this.expected.size) {
      return Promise.reject(
        new PullguardError('SIZE_MISMATCH', `blob ${this.expected.digest} is larger than ${this.expected.size} bytes`, {
          facts: { digest: this.expected.digest },
        }),
      );
    }
    this.chunks.push(Buffer.from(chunk));
    this.length += chunk.length;
    return undefined;
  }

  async commit(): Promise<void> {
    const bytes = Buffer.concat(this.chunks);
    if (bytes.length !== this.expected.size) {
      this.chunks = [];
      this.length = 0;
      throw new PullguardError('SIZE_MISMATCH', `blob ${this.expected.digest}: expected ${this.expected.size} bytes, got ${bytes.length}`, {
        facts: { digest: this.expected.digest },
      });
    }
    const actual = computeDigest(bytes, digestAlgorithm(this.expected.digest));
    if (actual !== this.expected.digest) {
      this.chunks = [];
      this.length = 0;
      throw new PullguardError('DIGEST_MISMATCH', `blob ${this.expected.digest} has digest ${actual}`, { facts: { digest: this.expected.digest, actual } });
    }
    this.done = true;
  }

  async abort(): Promise<void> {
    if (!this.done) {
      this.chunks = [];
      this.length = 0;
    }
  }

  bytes(): Uint8Array {
    if (!this.done) throw new PullguardError('INTERNAL', 'blob not committed');
    return new Uint8Array(Buffer.concat(this.chunks));
  }
}
