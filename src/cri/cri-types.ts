/**
 * The CRI messages as proto-loader decodes/encodes them (keepCase, longs as strings, defaults on).
 * Only the fields pullguard reads or writes are typed.
 */
export interface ImageSpec {
  image: string;
  annotations?: Record<string, string>;
  user_specified_image?: string;
  runtime_handler?: string;
  image_ref?: string;
}

export interface CriImage {
  id: string;
  repo_tags: string[];
  repo_digests: string[];
  size: string;
  uid: { value: string } | null;
  username: string;
  spec: ImageSpec | null;
  pinned: boolean;
}

export interface AuthConfig {
  username?: string;
  password?: string;
  auth?: string;
  server_address?: string;
  identity_token?: string;
  registry_token?: string;
}

export interface PullImageRequest {
  image: ImageSpec | null;
  auth: AuthConfig | null;
  sandbox_config: { metadata: { name?: string; uid?: string; namespace?: string; attempt?: number } | null } | null;
}

export interface ImageStatusRequest {
  image: ImageSpec | null;
  verbose: boolean;
}

export interface ListImagesRequest {
  filter: { image: ImageSpec | null } | null;
}

export interface RemoveImageRequest {
  image: ImageSpec | null;
}

export interface FilesystemUsage {
  timestamp: string;
  fs_id: { mountpoint: string };
  used_bytes: { value: string };
  inodes_used: { value: string };
}
