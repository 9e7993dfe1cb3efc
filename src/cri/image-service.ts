/**
 * The CRI ImageService and RuntimeService.Version handlers. Each maps the request to one call on a
 * use case and the result to the response; errors go through instrument.ts → status.ts. What a pull
 * reports (metrics, logs, Events) the use case tells its observers.
 */
import * as grpc from '@grpc/grpc-js';
import { PullguardError } from '../domain/errors.js';
import type { ImageCatalog } from '../images/image-catalog.js';
import type { Logger } from '../log/logger.js';
import type { PullRequest, PullService } from '../pull/pull-service.js';
import { credentialsFromAuthConfig } from './auth-config.js';
import type { CriImage, FilesystemUsage, ImageStatusRequest, ListImagesRequest, PullImageRequest, RemoveImageRequest } from './cri-types.js';
import { ImageListEncoder } from './image-list-encoder.js';
import { instrumentUnary, type CriHandlers, type RpcContext, type RpcHandler } from './instrument.js';
import { loadCriPackageDefinition } from '../transport/cri-proto.js';
import { repositoryNamed } from '../pull/reverify.js';
import { verificationRecordFor } from '../pull/verification-record.js';
import { warningsMetadata } from './status.js';
import type { ImageRecord } from '../domain/image-record.js';

export const CRI_API_VERSION = 'v1';

export interface ImageServiceDeps {
  readonly pulls: PullService;
  readonly catalog: ImageCatalog;
  readonly logger: Logger;
  readonly version: string;
  readonly clock: () => Date;
  readonly shutdownSignal: AbortSignal;
}

export function requireImageName(spec: { image?: string } | null | undefined): string {
  const image = spec?.image ?? '';
  if (image === '') throw new PullguardError('INVALID_ARGUMENT', 'image name is empty');
  return image;
}

/** A PullImageRequest as the pull use case takes it: the pod's namespace picks the policy, the pod gets the Events. */
export function toPullRequest(request: PullImageRequest, { signal, logFields }: RpcContext): PullRequest {
  const image = requireImageName(request.image);
  const credentials = credentialsFromAuthConfig(request.auth);
  const metadata = request.sandbox_config?.metadata ?? undefined;
  const namespace = metadata?.namespace !== undefined && metadata.namespace !== '' ? metadata.namespace : undefined;
  const pod = metadata?.name && metadata.namespace ? { name: metadata.name, namespace: metadata.namespace, uid: metadata.uid ?? '' } : undefined;
  return {
    image,
    signal,
    logFields,
    ...(credentials !== undefined ? { credentials } : {}),
    ...(namespace !== undefined ? { namespace } : {}),
    ...(pod !== undefined ? { pod } : {}),
  };
}

/** `User` from the image config → CRI uid/username, as containerd's getUserFromImage does. */
export function userFields(user: string | undefined): Pick<CriImage, 'uid' | 'username'> {
  if (user === undefined || user === '') return { uid: null, username: '' };
  const name = user.split(':')[0] ?? '';
  if (/^\d+$/.test(name)) return { uid: { value: String(BigInt(name)) }, username: '' };
  return { uid: null, username: name };
}

const MAX_LOGGED_NAME = 512;

function truncateForLog(name: string): string {
  return name.length <= MAX_LOGGED_NAME ? name : `${name.slice(0, MAX_LOGGED_NAME)}…(${name.length} chars)`;
}

export function toCriImage(record: ImageRecord): CriImage {
  return {
    id: record.id,
    repo_tags: [...record.repoTags],
    repo_digests: [...record.repoDigests],
    size: String(record.size),
    ...userFields(record.user),
    spec: { image: record.id, annotations: {} },
    pinned: false,
  };
}

export function createImageServiceHandlers(deps: ImageServiceDeps): CriHandlers {
  const { pulls, catalog } = deps;
  const definitions = criServiceDefinitions();

  const pullImage: RpcHandler<PullImageRequest, { image_ref: string }> = async (request, context) => {
    const result = await pulls.pull(toPullRequest(request, context));
    const trailers = warningsMetadata(result.verdict.warnings);
    return { response: { image_ref: result.imageId }, ...(trailers !== undefined ? { trailers } : {}) };
  };

  const imageStatus: RpcHandler<ImageStatusRequest, { image: CriImage | null; info: Record<string, string> }> = async (request) => {
    const name = requireImageName(request.image);
    const record = await catalog.find(name);
    if (record === undefined) return { response: { image: null, info: {} } };
    const info: Record<string, string> = {};
    if (request.verbose) {
      info.info = JSON.stringify({
        manifestDigest: record.manifestDigest,
        manifestMediaType: record.manifestMediaType,
        topDigest: record.topDigest,
        layers: record.layers,
        pulledAt: record.pulledAt,
      });
      // The record of the repository asked about (by id: the latest one).
      const verification = verificationRecordFor(record.verification, repositoryNamed(name)?.name);
      if (verification !== undefined) info.verification = JSON.stringify(verification);
    }
    return { response: { image: toCriImage(record), info } };
  };

  const encodeListResponse = definitions.image.ListImages!.responseSerialize;
  const listEncoder = new ImageListEncoder((record) => encodeListResponse({ images: [toCriImage(record)] }));
  // Answered pre-encoded (see image-list-encoder.ts); criServiceDefinitions passes Buffers through.
  const listImages: RpcHandler<ListImagesRequest, Buffer> = async (request) => {
    const filter = request.filter?.image?.image ?? '';
    return { response: listEncoder.encode(await catalog.list(filter)) };
  };

  const removeImage: RpcHandler<RemoveImageRequest, Record<string, never>> = async (request) => {
    await catalog.remove(requireImageName(request.image));
    return { response: {} };
  };

  const imageFsInfo: RpcHandler<unknown, { image_filesystems: FilesystemUsage[]; container_filesystems: FilesystemUsage[] }> = async () => {
    const fs = await catalog.fsInfo();
    const timestamp = String(BigInt(deps.clock().getTime()) * 1_000_000n);
    return {
      response: {
        image_filesystems: [
          { timestamp, fs_id: { mountpoint: fs.mountpoint }, used_bytes: { value: String(fs.usedBytes) }, inodes_used: { value: String(fs.inodesUsed) } },
        ],
        container_filesystems: [],
      },
    };
  };

  const version: RpcHandler<unknown, { version: string; runtime_name: string; runtime_version: string; runtime_api_version: string }> = async () => ({
    response: { version: '0.1.0', runtime_name: 'pullguard', runtime_version: deps.version, runtime_api_version: CRI_API_VERSION },
  });

  const common = { logger: deps.logger, shutdownSignal: deps.shutdownSignal };
  // Bounded: a hostile 4 MiB name must not become a 4 MiB log line.
  const describeImage = (request: { image?: { image?: string } | null }): Record<string, unknown> => ({ image: truncateForLog(request.image?.image ?? '') });
  return {
    image: {
      PullImage: instrumentUnary('PullImage', pullImage, { ...common, describe: describeImage }),
      ImageStatus: instrumentUnary('ImageStatus', imageStatus, { ...common, describe: describeImage }),
      ListImages: instrumentUnary('ListImages', listImages, {
        ...common,
        describe: (r: ListImagesRequest) => ({ filter: truncateForLog(r.filter?.image?.image ?? '') }),
      }),
      RemoveImage: instrumentUnary('RemoveImage', removeImage, { ...common, describe: describeImage }),
      ImageFsInfo: instrumentUnary('ImageFsInfo', imageFsInfo, common),
      // StreamImages is left out on purpose: grpc-js answers UNIMPLEMENTED, and kubelet's cri-client
      // then falls back to ListImages for good.
    },
    runtime: {
      Version: instrumentUnary('Version', version, common),
    },
  };
}

let definitionsCache: { image: grpc.ServiceDefinition; runtime: grpc.ServiceDefinition } | undefined;

export function criServiceDefinitions(): { image: grpc.ServiceDefinition; runtime: grpc.ServiceDefinition } {
  if (definitionsCache !== undefined) return definitionsCache;
  const loaded = grpc.loadPackageDefinition(loadCriPackageDefinition()) as unknown as {
    runtime: { v1: { ImageService: { service: grpc.ServiceDefinition }; RuntimeService: { service: grpc.ServiceDefinition } } };
  };
  const image = { ...loaded.runtime.v1.ImageService.service };
  const list = image['ListImages']!;
  image['ListImages'] = { ...list, responseSerialize: (value: unknown) => (Buffer.isBuffer(value) ? value : list.responseSerialize(value)) };
  definitionsCache = { image, runtime: loaded.runtime.v1.RuntimeService.service };
  return definitionsCache;
}
