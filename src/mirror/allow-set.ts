/**
 * What the mirror may serve: exactly the manifests and blobs of verified image records, and only
 * under the repositories those records were pulled from — plus, while an allowed image is still
 * being fetched, its blobs as each is committed. Looked up on each request (the records' part is
 * rebuilt whenever the index changes), so a removed image stops being served at once.
 */
import type { Digest } from '../domain/digest.js';
import { DEFAULT_DOMAIN } from '../domain/reference.js';
import type { InFlightImage } from '../pull/in-flight-images.js';
import type { ImageRecord } from '../domain/image-record.js';

export interface RecordSource {
  list(): readonly ImageRecord[] | Promise<readonly ImageRecord[]>;
}

export interface RepositoryContent {
  /** Manifest or index digest → its media type. */
  readonly manifests: Map<Digest, string>;
  /** Blobs of recorded images (committed). */
  readonly blobs: Set<Digest>;
  /** Allowed images still being fetched: their blobs are served once `ready`. */
  readonly inFlight: InFlightImage[];
}

/** Repository (full name `domain/path`) → what may be served under it. */
export type AllowSet = ReadonlyMap<string, RepositoryContent>;

export function buildAllowSet(records: readonly ImageRecord[]): AllowSet {
  const allow = new Map<string, RepositoryContent>();
  const contentOf = (name: string): RepositoryContent => {
    let content = allow.get(name);
    if (content === undefined) {
      content = { manifests: new Map(), blobs: new Set(), inFlight: [] };
      allow.set(name, content);
    }
    return content;
  };
  for (const record of records) {
    for (const name of repositoriesOf(record)) {
      const content = contentOf(name);
      content.manifests.set(record.manifestDigest, record.manifestMediaType);
      content.manifests.set(record.topDigest, record.topMediaType);
      // What the runtime fetched itself is not here to serve (and must not be served from elsewhere).
      if (record.configStored !== false) content.blobs.add(record.configDigest);
      if (record.layersStored !== false) for (const layer of record.layers) content.blobs.add(layer.digest);
    }
  }
  return allow;
}

/**
 * `allow` plus the images still being fetched, as a new set: `allow` (which may be cached for an
 * unchanged index) is not modified — a repository that gains an in-flight image gets a copy.
 */
export function withInFlight(allow: AllowSet, inFlight: readonly InFlightImage[]): AllowSet {
  if (inFlight.length === 0) return allow;
  const merged = new Map(allow);
  const copied = new Set<string>();
  for (const image of inFlight) {
    let content = merged.get(image.repository);
    if (!copied.has(image.repository)) {
      content = { manifests: new Map(content?.manifests), blobs: content?.blobs ?? new Set(), inFlight: [...(content?.inFlight ?? [])] };
      merged.set(image.repository, content);
      copied.add(image.repository);
    }
    for (const [digest, mediaType] of image.manifests) content!.manifests.set(digest, mediaType);
    content!.inFlight.push(image);
  }
  return merged;
}

/** `docker.io/library/nginx:latest`, `docker.io/library/nginx@sha256:…` → `docker.io/library/nginx`. */
function repositoriesOf(record: ImageRecord): Set<string> {
  const names = new Set<string>();
  for (const tag of record.repoTags) {
    const colon = tag.lastIndexOf(':');
    if (colon > tag.lastIndexOf('/')) names.add(tag.slice(0, colon));
  }
  for (const ref of record.repoDigests) {
    const at = ref.indexOf('@');
    if (at > 0) names.add(ref.slice(0, at));
  }
  return names;
}

/**
 * The repository a mirror request means. containerd sends the path without the registry host and
 * names the upstream in `?ns=`; other clients may send the full name. Without `ns`, a bare path
 * matches only when exactly one registry has a verified repository of that path.
 */
export function lookupRepository(allow: AllowSet, path: string, ns: string | null): RepositoryContent | undefined {
  if (ns !== null && ns !== '') {
    const domain = normaliseNamespace(ns);
    const name = domain === DEFAULT_DOMAIN && !path.includes('/') ? `${domain}/library/${path}` : `${domain}/${path}`;
    return allow.get(name);
  }
  const exact = allow.get(path);
  if (exact !== undefined) return exact;
  const matches = [...allow.entries()].filter(([name]) => name.slice(name.indexOf('/') + 1) === path);
  return matches.length === 1 ? matches[0]![1] : undefined;
}

function normaliseNamespace(ns: string): string {
  const host = ns.toLowerCase();
  return host === 'index.docker.io' || host === 'registry-1.docker.io' ? DEFAULT_DOMAIN : host;
}
