/**
 * The policy decision: requirements × signature checks × fetch troubles → Verdict. Synchronous,
 * pure and deterministic (no clock, no randomness).
 *
 * Partial sufficiency (containers-image-semantics §3.5, §8.1): every implemented requirement is
 * monotone in the set of signatures (AND of requirements, each an OR over signatures), so when the
 * signatures that *verified* satisfy every requirement, a complete, error-free read would have been
 * allowed too. Troubles therefore never make anything pass; on an allowed verdict they become
 * warnings, on a denial they are appended to upstream's wording.
 */
import { formatReference, type ImageReference } from '../domain/reference.js';
import type {
  AcceptedCheck,
  PolicyScope,
  RejectedCheck,
  RequirementOutcome,
  SignatureCheck,
  SignatureLocation,
  SignatureTrouble,
  Verdict,
  Warning,
} from '../domain/signature.js';
import { describeSignedIdentity } from './identity.js';
import type { PolicyRequirement } from './types.js';

export interface RequirementChecks {
  readonly requirement: PolicyRequirement;
  /** This requirement's judgement of each signature it handles, in signature index order. */
  readonly checks: readonly SignatureCheck[];
  /**
   * sigstoreSigned only: signatures it read but does not evaluate (simple-signing ones, and sigstore
   * attachment layers that are not cosign signatures), for upstream's "no signature exists" text.
   */
  readonly skipped?: { readonly nonSigstore: number; readonly nonSignatureAttachments: number };
}

export interface DecideInput {
  readonly scope: PolicyScope;
  /** The logical reference the user asked for (used in the `reject` text). */
  readonly reference: ImageReference;
  readonly requirements: readonly RequirementChecks[];
  /** Every signature that could not be read, from every source. */
  readonly troubles: readonly SignatureTrouble[];
  /** Fetch notices (e.g. text/html that still parsed): PGW004 on allowed verdicts. */
  readonly notices?: readonly string[];
  /** Indices whose requests needed retries: PGW003 on allowed verdicts. */
  readonly retried?: readonly SignatureLocation[];
}

/** Bounds that keep a denial readable (~1 KiB) even with 128 bad signatures. */
const MAX_LISTED_REASONS = 4;
const MAX_LISTED_TROUBLES = 3;
const MAX_ITEM_CHARS = 200;

export const EMPTY_REQUIREMENTS_TEXT = 'List of verification policy requirements must not be empty';
export const NO_SIGNATURE_TEXT = 'A signature was required, but no signature exists';
/** sigstoreSigned trusting fulcio or pki: the loader refuses such policies; decide still never accepts. */
export const SIGSTORE_UNSUPPORTED_TEXT = 'sigstoreSigned with fulcio/pki is not supported yet: this requirement never accepts an image';

function clip(text: string): string {
  return text.length <= MAX_ITEM_CHARS ? text : `${text.slice(0, MAX_ITEM_CHARS - 1)}…`;
}

/** `signature-2` / `sigstore-attachment-1`. */
export function locationLabel(location: SignatureLocation): string {
  return location.source === 'lookaside' ? `signature-${location.index}` : `sigstore-attachment-${location.index}`;
}

function locationKey(location: SignatureLocation): string {
  return `${location.source}#${location.index}#${location.url}`;
}

/** `signature-2 (http://…/signature-2): <message> (HTTP 200, Content-Type text/html)`. */
export function describeTrouble(trouble: SignatureTrouble): string {
  const facts: string[] = [];
  if (trouble.httpStatus !== undefined) facts.push(`HTTP ${trouble.httpStatus}`);
  if (trouble.contentType !== undefined) facts.push(`Content-Type ${trouble.contentType}`);
  if (trouble.attempts > 1) facts.push(`${trouble.attempts} attempts`);
  const tail = facts.length > 0 ? ` (${facts.join(', ')})` : '';
  return `${locationLabel(trouble.location)} (${trouble.location.url}): ${clip(trouble.message)}${tail}`;
}

export function describeRequirement(requirement: PolicyRequirement): string {
  switch (requirement.type) {
    case 'signedBy': {
      const keys = requirement.keys;
      const source =
        keys.kind === 'path' ? `keyPath ${JSON.stringify(keys.path)}` : keys.kind === 'paths' ? `${keys.paths.length} keyPaths` : 'keyData';
      return `signedBy ${requirement.keyType} (${source}, ${describeSignedIdentity(requirement.signedIdentity)})`;
    }
    case 'sigstoreSigned':
      return `sigstoreSigned (${requirement.trust.kind}, ${describeSignedIdentity(requirement.signedIdentity)})`;
    case 'signedBaseLayer':
      return `signedBaseLayer (${describeSignedIdentity(requirement.baseLayerIdentity)})`;
    default:
      return requirement.type;
  }
}

/** Upstream's summary of a signature requirement that accepted nothing (policy_eval_signedby.go). */
export function summarizeRejections(rejections: readonly RejectedCheck[]): string {
  if (rejections.length === 0) return NO_SIGNATURE_TEXT;
  if (rejections.length === 1) return (rejections[0] as RejectedCheck).reason;
  const listed = rejections.slice(0, MAX_LISTED_REASONS).map((r) => clip(r.reason));
  const more = rejections.length - listed.length;
  return `None of the signatures were accepted, reasons: ${listed.join('; ')}${more > 0 ? `; and ${more} more` : ''}`;
}

function evaluate(reference: ImageReference, item: RequirementChecks): RequirementOutcome {
  const { requirement } = item;
  const description = describeRequirement(requirement);
  const rejections = item.checks.filter((c): c is RejectedCheck => c.verdict === 'rejected');
  const base = { type: requirement.type, description, rejections };
  switch (requirement.type) {
    case 'insecureAcceptAnything':
      return { ...base, satisfied: true };
    case 'reject':
      return { ...base, satisfied: false, reason: `Running image docker://${formatReference(reference)} is rejected by policy.` };
    case 'signedBaseLayer':
      // containers/image never implemented it and always denies, with exactly this text: so do we.
      return { ...base, satisfied: false, reason: 'signedBaseLayer not implemented yet!' };
    case 'sigstoreSigned': {
      // Fail closed for trust roots that are not verified yet; whatever checks were passed in are ignored.
      if (requirement.trust.kind !== 'keys') return { ...base, satisfied: false, reason: SIGSTORE_UNSUPPORTED_TEXT };
      const accepted = item.checks.find((c): c is AcceptedCheck => c.verdict === 'accepted');
      if (accepted !== undefined) return { ...base, satisfied: true, satisfiedBy: accepted };
      const skipped = item.skipped ?? { nonSigstore: 0, nonSignatureAttachments: 0 };
      if (rejections.length === 0 && skipped.nonSigstore + skipped.nonSignatureAttachments > 0) {
        // policy_eval_sigstore.go: say what was there but could not be used.
        return {
          ...base,
          satisfied: false,
          reason: `${NO_SIGNATURE_TEXT} (${skipped.nonSigstore} non-sigstore signatures, ${skipped.nonSignatureAttachments} sigstore non-signature attachments)`,
        };
      }
      return { ...base, satisfied: false, reason: summarizeRejections(rejections) };
    }
    case 'signedBy': {
      if (requirement.keyType !== 'GPGKeys') {
        return { ...base, satisfied: false, reason: `Unimplemented "keyType" value "${requirement.keyType}"` };
      }
      const accepted = item.checks.find((c): c is AcceptedCheck => c.verdict === 'accepted');
      if (accepted !== undefined) return { ...base, satisfied: true, satisfiedBy: accepted };
      return { ...base, satisfied: false, reason: summarizeRejections(rejections) };
    }
  }
}

/** `; additionally 2 signatures could not be read: a; b; and 5 more`. */
export function troublesAppendix(troubles: readonly SignatureTrouble[]): string {
  if (troubles.length === 0) return '';
  const listed = troubles.slice(0, MAX_LISTED_TROUBLES).map(describeTrouble);
  const more = troubles.length - listed.length;
  const noun = troubles.length === 1 ? 'signature' : 'signatures';
  return `; additionally ${troubles.length} ${noun} could not be read: ${listed.join('; ')}${more > 0 ? `; and ${more} more` : ''}`;
}

function allowedWarnings(input: DecideInput, outcomes: readonly RequirementOutcome[]): Warning[] {
  const warnings: Warning[] = [];
  for (const trouble of input.troubles) {
    warnings.push({
      code: 'PGW001',
      message: `signature could not be read, but the policy was satisfied by other signatures: ${describeTrouble(trouble)}`,
      location: trouble.location,
    });
  }
  // A signature rejected by one requirement may be the one another requirement accepted (two
  // signedBy requirements with different keys): warn only about signatures nobody accepted.
  const acceptedSomewhere = new Set<string>();
  for (const item of input.requirements) {
    for (const check of item.checks) if (check.verdict === 'accepted') acceptedSomewhere.add(locationKey(check.location));
  }
  const reasonsByLocation = new Map<string, { location: SignatureLocation; reasons: string[] }>();
  for (const outcome of outcomes) {
    for (const rejection of outcome.rejections) {
      const key = locationKey(rejection.location);
      if (acceptedSomewhere.has(key)) continue;
      const entry = reasonsByLocation.get(key) ?? { location: rejection.location, reasons: [] };
      if (!entry.reasons.includes(rejection.reason)) entry.reasons.push(rejection.reason);
      reasonsByLocation.set(key, entry);
    }
  }
  const rejected = [...reasonsByLocation.values()].sort((a, b) =>
    a.location.source === b.location.source ? a.location.index - b.location.index : a.location.source === 'lookaside' ? -1 : 1,
  );
  for (const { location, reasons } of rejected) {
    warnings.push({
      code: 'PGW002',
      message: `signature was rejected, but the policy was satisfied by other signatures: ${locationLabel(location)} (${location.url}): ${reasons.map(clip).join('; ')}`,
      location,
    });
  }
  for (const location of input.retried ?? []) {
    warnings.push({ code: 'PGW003', message: `signature request needed retries: ${locationLabel(location)} (${location.url})`, location });
  }
  for (const notice of input.notices ?? []) {
    warnings.push({ code: 'PGW004', message: notice });
  }
  return warnings;
}

export function decide(input: DecideInput): Verdict {
  const troubles = Object.freeze([...input.troubles]);
  if (input.requirements.length === 0) {
    // Fail closed, as upstream does both at parse time and at evaluation.
    return Object.freeze({
      allowed: false,
      scope: input.scope,
      requirements: Object.freeze([]),
      troubles,
      warnings: Object.freeze([]),
      denial: EMPTY_REQUIREMENTS_TEXT + troublesAppendix(troubles),
    });
  }
  const outcomes = Object.freeze(input.requirements.map((item) => Object.freeze(evaluate(input.reference, item))));
  const firstDenied = outcomes.find((o) => !o.satisfied);
  if (firstDenied === undefined) {
    return Object.freeze({
      allowed: true,
      scope: input.scope,
      requirements: outcomes,
      troubles,
      warnings: Object.freeze(allowedWarnings(input, outcomes)),
    });
  }
  // Upstream stops at the first denying requirement and reports its error alone.
  return Object.freeze({
    allowed: false,
    scope: input.scope,
    requirements: outcomes,
    troubles,
    warnings: Object.freeze([]),
    denial: (firstDenied.reason ?? 'denied by policy') + troublesAppendix(troubles),
  });
}
