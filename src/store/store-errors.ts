import { isPullguardError, PullguardError } from '../domain/errors.js';
import { errnoCode } from './fs-facade.js';

type Facts = Record<string, string | number | boolean | undefined>;

/**
 * Maps a filesystem error to the store's codes: a full disk (ENOSPC/EDQUOT) is STORE_FULL naming the
 * store root, so an operator knows which volume to grow; anything else is STORE_IO with the cause.
 */
export function storeError(err: unknown, root: string, action: string, facts: Facts = {}): PullguardError {
  if (isPullguardError(err)) return err;
  const code = errnoCode(err);
  if (code === 'ENOSPC' || code === 'EDQUOT') {
    return new PullguardError('STORE_FULL', `content store ${root} is full (${code}) while ${action}`, {
      cause: err,
      facts: { ...facts, root, errno: code },
    });
  }
  const why = code ?? (err instanceof Error ? err.message : String(err));
  return new PullguardError('STORE_IO', `content store ${root}: ${action} failed: ${why}`, {
    cause: err,
    facts: { ...facts, root, errno: code },
  });
}

export function blobNotFound(root: string, digest: string): PullguardError<'STORE_IO'> {
  return new PullguardError('STORE_IO', `content store ${root}: blob ${digest} not found`, {
    facts: { root, digest, notFound: true },
  });
}
