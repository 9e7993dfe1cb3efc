/**
 * Lookaside URLs as c/image builds them (`lookasideStorageBaseURL` / `lookasideStorageURL`):
 * `<base>/<repository path without host>@<algo>=<hex>/signature-<N>`, N from 1. The reference is
 * the *physical* one (the mirror the manifest came from), the digest the platform instance's.
 */
import { posix } from 'node:path';
import { digestAlgorithm, digestHex, parseDigest, type Digest } from '../domain/digest.js';
import { PullguardError } from '../domain/errors.js';
import { formatReference, type ImageReference } from '../domain/reference.js';

/** The configured base extended with `/<repo path>`; throws INVALID_REGISTRIES_D / INVALID_REFERENCE. */
export function lookasideImageBase(baseUrl: string, reference: ImageReference): URL {
  let url: URL;
  try {
    url = new URL(baseUrl);
  } catch (err) {
    throw new PullguardError('INVALID_REGISTRIES_D', `Invalid signature storage URL ${baseUrl}: ${(err as Error).message}`, { cause: err });
  }
  const repo = reference.path;
  // Docker references cannot contain `.`/`..` components, but a path that escapes the base must never be built.
  if (posix.normalize(repo) !== repo || repo.startsWith('/') || repo.endsWith('/') || repo === '.' || repo.split('/').includes('..')) {
    throw new PullguardError('INVALID_REFERENCE', `Unexpected path elements in Docker reference ${formatReference(reference)} for signature storage`);
  }
  // Plain concatenation like Go's `url.Path + "/" + repo` (a trailing `/` in the base gives `//`).
  url.pathname = `${url.pathname === '/' && !baseUrl.endsWith('/') ? '' : url.pathname}/${repo}`;
  return url;
}

/** `<imageBase>@<algo>=<hex>/signature-<index>`; the digest is validated first (no `../` can sneak in). */
export function lookasideSignatureUrl(imageBase: URL, manifestDigest: Digest | string, index: number): URL {
  const digest = parseDigest(manifestDigest);
  if (!Number.isSafeInteger(index) || index < 1) {
    throw new PullguardError('INVALID_ARGUMENT', `signature index must be a positive integer, got ${index}`);
  }
  const url = new URL(imageBase.href);
  url.pathname = `${url.pathname}@${digestAlgorithm(digest)}=${digestHex(digest)}/signature-${index}`;
  return url;
}

/**
 * The URL as shown to users: no userinfo, query values replaced. Lookaside URLs are configuration,
 * but a pre-signed CDN URL or `user:pass@` must still never reach a log or a CRI error.
 */
export function redactUrl(url: URL): string {
  const shown = new URL(url.href);
  shown.username = '';
  shown.password = '';
  if (shown.search !== '') {
    const keys = [...shown.searchParams.keys()];
    shown.search = keys.map((k) => `${encodeURIComponent(k)}=REDACTED`).join('&');
  }
  shown.hash = '';
  return shown.href;
}
