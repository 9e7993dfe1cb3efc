/**
 * Parsing and checking manifest bytes that have already been verified against their digest:
 * classify the media type, reject schema1, extract config/layer descriptors or index instances.
 */
import { parseDigest } from '../domain/digest.js';
import { PullguardError } from '../domain/errors.js';
import { MEDIA_TYPES, type Descriptor, type Platform } from '../domain/image.js';

export const MANIFEST_ACCEPT = [MEDIA_TYPES.ociManifest, MEDIA_TYPES.ociIndex, MEDIA_TYPES.dockerManifest, MEDIA_TYPES.dockerManifestList].join(', ');

export type ParsedManifest =
  | { readonly kind: 'index'; readonly mediaType: string; readonly manifests: readonly Descriptor[] }
  | { readonly kind: 'manifest'; readonly mediaType: string; readonly config: Descriptor; readonly layers: readonly Descriptor[] };

const INDEX_TYPES = new Set<string>([MEDIA_TYPES.ociIndex, MEDIA_TYPES.dockerManifestList]);
const MANIFEST_TYPES = new Set<string>([MEDIA_TYPES.ociManifest, MEDIA_TYPES.dockerManifest]);
const SCHEMA1_TYPES = new Set<string>([MEDIA_TYPES.dockerSchema1, MEDIA_TYPES.dockerSchema1Signed, 'application/json']);

function invalid(display: string, why: string): PullguardError {
  return new PullguardError('MANIFEST_INVALID', `invalid manifest for ${display}: ${why}`);
}

function descriptor(v: unknown, where: string, display: string): Descriptor {
  if (typeof v !== 'object' || v === null) throw invalid(display, `${where} is not an object`);
  const d = v as { mediaType?: unknown; digest?: unknown; size?: unknown; platform?: unknown; annotations?: unknown };
  if (typeof d.mediaType !== 'string' || d.mediaType === '') throw invalid(display, `${where}.mediaType is missing`);
  if (typeof d.digest !== 'string') throw invalid(display, `${where}.digest is missing`);
  let digest;
  try {
    digest = parseDigest(d.digest);
  } catch (err) {
    throw new PullguardError('MANIFEST_INVALID', `invalid manifest for ${display}: ${where}.digest: ${(err as Error).message}`, { cause: err });
  }
  if (typeof d.size !== 'number' || !Number.isSafeInteger(d.size) || d.size < 0) throw invalid(display, `${where}.size must be a non-negative integer`);
  let platform: Platform | undefined;
  if (d.platform !== undefined) {
    const p = d.platform as { os?: unknown; architecture?: unknown; variant?: unknown };
    if (typeof p !== 'object' || p === null || typeof p.os !== 'string' || typeof p.architecture !== 'string') {
      throw invalid(display, `${where}.platform needs "os" and "architecture"`);
    }
    platform =
      typeof p.variant === 'string' && p.variant !== ''
        ? { os: p.os, architecture: p.architecture, variant: p.variant }
        : { os: p.os, architecture: p.architecture };
  }
  const annotations =
    typeof d.annotations === 'object' && d.annotations !== null && Object.values(d.annotations).every((a) => typeof a === 'string')
      ? (d.annotations as Record<string, string>)
      : undefined;
  return {
    mediaType: d.mediaType,
    digest,
    size: d.size,
    ...(platform !== undefined ? { platform } : {}),
    ...(annotations !== undefined ? { annotations } : {}),
  };
}

/**
 * Parses verified manifest bytes. `contentType` is the response header; the body's `mediaType`
 * wins when present (both must agree when both are manifest types).
 */
export function parseManifest(bytes: Uint8Array, contentType: string | undefined, display: string): ParsedManifest {
  const headerType = contentType?.split(';')[0]?.trim().toLowerCase();
  let doc: unknown;
  try {
    doc = JSON.parse(Buffer.from(bytes).toString('utf8'));
  } catch (err) {
    if (headerType !== undefined && SCHEMA1_TYPES.has(headerType) && headerType !== 'application/json') {
      throw schema1(display);
    }
    throw new PullguardError('MANIFEST_INVALID', `invalid manifest for ${display}: not JSON`, { cause: err });
  }
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) throw invalid(display, 'not a JSON object');
  const m = doc as { schemaVersion?: unknown; mediaType?: unknown; manifests?: unknown; config?: unknown; layers?: unknown };
  if (m.schemaVersion === 1 || (headerType !== undefined && (headerType === MEDIA_TYPES.dockerSchema1 || headerType === MEDIA_TYPES.dockerSchema1Signed))) {
    throw schema1(display);
  }
  if (m.schemaVersion !== 2) throw invalid(display, `unsupported schemaVersion ${JSON.stringify(m.schemaVersion)}`);
  let mediaType = typeof m.mediaType === 'string' ? m.mediaType : undefined;
  if (mediaType === undefined) {
    if (headerType !== undefined && (INDEX_TYPES.has(headerType) || MANIFEST_TYPES.has(headerType))) mediaType = headerType;
    else if (Array.isArray(m.manifests)) mediaType = MEDIA_TYPES.ociIndex;
    else if (m.config !== undefined) mediaType = MEDIA_TYPES.ociManifest;
  }
  if (mediaType === undefined) throw invalid(display, 'cannot tell the media type');
  if (INDEX_TYPES.has(mediaType)) {
    if (!Array.isArray(m.manifests)) throw invalid(display, '"manifests" must be an array');
    return { kind: 'index', mediaType, manifests: m.manifests.map((d, i) => descriptor(d, `manifests[${i}]`, display)) };
  }
  if (MANIFEST_TYPES.has(mediaType)) {
    const config = descriptor(m.config, 'config', display);
    if (!Array.isArray(m.layers)) throw invalid(display, '"layers" must be an array');
    return { kind: 'manifest', mediaType, config, layers: m.layers.map((d, i) => descriptor(d, `layers[${i}]`, display)) };
  }
  throw new PullguardError('MANIFEST_UNSUPPORTED', `unsupported manifest media type ${JSON.stringify(mediaType)} for ${display}`, {
    facts: { mediaType },
  });
}

function schema1(display: string): PullguardError {
  return new PullguardError(
    'MANIFEST_UNSUPPORTED',
    `unsupported manifest for ${display}: Docker schema1 manifests are deprecated and not supported; push the image again as Docker schema2 or OCI`,
    { facts: { mediaType: MEDIA_TYPES.dockerSchema1 } },
  );
}
