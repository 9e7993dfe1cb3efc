import { isDigest, type Digest } from '../domain/digest.js';
import type { ImageRecord } from '../domain/image-record.js';
import { ValidationError } from '../domain/errors.js';

/** Every blob a record needs in the store; garbage collection keeps exactly these. */
export function referencedBlobs(record: ImageRecord): Digest[] {
  const layers = record.layersStored === false ? [] : record.layers.map((l) => l.digest);
  const config = record.configStored === false ? [] : [record.configDigest];
  return [...new Set([...config, record.manifestDigest, record.topDigest, ...layers, ...(record.signatureBlobs ?? [])])];
}

/** Checks a record's shape, reporting every problem at once (INVALID_ARGUMENT). */
export function validateImageRecord(record: ImageRecord): void {
  const problems: string[] = [];
  const digestField = (name: string, value: unknown): void => {
    if (typeof value !== 'string' || !isDigest(value)) problems.push(`${name} is not a valid digest: ${JSON.stringify(value)}`);
  };
  digestField('id', record.id);
  digestField('configDigest', record.configDigest);
  digestField('manifestDigest', record.manifestDigest);
  digestField('topDigest', record.topDigest);
  // An image is named by its config, an artifact by its manifest (domain/image.ts imageIdOf).
  if (record.id !== record.configDigest && record.id !== record.manifestDigest) {
    problems.push(`id ${record.id} must equal configDigest ${record.configDigest} (an image) or manifestDigest ${record.manifestDigest} (an artifact)`);
  }
  for (const [name, list] of [
    ['repoTags', record.repoTags],
    ['repoDigests', record.repoDigests],
  ] as const) {
    if (!Array.isArray(list) || list.some((v) => typeof v !== 'string' || v.length === 0)) problems.push(`${name} must be a list of non-empty strings`);
  }
  if (Array.isArray(record.repoDigests)) {
    for (const ref of record.repoDigests) {
      const at = typeof ref === 'string' ? ref.indexOf('@') : -1;
      if (at <= 0 || !isDigest(ref.slice(at + 1))) problems.push(`repoDigest ${JSON.stringify(ref)} is not name@digest`);
    }
  }
  if (Array.isArray(record.repoTags)) {
    for (const tag of record.repoTags) {
      if (typeof tag === 'string' && (tag.includes('@') || tag.lastIndexOf(':') <= tag.lastIndexOf('/')))
        problems.push(`repoTag ${JSON.stringify(tag)} is not name:tag`);
    }
  }
  if (!Array.isArray(record.layers)) {
    problems.push('layers must be a list');
  } else {
    record.layers.forEach((layer, i) => {
      digestField(`layers[${i}].digest`, layer?.digest);
      if (!Number.isSafeInteger(layer?.size) || layer.size < 0) problems.push(`layers[${i}].size is not a size`);
      if (typeof layer?.mediaType !== 'string') problems.push(`layers[${i}].mediaType is missing`);
    });
  }
  if (record.layersStored !== undefined && record.layersStored !== false) problems.push('layersStored is false or absent');
  if (record.configStored !== undefined && record.configStored !== false) problems.push('configStored is false or absent');
  if (record.configStored === false && record.layersStored !== false) problems.push('configStored is false only where layersStored is false');
  for (const [i, d] of (record.signatureBlobs ?? []).entries()) digestField(`signatureBlobs[${i}]`, d);
  if (!Number.isSafeInteger(record.size) || record.size < 0) problems.push('size is not a size');
  if (typeof record.pulledAt !== 'string' || Number.isNaN(Date.parse(record.pulledAt))) problems.push('pulledAt is not an ISO time');
  if (typeof record.manifestMediaType !== 'string' || typeof record.topMediaType !== 'string') problems.push('media types are missing');
  if (record.user !== undefined && typeof record.user !== 'string') problems.push('user must be a string');
  if (problems.length > 0) throw new ValidationError('INVALID_ARGUMENT', `image record ${String(record.id)}`, problems);
}
