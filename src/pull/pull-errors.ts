import type { Digest } from '../domain/digest.js';
import { PullguardError } from '../domain/errors.js';
import type { Verdict } from '../domain/signature.js';

/** The policy denied the image: "evaluation succeeded and the answer is no". Carries the verdict. */
export class SignatureDeniedError extends PullguardError<'SIGNATURE_VALIDATION_FAILED'> {
  readonly verdict: Verdict;
  readonly image: string;
  readonly manifestDigest: Digest;

  constructor(image: string, manifestDigest: Digest, verdict: Verdict) {
    super('SIGNATURE_VALIDATION_FAILED', `Source image rejected: ${verdict.denial ?? 'denied by policy'}`, {
      facts: { image, manifestDigest, policyFile: verdict.scope.policyFile, scope: verdict.scope.scope },
    });
    this.verdict = verdict;
    this.image = image;
    this.manifestDigest = manifestDigest;
  }
}

export function isSignatureDeniedError(err: unknown): err is SignatureDeniedError {
  return err instanceof PullguardError && err.code === 'SIGNATURE_VALIDATION_FAILED' && 'verdict' in err;
}
