/**
 * The policy decision: requirements × signature checks × fetch troubles → Verdict. Synchronous,
 * pure and deterministic (no clock, no randomness).
 *
 * Partial sufficiency (README, Signatures and Threat model): every implemented requirement is
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
  /**
   * "Must verify something" (upstream's RequireSignatureVerification): an image the requirements
   * would allow without any requirement having verified a signature (`insecureAcceptAnything`
   * scopes) is denied instead. Off by default.
   */
  readonly requireSignatureVerification?: boolean;
}

/** Bounds that keep a denial readable (~1 KiB) even with 128 bad signatures. */
const MAX_LISTED_REASONS = 4;
const MAX_LISTED_TROUBLES = 3;
const MAX_ITEM_CHARS = 200;
/** Typical lookaside URLs (host, repository, 71-character digest, index) fit whole. */
const MAX_URL_CHARS = 128;
/** The free text of one trouble; the facts after it (status, first byte) are never cut. */
const MAX_DETAIL_CHARS = 160;
const MAX_CONTENT_TYPE_CHARS = 48;
/**
 * A whole denial. The gRPC message kubelet shows is cut at 2048 characters after a 50-character
 * `SignatureValidationFailed: Source image rejected: ` prefix: below that, nothing at the end of the
 * denial (the troubles and their facts) is ever cut there.
 */
export const MAX_DENIAL_CHARS = 1900;

export const EMPTY_REQUIREMENTS_TEXT = 'List of verification policy requirements must not be empty';
export const NO_SIGNATURE_TEXT = 'A signature was required, but no signature exists';
/** The denial when signature verification is required and the policy verified nothing. */
export const VERIFICATION_REQUIRED_TEXT = 'Signature verification is required, but the policy accepts this image without verifying any signature';

/** Transport errors that mean the server was never reached (rather than a connection that broke). */
const UNREACHABLE_CODES: ReadonlySet<string> = new Set([
  'ECONNREFUSED',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EHOSTDOWN',
  'ETIMEDOUT',
  'UND_ERR_CONNECT_TIMEOUT',
]);

function clip(text: string, max: number = MAX_ITEM_CHARS): string {
  return text.length <= max ? text : `${text.slice(0, Math.max(0, max - 1))}…`;
}

function middleEllipsis(text: string, max: number): string {
  if (text.length <= max) return text;
  const keep = Math.max(0, max - 1);
  return `${text.slice(0, Math.ceil(keep / 2))}…${text.slice(text.length - Math.floor(keep / 2))}`;
}

/**
 * `http://host/…/app@sha256=abcd…/signature-2`: the host and the final segment stay, the middle is
 * cut, so a long lookaside base can neither hide which index failed nor push the facts after the
 * URL out of a bounded message. The full URL stays in the logs and the verification record.
 */
export function shortenUrl(url: string, max: number = MAX_URL_CHARS): string {
  if (url.length <= max) return url;
  const scheme = url.indexOf('://');
  const pathStart = url.indexOf('/', scheme === -1 ? 0 : scheme + 3);
  if (pathStart === -1) return middleEllipsis(url, max);
  const origin = middleEllipsis(url.slice(0, pathStart), Math.floor(max / 2));
  const segments = url.slice(pathStart + 1).split('/');
  const last = middleEllipsis(segments.pop() ?? '', Math.floor(max / 3));
  const parent = segments.pop();
  // What is left goes to the start of the segment before the last (`app@sha256=abcd…`), if it is worth it.
  const room = max - `${origin}/…/`.length - last.length - 1;
  const omitted = segments.length > 0;
  let middle = omitted ? '…/' : '';
  if (parent !== undefined && room >= 8) middle += `${clip(parent, room)}/`;
  else if (parent !== undefined && !omitted) middle = '…/';
  const shortened = `${origin}/${middle}${last}`;
  return shortened.length <= max ? shortened : middleEllipsis(url, max);
}

/** `signature-2` / `sigstore-attachment-1`. */
export function locationLabel(location: SignatureLocation): string {
  return location.source === 'lookaside' ? `signature-${location.index}` : `sigstore-attachment-${location.index}`;
}

/** `signature-2 http://host/…/signature-2`, within `max` characters. */
export function describeLocation(location: SignatureLocation, max: number = MAX_URL_CHARS): string {
  const label = locationLabel(location);
  return location.url === '' ? label : `${label} ${shortenUrl(location.url, Math.max(16, max - label.length - 1))}`;
}

function locationKey(location: SignatureLocation): string {
  return `${location.source}#${location.index}#${location.url}`;
}

/** Go's `%#x` of one byte, as in upstream's `starting with binary 0x3c`. */
function formatByte(byte: number): string {
  return `0x${byte.toString(16)}`;
}

/** The trouble's free text, naming its URL at most once (shortened), and whether it does. */
function troubleText(trouble: SignatureTrouble, maxChars: number): { readonly text: string; readonly namesUrl: boolean } {
  const url = trouble.location.url;
  if (trouble.detail !== undefined) return { text: clip(trouble.detail, maxChars), namesUrl: false };
  // A producer without `detail`: its message may carry the URL itself; then that is where it is named.
  if (url !== '' && trouble.message.includes(url)) {
    return { text: clip(trouble.message.split(url).join(shortenUrl(url)), maxChars + MAX_URL_CHARS), namesUrl: true };
  }
  return { text: clip(trouble.message, maxChars), namesUrl: false };
}

/** ` (HTTP 200, Content-Type text/html, 2 attempts)`; the first byte only when `shown` lacks it. */
function troubleFacts(trouble: SignatureTrouble, shown: string): string {
  const facts: string[] = [];
  if (trouble.httpStatus !== undefined) facts.push(`HTTP ${trouble.httpStatus}`);
  if (trouble.contentType !== undefined) facts.push(`Content-Type ${clip(trouble.contentType, MAX_CONTENT_TYPE_CHARS)}`);
  if (trouble.firstByte !== undefined && !shown.includes(formatByte(trouble.firstByte))) facts.push(`first byte ${formatByte(trouble.firstByte)}`);
  if (trouble.attempts > 1) facts.push(`${trouble.attempts} attempts`);
  return facts.length > 0 ? ` (${facts.join(', ')})` : '';
}

function isUnreachable(trouble: SignatureTrouble): boolean {
  return trouble.kind === 'transport' && trouble.errorCode !== undefined && UNREACHABLE_CODES.has(trouble.errorCode);
}

/**
 * What went wrong without naming the location, within about `maxChars`: the free text is
 * shortened, the kind and the facts (HTTP status, first byte) are kept. For texts whose location
 * is named elsewhere (gRPC violations).
 */
export function describeTroubleCause(trouble: SignatureTrouble, maxChars: number = MAX_DETAIL_CHARS): string {
  const prefix = isUnreachable(trouble) ? 'could not be reached: ' : '';
  const url = trouble.location.url;
  const full = trouble.detail ?? (url === '' ? trouble.message : trouble.message.split(url).join(shortenUrl(url, 48)));
  // Room for the longest facts (with the first byte), so that whatever the clip drops they still fit.
  const text = clip(full, Math.max(16, maxChars - prefix.length - troubleFacts(trouble, '').length));
  return `${prefix}${text}${troubleFacts(trouble, text)}`;
}

/**
 * `signature-2 (http://…/signature-2): <detail> (HTTP 200, Content-Type text/html)`, or
 * `signature-1 (http://…/signature-1) could not be reached: connect ECONNREFUSED 127.0.0.1:9`.
 * Bounded: the URL is shortened in the middle and named once, the free text is clipped, and the
 * facts that say what happened (HTTP status, first byte) come after both and are never cut.
 */
export function describeTrouble(trouble: SignatureTrouble): string {
  const { text, namesUrl } = troubleText(trouble, MAX_DETAIL_CHARS);
  const label = locationLabel(trouble.location);
  const head = namesUrl || trouble.location.url === '' ? label : `${label} (${shortenUrl(trouble.location.url)})`;
  const tail = troubleFacts(trouble, text);
  return isUnreachable(trouble) ? `${head} could not be reached: ${text}${tail}` : `${head}: ${text}${tail}`;
}

/** What a trouble failed with, apart from where: troubles with equal keys failed the same way. */
function failureKey(trouble: SignatureTrouble): string {
  const { kind, httpStatus, contentType, firstByte, errorCode } = trouble;
  const text = trouble.detail ?? (trouble.location.url === '' ? trouble.message : trouble.message.split(trouble.location.url).join(''));
  return JSON.stringify([kind, httpStatus, contentType, firstByte, errorCode, text]);
}

function stopClause(count: number): string {
  return count === 1 ? '; the read stopped at this failure' : `; the read stopped after ${count} consecutive failures`;
}

interface TroubleItem {
  /** The trouble the item is about (the first of a folded run). */
  readonly trouble: SignatureTrouble;
  readonly text: string;
}

/**
 * One item per trouble, except that a run of troubles that failed alike and made the source stop
 * reading is one item about its first index: when a lookaside server is down, `signature-2` and
 * `-3` were only probes and may not exist, so they are not listed as signatures that exist.
 */
function troubleItems(troubles: readonly SignatureTrouble[]): TroubleItem[] {
  const items: TroubleItem[] = [];
  for (let i = 0; i < troubles.length; i++) {
    const first = troubles[i] as SignatureTrouble;
    const run = foldableRun(troubles, i);
    if (run !== undefined) {
      items.push({ trouble: first, text: describeTrouble(first) + stopClause(run.length) });
      i += run.length - 1;
      continue;
    }
    const stop = first.stoppedReadAfter !== undefined ? stopClause(first.stoppedReadAfter) : '';
    items.push({ trouble: first, text: describeTrouble(first) + stop });
  }
  return items;
}

/** The troubles from `start` on, if they are one source's consecutive indices ending in a stop and all failed alike. */
function foldableRun(troubles: readonly SignatureTrouble[], start: number): readonly SignatureTrouble[] | undefined {
  const first = troubles[start] as SignatureTrouble;
  for (let end = start; end < troubles.length; end++) {
    const trouble = troubles[end] as SignatureTrouble;
    const previous = troubles[end - 1];
    if (end > start) {
      const consecutive = previous !== undefined && trouble.location.source === first.location.source && trouble.location.index === previous.location.index + 1;
      if (!consecutive || failureKey(trouble) !== failureKey(first)) return undefined;
    }
    if (trouble.stoppedReadAfter !== undefined) {
      const run = troubles.slice(start, end + 1);
      return run.length > 1 && run.length === trouble.stoppedReadAfter ? run : undefined;
    }
  }
  return undefined;
}

export function describeRequirement(requirement: PolicyRequirement): string {
  switch (requirement.type) {
    case 'signedBy': {
      const keys = requirement.keys;
      const source = keys.kind === 'path' ? `keyPath ${JSON.stringify(keys.path)}` : keys.kind === 'paths' ? `${keys.paths.length} keyPaths` : 'keyData';
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
  const items = troubleItems(troubles);
  if (items.length === 0) return '';
  const listed = items.slice(0, MAX_LISTED_TROUBLES).map((item) => item.text);
  const more = items.length - listed.length;
  const noun = items.length === 1 ? 'signature' : 'signatures';
  return `; additionally ${items.length} ${noun} could not be read: ${listed.join('; ')}${more > 0 ? `; and ${more} more` : ''}`;
}

/** Upstream's first clause, cut only if needed so that the troubles after it fit MAX_DENIAL_CHARS. */
function denialText(reason: string, troubles: readonly SignatureTrouble[]): string {
  const appendix = troublesAppendix(troubles);
  return clip(reason, MAX_DENIAL_CHARS - appendix.length) + appendix;
}

/**
 * What an allowed verdict rests on, for its warnings: `signature-1 (key C410…0D95)`, each accepting
 * signature once, so a reader of a warning sees which signature stood in for the broken one.
 */
export function describeSatisfiers(outcomes: readonly RequirementOutcome[]): string {
  const named = new Map<string, string>();
  for (const outcome of outcomes) {
    const check = outcome.satisfiedBy;
    if (check === undefined) continue;
    named.set(locationKey(check.location), `${locationLabel(check.location)} (key ${check.signer.primaryKeyFingerprint})`);
  }
  return named.size === 0 ? 'requirements that read no signature' : [...named.values()].join(' and ');
}

function allowedWarnings(input: DecideInput, outcomes: readonly RequirementOutcome[]): Warning[] {
  const warnings: Warning[] = [];
  const satisfiers = describeSatisfiers(outcomes);
  for (const { trouble, text } of troubleItems(input.troubles)) {
    warnings.push({
      code: 'PGW001',
      message: `signature could not be read, but the policy was satisfied by ${satisfiers}: ${text}`,
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
      message: `signature was rejected, but the policy was satisfied by ${satisfiers}: ${locationLabel(location)} (${shortenUrl(location.url)}): ${reasons.map((r) => clip(r)).join('; ')}`,
      location,
    });
  }
  for (const location of input.retried ?? []) {
    warnings.push({ code: 'PGW003', message: `signature request needed retries: ${locationLabel(location)} (${shortenUrl(location.url)})`, location });
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
      denial: denialText(EMPTY_REQUIREMENTS_TEXT, troubles),
    });
  }
  const outcomes = Object.freeze(input.requirements.map((item) => Object.freeze(evaluate(input.reference, item))));
  const firstDenied = outcomes.find((o) => !o.satisfied);
  // Every requirement that can be satisfied other than insecureAcceptAnything is satisfied by a
  // verified signature: "something verified" is "some outcome has satisfiedBy".
  const verifiedNothing = input.requireSignatureVerification === true && !outcomes.some((o) => o.satisfiedBy !== undefined);
  const denied = (reason: string): Verdict =>
    Object.freeze({ allowed: false, scope: input.scope, requirements: outcomes, troubles, warnings: Object.freeze([]), denial: denialText(reason, troubles) });
  if (firstDenied === undefined && verifiedNothing) return denied(VERIFICATION_REQUIRED_TEXT);
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
  return denied(firstDenied.reason ?? 'denied by policy');
}
