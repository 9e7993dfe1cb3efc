/**
 * `signedIdentity` matching (c/image policy_reference_match.go). The signed reference is untrusted
 * input until the caller has verified the signature; unparseable references simply do not match.
 * Pure.
 */
import { formatReference, parseReference, type ImageReference } from '../domain/reference.js';
import type { SignedIdentity } from './types.js';

function tryParse(value: string): ImageReference | undefined {
  try {
    return parseReference(value, { defaultTag: false });
  } catch {
    return undefined;
  }
}

const isNameOnly = (ref: ImageReference): boolean => ref.tag === undefined && ref.digest === undefined;

function matchRepoDigestOrExact(intended: ImageReference, signed: ImageReference): boolean {
  if (isNameOnly(signed)) return false;
  if (intended.tag !== undefined) return formatReference(signed) === formatReference(intended);
  if (intended.digest !== undefined) return signed.name === intended.name;
  return false;
}

/** `prefix` matches `ref` at a path boundary: `docker.io/library/busybox` is no prefix of `…/busybox-foo`. */
function refMatchesPrefix(ref: string, prefix: string): boolean {
  if (ref.length < prefix.length) return false;
  if (ref.length === prefix.length) return ref === prefix;
  if (!ref.startsWith(prefix)) return false;
  const c = ref[prefix.length];
  return c === '/' || c === ':' || c === '@';
}

function remap(intended: ImageReference, prefix: string, signedPrefix: string): ImageReference | undefined {
  const full = formatReference(intended);
  if (!refMatchesPrefix(full, prefix)) return intended;
  const remapped = tryParse(signedPrefix + full.slice(prefix.length));
  // Upstream uses reference.ParseNamed (no normalisation): the result must already be canonical.
  if (remapped === undefined || formatReference(remapped) !== signedPrefix + full.slice(prefix.length)) return undefined;
  return remapped;
}

/**
 * Does a signature whose payload claims `untrustedSignedReference` match the image the user asked
 * for (`image`, the logical reference)?
 */
export function matchesSignedIdentity(rule: SignedIdentity, image: ImageReference, untrustedSignedReference: string): boolean {
  const signed = tryParse(untrustedSignedReference);
  if (signed === undefined) return false;
  switch (rule.type) {
    case 'matchExact':
      if (isNameOnly(image) || isNameOnly(signed)) return false;
      return formatReference(signed) === formatReference(image);
    case 'matchRepoDigestOrExact':
      return matchRepoDigestOrExact(image, signed);
    case 'matchRepository':
      return signed.name === image.name;
    case 'exactReference': {
      const expected = tryParse(rule.dockerReference);
      if (expected === undefined || isNameOnly(expected) || isNameOnly(signed)) return false;
      return formatReference(signed) === formatReference(expected);
    }
    case 'exactRepository': {
      const expected = tryParse(rule.dockerRepository);
      return expected !== undefined && signed.name === expected.name;
    }
    case 'remapIdentity': {
      const remapped = remap(image, rule.prefix, rule.signedPrefix);
      return remapped !== undefined && matchRepoDigestOrExact(remapped, signed);
    }
  }
}

/** `matchRepoDigestOrExact`, `exactReference "x"`, …: for descriptions and logs. */
export function describeSignedIdentity(rule: SignedIdentity): string {
  switch (rule.type) {
    case 'exactReference':
      return `exactReference ${JSON.stringify(rule.dockerReference)}`;
    case 'exactRepository':
      return `exactRepository ${JSON.stringify(rule.dockerRepository)}`;
    case 'remapIdentity':
      return `remapIdentity ${JSON.stringify(rule.prefix)} → ${JSON.stringify(rule.signedPrefix)}`;
    default:
      return rule.type;
  }
}
