import { isPullguardError, type PullguardError } from '../../src/domain/errors.js';

/** The coded error `p` rejects with; fails the test if it resolves or rejects with anything else. */
export async function failure(p: Promise<unknown>): Promise<PullguardError> {
  try {
    await p;
  } catch (err) {
    if (isPullguardError(err)) return err;
    throw err;
  }
  throw new Error('expected a failure');
}
