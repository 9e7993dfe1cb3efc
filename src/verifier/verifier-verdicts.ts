/**
 * What pullguard answers containerd's image verifier for `name@digest`, after containerd resolved
 * the name and before it fetches anything:
 *
 * - **already allowed**: pullguard holds a verification record of that repository with that digest
 *   (and, for a tagged name, that tag), or is pulling it right now after allowing it (its CRI front
 *   asked the runtime for `name@<verified digest>`). Answered at once, no signature phase.
 * - otherwise the **full verification**, as a pull that bypassed pullguard needs it (kubelet straight
 *   at containerd, `ctr`, `nerdctl`): PullService.verify resolves that digest, runs the same signature
 *   phase under the global policy (a verifier learns no pod namespace and no credentials), decides
 *   with the same partial sufficiency, and records it with its manifests and signatures (containerd fetches config and layers).
 *
 * A denial or any failure is a block whose reason is the one line pullguard's CRI socket would answer
 * (`cri/status.ts`): the same bounded messages, never credentials.
 */
import { describeFailure } from '../cri/status.js';
import { parseDigest, type Digest } from '../domain/digest.js';
import { PullguardError } from '../domain/errors.js';
import type { ImageRecord } from '../domain/image-record.js';
import { formatReference, parseReference, type ImageReference } from '../domain/reference.js';
import type { Verdict } from '../domain/signature.js';
import type { InFlightImages } from '../pull/in-flight-images.js';
import type { PullResult, VerifyRequest } from '../pull/pull-service.js';
import { verificationRecordFor } from '../pull/verification-record.js';
import type { VerifyAnswer } from './protocol.js';

export interface VerifierVerdictDeps {
  /** The pull use case (PullService), whose verify() decides. */
  readonly pulls: { verify(request: VerifyRequest): Promise<PullResult> };
  /** pullguard's image index: `name@digest` (a top or instance digest) → record. */
  readonly index: { resolve(name: string): ImageRecord | undefined | Promise<ImageRecord | undefined> };
  /** Images pullguard allowed and is still pulling (in front of a runtime). */
  readonly inFlight?: InFlightImages;
  /** Aborts verifications in progress (server shutdown). A verifier that gave up does not: the verdict then serves its retry. */
  readonly signal?: AbortSignal;
}

export interface JudgedQuestion extends VerifyAnswer {
  /** The manifest digest decided on, when known. */
  readonly manifestDigest?: string;
}

export async function judgeVerifierQuestion(
  deps: VerifierVerdictDeps,
  question: { readonly name: string; readonly digest: string; readonly logFields?: Readonly<Record<string, unknown>> },
): Promise<JudgedQuestion> {
  try {
    const digest = parseDigest(question.digest);
    const reference = parseReference(question.name);
    if (reference.digest !== undefined && reference.digest !== digest) {
      throw new PullguardError('INVALID_ARGUMENT', `${formatReference(reference)} names another digest than the resolved ${digest}`);
    }
    const known = await alreadyAllowed(deps, reference, digest);
    if (known !== undefined) return { allowed: true, cached: true, message: known };
    const result = await deps.pulls.verify({
      image: question.name,
      digest,
      ...(question.logFields !== undefined ? { logFields: question.logFields } : {}),
      ...(deps.signal !== undefined ? { signal: deps.signal } : {}),
    });
    return { allowed: true, cached: false, manifestDigest: result.manifestDigest, message: describeAllowed(result) };
  } catch (err) {
    return { allowed: false, cached: false, message: describeFailure(err, { image: question.name }).message };
  }
}

/** Why `reference` at `digest` is allowed without a new signature phase, or undefined. */
async function alreadyAllowed(deps: VerifierVerdictDeps, reference: ImageReference, digest: Digest): Promise<string | undefined> {
  const pinned = `${reference.name}@${digest}`;
  const record = await deps.index.resolve(pinned);
  // A tag's identity was checked for the manifest it named then: only that tag of that record counts.
  const tagged = reference.digest === undefined && reference.tag !== undefined ? `${reference.name}:${reference.tag}` : undefined;
  if (record?.repoDigests.includes(pinned) && (tagged === undefined || record.repoTags.includes(tagged))) {
    const accepted = verificationRecordFor(record.verification, reference.name);
    return `pullguard verified ${tagged ?? pinned}${tagged !== undefined ? ` (${digest})` : ''} already${accepted !== undefined ? ` (${accepted.time}, ${accepted.policyFile} [${accepted.scope}])` : ''}`;
  }
  if (tagged !== undefined) return undefined;
  const pulling = deps.inFlight?.list().find((entry) => entry.repository === reference.name && entry.manifests.has(digest));
  return pulling !== undefined ? `pullguard allowed ${pinned} and is pulling it through its CRI socket` : undefined;
}

function describeAllowed(result: PullResult): string {
  const verdict: Verdict = result.verdict;
  const warnings =
    verdict.warnings.length === 0
      ? ''
      : `; ${verdict.warnings.length} warning${verdict.warnings.length === 1 ? '' : 's'}: ${verdict.warnings.map((w) => w.code).join(', ')}`;
  return `pullguard allowed ${formatReference(result.reference)} (${result.manifestDigest}) under ${verdict.scope.policyFile} [${verdict.scope.scope}]${warnings}`;
}

/** The verifier endpoint's judge (startVerifierServer): every question judged against these dependencies. */
export function verifierJudge(
  deps: VerifierVerdictDeps,
): (question: { readonly name: string; readonly digest: string; readonly logFields?: Readonly<Record<string, unknown>> }) => Promise<JudgedQuestion> {
  return (question) => judgeVerifierQuestion(deps, question);
}
