import type { Digest } from './digest.js';

/** An OCI content descriptor (the fields pullguard relies on). */
export interface Descriptor {
  readonly mediaType: string;
  readonly digest: Digest;
  readonly size: number;
  readonly platform?: Platform;
  readonly annotations?: Readonly<Record<string, string>>;
}

export interface Platform {
  readonly os: string;
  readonly architecture: string;
  readonly variant?: string;
}

export const MEDIA_TYPES = {
  ociManifest: 'application/vnd.oci.image.manifest.v1+json',
  ociIndex: 'application/vnd.oci.image.index.v1+json',
  ociConfig: 'application/vnd.oci.image.config.v1+json',
  dockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
  dockerManifestList: 'application/vnd.docker.distribution.manifest.list.v2+json',
  dockerConfig: 'application/vnd.docker.container.image.v1+json',
  dockerSchema1: 'application/vnd.docker.distribution.manifest.v1+json',
  dockerSchema1Signed: 'application/vnd.docker.distribution.manifest.v1+prettyjws',
} as const;

/** Config media types of runnable images; any other config (the OCI empty descriptor included) makes an artifact. */
const IMAGE_CONFIG_TYPES: ReadonlySet<string> = new Set([MEDIA_TYPES.ociConfig, MEDIA_TYPES.dockerConfig]);

/**
 * An OCI artifact (image-spec "guidelines for artifact usage": an `artifactType`, a config that is
 * `application/vnd.oci.empty.v1+json` or of its own type, layers of any type) rather than a runnable
 * image. Kubernetes mounts both as image volumes (KEP-4639).
 */
export function isArtifact(config: Pick<Descriptor, 'mediaType'>): boolean {
  return !IMAGE_CONFIG_TYPES.has(config.mediaType);
}

/**
 * The CRI image id: the config digest of an image (as containerd and CRI-O report it), the manifest
 * digest of an artifact — artifacts share configs (every one with the empty config has the same
 * one), so only the manifest tells them apart (CRI-O's artifact store names them so too).
 */
export function imageIdOf(image: { readonly config: Pick<Descriptor, 'mediaType' | 'digest'>; readonly manifestDigest: Digest }): Digest {
  return isArtifact(image.config) ? image.manifestDigest : image.config.digest;
}
