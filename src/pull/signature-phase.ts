/**
 * The signature phase of a pull: after the manifest is resolved, before any layer is fetched.
 * requirements for the logical reference → fetch signatures only if a requirement can use them
 * (sigstore attachments only for sigstoreSigned) → verify each (signedBy × simple-signing blob,
 * sigstoreSigned × cosign signature layer) → decide. A fetch failure is always a trouble or
 * an error, never an acceptance.
 */
import { PullguardError, isPullguardError } from '../domain/errors.js';
import type { SignatureCheck, SignatureLocation, SignatureTrouble, UntrustedSignatureBlob } from '../domain/signature.js';
import { decide, type RequirementChecks } from '../policy/decide.js';
import { matchesSignedIdentity } from '../policy/identity.js';
import { requirementsFor } from '../policy/scope.js';
import type { PolicyRequirement, SignedByRequirement, SigstoreSignedRequirement } from '../policy/types.js';
import { verifySimpleSigning } from '../signature/simple-signing.js';
import { SIGSTORE_SIGNATURE_MIME_TYPE } from '../signature/sigstore/constants.js';
import { verifySigstoreSignature } from '../signature/sigstore/verify.js';
import { formatReference } from '../domain/reference.js';
import type { VerdictCache } from './verdict-cache.js';
import type { LoadedPolicy, RegistryCredentials, ResolvedImage, SignaturePhase, SignaturePhaseResult, SignatureSource, TrustConfiguration } from './ports.js';

export interface SignaturePhaseInput {
  readonly policy: LoadedPolicy;
  readonly image: ResolvedImage;
  readonly sources: readonly SignatureSource[];
  readonly signal?: AbortSignal;
  readonly credentials?: RegistryCredentials;
  /** Verification time (injected clock); defaults to now. */
  readonly now?: Date;
  /** Deny what the policy would accept without verifying any signature (decide's requireSignatureVerification). */
  readonly requireSignatureVerification?: boolean;
}

const verifiesGpgSignatures = (r: PolicyRequirement): r is SignedByRequirement => r.type === 'signedBy' && r.keyType === 'GPGKeys';

const verifiesSigstoreSignatures = (r: PolicyRequirement): r is SigstoreSignedRequirement => r.type === 'sigstoreSigned';

/** Requirements that deny whatever the signatures say: no point fetching anything. */
const alwaysDenies = (r: PolicyRequirement): boolean =>
  r.type === 'reject' || r.type === 'signedBaseLayer' || (r.type === 'signedBy' && r.keyType !== 'GPGKeys');

/** Lookaside (simple signing) first, then sigstore attachments, each in index order (as c/image lists them). */
const bySourceAndIndex = (a: UntrustedSignatureBlob, b: UntrustedSignatureBlob): number =>
  a.location.source === b.location.source ? a.location.index - b.location.index : a.location.source === 'lookaside' ? -1 : 1;

interface Collected {
  readonly blobs: UntrustedSignatureBlob[];
  readonly troubles: SignatureTrouble[];
  readonly notices: string[];
  readonly retried: SignatureLocation[];
}

async function fetchAll(input: SignaturePhaseInput, wantSigstore: boolean): Promise<Collected> {
  const out: Collected = { blobs: [], troubles: [], notices: [], retried: [] };
  for (const [i, source] of input.sources.entries()) {
    // Attachments cost registry requests; read them only when a requirement can use them.
    const sigstoreOnly = source.yields === 'sigstore';
    if (sigstoreOnly && !wantSigstore) continue;
    const sourceKind: SignatureLocation['source'] = sigstoreOnly ? 'sigstore-attachment' : 'lookaside';
    let report;
    try {
      report = await source.fetch(input.image, {
        ...(input.signal !== undefined ? { signal: input.signal } : {}),
        ...(input.credentials !== undefined ? { credentials: input.credentials } : {}),
      });
    } catch (err) {
      if (input.signal?.aborted === true) throw new PullguardError('CANCELLED', 'signature phase cancelled', { cause: err });
      // The port promises per-index reports; a throw means this source read nothing. Record it as a
      // trouble (index 0 = the source as a whole) so it shows up in denials and warnings.
      out.troubles.push({
        location: { source: sourceKind, index: 0, url: `signature source ${i + 1}` },
        kind: 'io',
        message: `reading signatures: ${isPullguardError(err) ? err.message : String((err as Error)?.message ?? err)}`,
        attempts: 1,
      });
      continue;
    }
    out.blobs.push(...report.signatures);
    out.troubles.push(...report.troubles);
    out.notices.push(...report.notices);
    for (const index of report.retriedIndices) {
      const known = [...report.signatures, ...report.troubles].find((s) => s.location.index === index)?.location;
      out.retried.push(known ?? { source: sourceKind, index, url: '' });
    }
  }
  return out;
}

async function checkOne(input: SignaturePhaseInput, requirement: SignedByRequirement, blob: UntrustedSignatureBlob): Promise<SignatureCheck> {
  const keys = input.policy.gpgKeys.get(requirement);
  if (keys === undefined) {
    throw new PullguardError('POLICY_EVALUATION_FAILED', 'signedBy requirement has no loaded keys (policy was not loaded through the policy loader)');
  }
  try {
    return await verifySimpleSigning(blob, keys, {
      manifestDigest: input.image.manifestDigest,
      manifestBytes: input.image.manifestBytes,
      matchesIdentity: (untrustedRef) => matchesSignedIdentity(requirement.signedIdentity, input.image.reference, untrustedRef),
      now: input.now ?? new Date(),
    });
  } catch (err) {
    // verifySimpleSigning reports bad signatures as data; anything thrown is still never an acceptance.
    return { verdict: 'rejected', location: blob.location, kind: 'invalid-signature', reason: `verifying signature: ${(err as Error).message}` };
  }
}

function checkSigstore(input: SignaturePhaseInput, requirement: SigstoreSignedRequirement, blob: UntrustedSignatureBlob): SignatureCheck {
  const keys = input.policy.sigstoreKeys?.get(requirement);
  if (keys === undefined) {
    throw new PullguardError('POLICY_EVALUATION_FAILED', 'sigstoreSigned requirement has no loaded keys (policy was not loaded through the policy loader)');
  }
  try {
    return verifySigstoreSignature(blob, keys, {
      manifestDigest: input.image.manifestDigest,
      manifestBytes: input.image.manifestBytes,
      matchesIdentity: (untrustedRef) => matchesSignedIdentity(requirement.signedIdentity, input.image.reference, untrustedRef),
      // pki certificates must be valid now (fulcio ones at their Rekor integrated time).
      now: input.now ?? new Date(),
    });
  } catch (err) {
    return { verdict: 'rejected', location: blob.location, kind: 'invalid-signature', reason: `verifying signature: ${(err as Error).message}` };
  }
}

/** sigstoreSigned over every signature read (policy_eval_sigstore.go): skips what it cannot use, counting it. */
function sigstoreChecks(input: SignaturePhaseInput, requirement: SigstoreSignedRequirement, ordered: readonly UntrustedSignatureBlob[]): RequirementChecks {
  const checks: SignatureCheck[] = [];
  let nonSigstore = 0;
  let nonSignatureAttachments = 0;
  for (const blob of ordered) {
    if (blob.format !== 'sigstore') nonSigstore++;
    else if (blob.untrustedMimeType !== SIGSTORE_SIGNATURE_MIME_TYPE) nonSignatureAttachments++;
    else checks.push(checkSigstore(input, requirement, blob));
  }
  return { requirement, checks, skipped: { nonSigstore, nonSignatureAttachments } };
}

/** The verdict, and every signature that parsed (source and index order) for the forensic record. */
export async function runSignaturePhase(input: SignaturePhaseInput): Promise<SignaturePhaseResult> {
  const { scope, requirements } = requirementsFor(input.policy.policy, input.image.reference);
  const wantSigstore = requirements.some(verifiesSigstoreSignatures);
  const needsSignatures = (wantSigstore || requirements.some(verifiesGpgSignatures)) && !requirements.some(alwaysDenies);
  const collected: Collected = needsSignatures ? await fetchAll(input, wantSigstore) : { blobs: [], troubles: [], notices: [], retried: [] };
  if (input.signal?.aborted === true) throw new PullguardError('CANCELLED', 'signature phase cancelled');

  // signedBy reads simple-signing signatures only (sigstore ones are filtered out, as upstream).
  const ordered = [...collected.blobs].sort(bySourceAndIndex);
  const simple = ordered.filter((b) => b.format === 'simple-signing');
  const perRequirement: RequirementChecks[] = [];
  for (const requirement of requirements) {
    if (needsSignatures && verifiesSigstoreSignatures(requirement)) {
      perRequirement.push(sigstoreChecks(input, requirement, ordered));
      continue;
    }
    const checks: SignatureCheck[] = [];
    if (needsSignatures && verifiesGpgSignatures(requirement)) {
      for (const blob of simple) checks.push(await checkOne(input, requirement, blob));
    }
    perRequirement.push({ requirement, checks });
  }
  const verdict = decide({
    scope,
    reference: input.image.reference,
    requirements: perRequirement,
    troubles: collected.troubles,
    notices: collected.notices,
    retried: collected.retried,
    ...(input.requireSignatureVerification === true ? { requireSignatureVerification: true } : {}),
  });
  return { verdict, signatures: Object.freeze([...collected.blobs]) };
}

/**
 * The signature phase of PullService under the trust configuration in force. It asks for that
 * configuration once, as the phase starts: a reload meanwhile applies from the next pull on. With a
 * verdict cache, a re-pull of an image on the node is answered with the verdict already reached for
 * the same digest, reference, policy and revision, without fetching or verifying anything (the pull
 * has resolved the manifest with the caller's credentials by then).
 */
export function signaturePhaseUnder(trust: TrustConfiguration, options: { readonly cache?: VerdictCache; readonly clock?: () => Date } = {}): SignaturePhase {
  const { cache } = options;
  const clock = options.clock ?? (() => new Date());
  return async ({ namespace, image, credentials, signal, reuseVerdict }) => {
    const { trust: loaded, revision } = trust.current();
    const { policy, source } = await loaded.policyFor(namespace);
    const key = { revision: revision.number, policy, reference: formatReference(image.reference), manifestDigest: image.manifestDigest };
    const hit = reuseVerdict === true ? cache?.get(key) : undefined;
    if (hit !== undefined) {
      return {
        verdict: hit.verdict,
        signatures: hit.signatures,
        policySource: hit.policySource,
        decision: { decidedAt: hit.decidedAt, revision, cache: 'hit' },
      };
    }
    const result = await runSignaturePhase({
      policy,
      image,
      sources: loaded.signatureSources,
      ...(loaded.requireSignatureVerification === true ? { requireSignatureVerification: true } : {}),
      ...(signal !== undefined ? { signal } : {}),
      ...(credentials !== undefined ? { credentials } : {}),
    });
    const decidedAt = clock();
    cache?.set(key, { verdict: result.verdict, signatures: result.signatures, policySource: source, decidedAt });
    return { ...result, policySource: source, decision: { decidedAt, revision, ...(cache?.enabled === true ? { cache: 'miss' as const } : {}) } };
  };
}
