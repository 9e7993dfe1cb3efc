import { PullguardError } from './errors.js';

/** A validated content digest, `<algorithm>:<lowercase hex>` (OCI image-spec descriptor rules). */
export type Digest = string & { readonly __brand: 'Digest' };

const ENCODED_LENGTH: Record<string, number> = { sha256: 64, sha512: 128 };

export function parseDigest(value: string): Digest {
  const colon = value.indexOf(':');
  if (colon <= 0) {
    throw new PullguardError('INVALID_DIGEST', `invalid digest ${JSON.stringify(value)}: missing algorithm`);
  }
  const algorithm = value.slice(0, colon);
  const encoded = value.slice(colon + 1);
  const length = ENCODED_LENGTH[algorithm];
  if (length === undefined) {
    throw new PullguardError('INVALID_DIGEST', `invalid digest ${JSON.stringify(value)}: unsupported digest algorithm ${JSON.stringify(algorithm)}`);
  }
  if (encoded.length !== length || !/^[0-9a-f]+$/.test(encoded)) {
    throw new PullguardError('INVALID_DIGEST', `invalid digest ${JSON.stringify(value)}: ${algorithm} needs ${length} lowercase hex characters`);
  }
  return value as Digest;
}

export function isDigest(value: string): value is Digest {
  try {
    parseDigest(value);
    return true;
  } catch {
    return false;
  }
}

export function digestAlgorithm(digest: Digest): 'sha256' | 'sha512' {
  return digest.slice(0, digest.indexOf(':')) as 'sha256' | 'sha512';
}

export function digestHex(digest: Digest): string {
  return digest.slice(digest.indexOf(':') + 1);
}
