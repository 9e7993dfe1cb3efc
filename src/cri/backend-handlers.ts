/**
 * The CRI ImageService in front of a real runtime (containerd, CRI-O). PullImage verifies and
 * fetches into pullguard's store (the local mirror then serves those bytes to the runtime) and asks
 * the runtime to pull `name@<verified digest>`, so a tag moved meanwhile cannot slip through. The
 * other RPCs are answered by the runtime. The runtime records no tag for a digest pull, so the tags
 * the user pulled are kept in pullguard's index and added back to what the runtime reports.
 *
 * Requests and responses travel as raw bytes (backendServiceDefinitions): a message pullguard does
 * not change is forwarded byte for byte, so fields newer than our proto survive.
 */
import type * as grpc from '@grpc/grpc-js';
import type { CriBackend } from '../backend/cri-backend.js';
import { identity, imageRpcCodec, type ImageRpc } from '../backend/cri-wire.js';
import { isPullguardError, PullguardError } from '../domain/errors.js';
import { formatReference, parseReference } from '../domain/reference.js';
import { ImageCatalog } from '../images/image-catalog.js';
import type { ImageIndexReader } from '../images/ports.js';
import type { Logger } from '../log/logger.js';
import type { AllowedImage, PullRequest, PullResult, PullService } from '../pull/pull-service.js';
import type { CriImage, ImageSpec, ImageStatusRequest, ListImagesRequest, PullImageRequest, RemoveImageRequest } from './cri-types.js';
import { CRI_API_VERSION, criServiceDefinitions, requireImageName, toPullRequest } from './image-service.js';
import { repositoryNamed } from '../pull/reverify.js';
import { verificationRecordFor } from '../pull/verification-record.js';
import { instrumentUnary, type CriHandlers, type RpcHandler } from './instrument.js';
import { warningsMetadata } from './status.js';
import type { ImageRecord } from '../domain/image-record.js';

/** Who fetches the layers: the runtime itself, pinned to the verified digest, or pullguard (served by its mirror). */
export type RuntimeFetchMode = 'runtime' | 'mirror';

export interface BackendHandlerDeps {
  readonly pulls: PullService;
  /** Default 'runtime'. */
  readonly fetchMode?: RuntimeFetchMode;
  readonly backend: CriBackend;
  /** pullguard's own image index: the verified records and the tags the user pulled. */
  readonly index: ImageIndexReader;
  /** Frees blobs of removed records (the store's collectGarbage); default: nothing. */
  readonly collectGarbage?: () => Promise<unknown>;
  readonly logger: Logger;
  readonly shutdownSignal: AbortSignal;
  readonly version: string;
}

/** A known image, and for a request by tag the digest reference to ask the runtime instead. */
interface KnownImage {
  readonly record: ImageRecord;
  readonly pinned?: string;
}

/** `name@<manifest digest>`: what the runtime is asked for, so a tag moved meanwhile cannot slip through. */
function pinnedReference(image: Pick<AllowedImage, 'reference' | 'manifestDigest'>): string {
  return `${image.reference.name}@${image.manifestDigest}`;
}

export function createBackendHandlers(deps: BackendHandlerDeps): CriHandlers {
  const { pulls, backend } = deps;
  const fetchMode = deps.fetchMode ?? 'runtime';
  const collectGarbage = deps.collectGarbage ?? (async () => undefined);
  const catalog = new ImageCatalog(deps.index, {
    collectGarbage,
    fsInfo: () => Promise.reject(new PullguardError('INTERNAL', 'ImageFsInfo is answered by the container runtime')),
  });

  /** The record `name` refers to in pullguard's index; undefined for anything the runtime must judge. */
  const known = async (name: string): Promise<KnownImage | undefined> => {
    let record: ImageRecord | undefined;
    try {
      record = await catalog.find(name);
    } catch (err) {
      if (isPullguardError(err, 'INVALID_REFERENCE')) return undefined;
      throw err;
    }
    if (record === undefined) return undefined;
    // By tag, or by a digest the runtime never saw (an index digest): ask for the pulled instance.
    const ref = referenceOf(name);
    if (ref !== undefined && (record.repoTags.includes(ref.display) || record.repoDigests.includes(ref.display))) {
      return { record, pinned: `${ref.name}@${record.manifestDigest}` };
    }
    return { record };
  };

  /**
   * Runtime fetches (the default): pullguard decides on the manifest, keeps manifests, config and
   * signatures, and the runtime pulls `name@<verified digest>` from its own registry configuration.
   * The runtime checks every blob against that digest's manifest, so it gets exactly the verified
   * content or fails; the image is recorded only once it succeeded.
   */
  const pullThroughRuntime = async (
    pull: PullRequest,
    pinnedRequest: (allowed: AllowedImage) => Buffer,
    signal: AbortSignal,
  ): Promise<{ result: PullResult; responseBytes: Buffer }> => {
    let responseBytes: Buffer | undefined;
    const result = await pulls.pull({
      ...pull,
      runtimeFetch: async (allowed, flightSignal) => {
        responseBytes = await backend.call('PullImage', pinnedRequest(allowed), { signal: flightSignal });
      },
    });
    // A caller that joined another caller's flight: the runtime has the image now; its own answer is cheap.
    responseBytes ??= await backend.call('PullImage', pinnedRequest(result), { signal });
    return { result, responseBytes };
  };

  /**
   * Verified mirror (`--runtime-fetch mirror`): pullguard fetches every blob into its store and the
   * runtime, whose registry hosts point at pullguard's loopback mirror, gets each one only after it
   * was committed (verified). The runtime is asked only once the policy allowed the image (a denied
   * image never reaches it), and then at once, so its download overlaps pullguard's.
   */
  const pullThroughMirror = async (
    pull: PullRequest,
    pinnedRequest: (allowed: AllowedImage) => Buffer,
    signal: AbortSignal,
  ): Promise<{ result: PullResult; responseBytes: Buffer }> => {
    const runtime = new AbortController();
    const cancelRuntime = (): void => runtime.abort(signal.reason);
    signal.addEventListener('abort', cancelRuntime, { once: true });
    let runtimePull: Promise<Buffer> | undefined;
    let fetchEnded!: () => void;
    // The runtime's own deadline runs from here: until then it may be waiting on our mirror.
    const fetched = new Promise<void>((resolve) => (fetchEnded = resolve));
    const askRuntime = (allowed: AllowedImage): Promise<Buffer> =>
      backend.call('PullImage', pinnedRequest(allowed), { signal: runtime.signal, timeoutStartsWhen: fetched });
    try {
      let result: PullResult;
      try {
        result = await pulls.pull({
          ...pull,
          onAllowed: (allowed) => {
            runtimePull ??= askRuntime(allowed);
            runtimePull.catch(() => undefined); // awaited below; pullguard's own failure comes first
          },
        });
      } catch (err) {
        // pullguard's verdict or fetch failed: the runtime must not finish (the mirror already
        // stopped serving this image); cancel its pull and wait for it to wind down.
        runtime.abort(err);
        await runtimePull?.catch(() => undefined);
        throw err;
      } finally {
        fetchEnded();
      }
      runtimePull ??= askRuntime(result); // joined a pull already past its verdict
      return { result, responseBytes: await runtimePull };
    } finally {
      signal.removeEventListener('abort', cancelRuntime);
    }
  };

  const pullImage: RpcHandler<Buffer, Buffer> = async (raw, context) => {
    const { log } = context;
    const codec = imageRpcCodec('PullImage');
    const request = decodeRequest<PullImageRequest>('PullImage', raw);
    const pull = toPullRequest(request, context);
    /** The same request, for `name@<verified digest>`: auth, sandbox config, annotations and newer ImageSpec fields go along unchanged. */
    const pinnedRequest = (allowed: AllowedImage): Buffer =>
      codec.encodeRequest({ ...request, image: { ...(request.image as ImageSpec), image: pinnedReference(allowed) } });
    const { result, responseBytes } =
      fetchMode === 'runtime' ? await pullThroughRuntime(pull, pinnedRequest, context.signal) : await pullThroughMirror(pull, pinnedRequest, context.signal);
    const pinned = pinnedReference(result);
    const response = codec.decodeResponse(responseBytes) as { image_ref?: string };
    if (response.image_ref === undefined || !runtimeMayName(result.record, response.image_ref)) {
      log.warn(
        { pinned, imageRef: response.image_ref, expectedId: result.imageId },
        'the runtime reports a different image id than the verified config digest',
      );
    }
    log.info({ pinned, imageRef: response.image_ref }, 'runtime pulled the verified digest');
    const trailers = warningsMetadata(result.verdict.warnings);
    return { response: responseBytes, ...(trailers !== undefined ? { trailers } : {}) };
  };

  const imageStatus: RpcHandler<Buffer, Buffer> = async (raw, { signal }) => {
    const codec = imageRpcCodec('ImageStatus');
    const request = decodeRequest<ImageStatusRequest>('ImageStatus', raw);
    const found = await known(requireImageName(request.image));
    if (found === undefined) return { response: await backend.call('ImageStatus', raw, { signal }) };
    const outgoing = found.pinned !== undefined ? codec.encodeRequest({ ...request, image: { ...(request.image as ImageSpec), image: found.pinned } }) : raw;
    const bytes = await backend.call('ImageStatus', outgoing, { signal });
    const response = codec.decodeResponse(bytes) as { image: CriImage | null; info: Record<string, string> };
    if (response.image === null || !runtimeMayName(found.record, response.image.id)) return { response: bytes };
    response.image.repo_tags = mergeTags(response.image.repo_tags, found.record.repoTags);
    const verification = request.verbose ? verificationRecordFor(found.record.verification, repositoryNamed(requireImageName(request.image))?.name) : undefined;
    if (verification !== undefined) response.info = { ...response.info, 'pullguard.verification': JSON.stringify(verification) };
    return { response: codec.encodeResponse(response) };
  };

  const listImages: RpcHandler<Buffer, Buffer> = async (raw, { signal }) => {
    const codec = imageRpcCodec('ListImages');
    const request = decodeRequest<ListImagesRequest>('ListImages', raw);
    const filter = request.filter?.image?.image ?? '';
    const found = filter !== '' ? await known(filter) : undefined;
    const outgoing =
      found?.pinned !== undefined
        ? codec.encodeRequest({ ...request, filter: { ...request.filter, image: { ...(request.filter?.image as ImageSpec), image: found.pinned } } })
        : raw;
    const bytes = await backend.call('ListImages', outgoing, { signal });
    // By every id a runtime may give each record (an artifact's config digest too: containerd 2).
    const tagsById = new Map<string, string[]>();
    for (const record of await deps.index.list()) {
      if (record.repoTags.length === 0) continue;
      for (const id of runtimeIdsOf(record)) tagsById.set(id, [...(tagsById.get(id) ?? []), ...record.repoTags]);
    }
    if (tagsById.size === 0) return { response: bytes };
    const response = codec.decodeResponse(bytes) as { images: CriImage[] };
    let changed = false;
    for (const image of response.images) {
      const tags = tagsById.get(bareId(image.id));
      if (tags === undefined) continue;
      const merged = mergeTags(image.repo_tags, tags);
      if (merged.length !== image.repo_tags.length) {
        image.repo_tags = merged;
        changed = true;
      }
    }
    return { response: changed ? codec.encodeResponse(response) : bytes };
  };

  const removeImage: RpcHandler<Buffer, Buffer> = async (raw, { signal, log }) => {
    const codec = imageRpcCodec('RemoveImage');
    const request = decodeRequest<RemoveImageRequest>('RemoveImage', raw);
    const found = await known(requireImageName(request.image));
    if (found === undefined) return { response: await backend.call('RemoveImage', raw, { signal }) };
    // By image id: removing one tag removes the whole image (CRI semantics), in the runtime first,
    // so pullguard's tags stay while the runtime still has the image.
    // By the id the runtime itself gives the image (containerd: `sha256:<config>`, for an artifact
    // too; CRI-O: bare hex, and it takes nothing else), found through its name@digest.
    const pinned = found.pinned ?? found.record.repoDigests[0];
    let target = found.record.id as string;
    if (pinned !== undefined) {
      const status = imageRpcCodec('ImageStatus');
      const known = status.decodeResponse(await backend.call('ImageStatus', status.encodeRequest({ image: { image: pinned } }), { signal })) as {
        image: CriImage | null;
      };
      if (known.image !== null && runtimeMayName(found.record, known.image.id)) target = known.image.id;
    }
    const bytes = await backend.call('RemoveImage', codec.encodeRequest({ ...request, image: { ...(request.image as ImageSpec), image: target } }), { signal });
    await catalog.remove(found.record.id);
    log.info({ imageId: found.record.id }, "removed from the runtime and from pullguard's index");
    return { response: bytes };
  };

  const imageFsInfo: RpcHandler<Buffer, Buffer> = async (raw, { signal }) => ({ response: await backend.call('ImageFsInfo', raw, { signal }) });

  const version: RpcHandler<unknown, { version: string; runtime_name: string; runtime_version: string; runtime_api_version: string }> = async () => ({
    response: { version: '0.1.0', runtime_name: 'pullguard', runtime_version: deps.version, runtime_api_version: CRI_API_VERSION },
  });

  const common = { logger: deps.logger, shutdownSignal: deps.shutdownSignal };
  const describeImage =
    (rpc: ImageRpc) =>
    (raw: Buffer): Record<string, unknown> => {
      try {
        const decoded = imageRpcCodec(rpc).decodeRequest(raw) as { image?: ImageSpec | null; filter?: { image?: ImageSpec | null } | null };
        return rpc === 'ListImages' ? { filter: decoded.filter?.image?.image ?? '' } : { image: decoded.image?.image ?? '' };
      } catch {
        return {};
      }
    };
  return {
    image: {
      PullImage: instrumentUnary('PullImage', pullImage, { ...common, describe: describeImage('PullImage') }),
      ImageStatus: instrumentUnary('ImageStatus', imageStatus, { ...common, describe: describeImage('ImageStatus') }),
      ListImages: instrumentUnary('ListImages', listImages, { ...common, describe: describeImage('ListImages') }),
      RemoveImage: instrumentUnary('RemoveImage', removeImage, { ...common, describe: describeImage('RemoveImage') }),
      ImageFsInfo: instrumentUnary('ImageFsInfo', imageFsInfo, common),
      // StreamImages stays UNIMPLEMENTED: kubelet's cri-client then uses ListImages for good.
    },
    runtime: {
      Version: instrumentUnary('Version', version, common),
    },
  };
}

/**
 * The service definitions to register createBackendHandlers with: ImageService requests and
 * responses as raw bytes (handlers decode what they need), RuntimeService.Version as usual.
 */
export function backendServiceDefinitions(): { image: grpc.ServiceDefinition; runtime: grpc.ServiceDefinition } {
  const loaded = criServiceDefinitions();
  const image: Record<string, grpc.MethodDefinition<Buffer, Buffer>> = {};
  for (const [name, method] of Object.entries(loaded.image)) {
    image[name] = {
      ...(method as grpc.MethodDefinition<unknown, unknown>),
      requestDeserialize: identity,
      responseSerialize: identity,
      requestSerialize: identity,
      responseDeserialize: identity,
    };
  }
  return { image: image as grpc.ServiceDefinition, runtime: loaded.runtime };
}

function decodeRequest<T>(rpc: ImageRpc, raw: Buffer): T {
  try {
    return imageRpcCodec(rpc).decodeRequest(raw) as T;
  } catch (err) {
    throw new PullguardError('INVALID_ARGUMENT', `malformed ${rpc} request`, { cause: err });
  }
}

/** `nginx` → {name: docker.io/library/nginx, display: docker.io/library/nginx:latest}; undefined for ids. */
function referenceOf(name: string): { name: string; display: string } | undefined {
  if (/^(?:sha256:)?[0-9a-f]{6,64}$/.test(name)) return undefined;
  try {
    const ref = parseReference(name);
    const display = ref.digest !== undefined ? `${ref.name}@${ref.digest}` : formatReference(ref);
    return { name: ref.name, display };
  } catch {
    return undefined;
  }
}

/** An artifact: named by its manifest digest in pullguard's index (domain/image.ts imageIdOf). */
function isArtifactRecord(record: ImageRecord): boolean {
  return record.id !== record.configDigest;
}

/**
 * Whether the runtime's id for an image can be this record's: the same id, or for an artifact its
 * config digest — containerd 2 names artifacts by their config like images (so every artifact with
 * the empty config shares one id there); CRI-O names them by manifest.
 */
function runtimeMayName(record: ImageRecord, runtimeId: string): boolean {
  return runtimeIdsOf(record).has(bareId(runtimeId));
}

/** The ids, as bare hex, a runtime may give the image of this record. */
function runtimeIdsOf(record: ImageRecord): Set<string> {
  return new Set([bareId(record.id), ...(isArtifactRecord(record) ? [bareId(record.configDigest)] : [])]);
}

/** CRI-O spells image ids as bare hex, containerd as `sha256:<hex>`. */
function bareId(id: string): string {
  return id.startsWith('sha256:') ? id.slice('sha256:'.length) : id;
}

function mergeTags(reported: readonly string[], ours: readonly string[]): string[] {
  return [...new Set([...reported, ...ours])];
}
