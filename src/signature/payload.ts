/**
 * The signed payload both signature formats carry (c/image simple.go, sigstore_payload.go):
 * `{"critical": {"type", "image": {"docker-manifest-digest"}, "identity": {"docker-reference"}},
 * "optional": {…}}`, parsed strictly, and judged against the manifest and the identity rule.
 * Only called after the cryptographic check passed; fields stay `untrusted…` until judged here.
 */
import { createHash } from 'node:crypto';
import { digestAlgorithm, parseDigest, type Digest } from '../domain/digest.js';
import { PullguardError } from '../domain/errors.js';
import type { SignatureCheck, SignatureLocation, SignerIdentity } from '../domain/signature.js';
import { JsonNumber, isJsonObject, objectKeyProblems, parseStrictJsonBytes, type JsonObject, type JsonValue } from '../domain/strict-json.js';

export interface PayloadFormat {
  /** `atomic container signature` or `cosign container image signature`. */
  readonly type: string;
  /** cosign writes `"optional": null`. */
  readonly optionalMayBeNull: boolean;
}

export const SIMPLE_SIGNING_PAYLOAD: PayloadFormat = Object.freeze({ type: 'atomic container signature', optionalMayBeNull: false });

/** A malformed payload: coded like every parser error; the verifiers turn it into a rejection. */
export class PayloadError extends PullguardError<'INVALID_ARGUMENT'> {
  constructor(message: string | undefined) {
    super('INVALID_ARGUMENT', message ?? 'invalid signature payload');
  }
}

export interface UntrustedPayload {
  readonly untrustedDockerManifestDigest: Digest;
  readonly untrustedDockerReference: string;
  readonly untrustedCreator?: string;
  readonly untrustedTimestamp?: number;
}

export interface PayloadExpectations {
  /** The digest of the manifest being pulled (the platform instance for manifest lists). */
  readonly manifestDigest: Digest;
  /** The manifest bytes, to re-hash when the signature uses another digest algorithm. */
  readonly manifestBytes?: Uint8Array;
  /** The requirement's signedIdentity rule applied to the user's reference. */
  readonly matchesIdentity: (untrustedDockerReference: string) => boolean;
}

function exactObject(value: JsonValue | undefined, keys: readonly string[]): JsonObject {
  const problems = objectKeyProblems(value ?? null, keys, keys);
  if (problems.length > 0) throw new PayloadError(problems[0]);
  return value as JsonObject;
}

function stringField(obj: JsonObject, key: string, where: string): string {
  const value = obj.get(key);
  if (typeof value !== 'string') throw new PayloadError(`Field ${where} is not a string`);
  return value;
}

/** Strict payload parse; throws PayloadError with upstream's texts. */
export function parseUntrustedPayload(bytes: Uint8Array, format: PayloadFormat = SIMPLE_SIGNING_PAYLOAD): UntrustedPayload {
  let doc: JsonValue;
  try {
    doc = parseStrictJsonBytes(bytes);
  } catch (err) {
    throw new PayloadError((err as Error).message);
  }
  const top = exactObject(doc, ['critical', 'optional']);
  const critical = exactObject(top.get('critical'), ['type', 'image', 'identity']);
  const type = stringField(critical, 'type', 'critical.type');
  if (type !== format.type) throw new PayloadError(`Unrecognized signature type ${type}`);
  const image = exactObject(critical.get('image'), ['docker-manifest-digest']);
  const rawDigest = stringField(image, 'docker-manifest-digest', 'critical.image.docker-manifest-digest');
  let untrustedDockerManifestDigest: Digest;
  try {
    untrustedDockerManifestDigest = parseDigest(rawDigest);
  } catch (err) {
    throw new PayloadError(`invalid docker-manifest-digest value ${JSON.stringify(rawDigest)}: ${(err as Error).message}`);
  }
  const identity = exactObject(critical.get('identity'), ['docker-reference']);
  const untrustedDockerReference = stringField(identity, 'docker-reference', 'critical.identity.docker-reference');

  const optional = top.get('optional') as JsonValue;
  let creator: JsonValue | undefined;
  let timestamp: JsonValue | undefined;
  if (!(optional === null && format.optionalMayBeNull)) {
    if (!isJsonObject(optional)) throw new PayloadError(objectKeyProblems(optional, [])[0]);
    creator = optional.get('creator');
    timestamp = optional.get('timestamp');
  }
  if (creator !== undefined && typeof creator !== 'string') throw new PayloadError('Field optional.creator is not a string');
  if (timestamp !== undefined && !(timestamp instanceof JsonNumber && timestamp.isSafeInteger())) {
    throw new PayloadError('Field optional.timestamp is not an integer');
  }
  return {
    untrustedDockerManifestDigest,
    untrustedDockerReference,
    ...(typeof creator === 'string' ? { untrustedCreator: creator } : {}),
    ...(timestamp instanceof JsonNumber ? { untrustedTimestamp: timestamp.value } : {}),
  };
}

/** c/image manifest.MatchesDigest: the same digest, or the manifest re-hashed with the signature's algorithm. */
function manifestMatches(signed: Digest, expect: PayloadExpectations): boolean {
  if (signed === expect.manifestDigest) return true;
  if (expect.manifestBytes === undefined || digestAlgorithm(signed) === digestAlgorithm(expect.manifestDigest)) return false;
  return `${digestAlgorithm(signed)}:${createHash(digestAlgorithm(signed)).update(expect.manifestBytes).digest('hex')}` === signed;
}

/**
 * The last steps of verification once `signer` made a valid signature over `payload`: strict parse,
 * manifest digest, identity — upstream's order and texts. Returns accepted or rejected.
 */
export function judgeSignedPayload(
  payload: Uint8Array,
  format: PayloadFormat,
  signer: SignerIdentity,
  location: SignatureLocation,
  expect: PayloadExpectations,
): SignatureCheck {
  const reject = (kind: 'invalid-payload' | 'digest-mismatch' | 'identity-mismatch', reason: string): SignatureCheck =>
    Object.freeze({ verdict: 'rejected', location, kind, reason, signer });
  let untrusted: UntrustedPayload;
  try {
    untrusted = parseUntrustedPayload(payload, format);
  } catch (err) {
    if (err instanceof PayloadError) return reject('invalid-payload', err.message);
    throw err;
  }
  if (!manifestMatches(untrusted.untrustedDockerManifestDigest, expect)) {
    return reject('digest-mismatch', `Signature for digest ${untrusted.untrustedDockerManifestDigest} does not match`);
  }
  if (!expect.matchesIdentity(untrusted.untrustedDockerReference)) {
    return reject('identity-mismatch', `Signature for identity ${JSON.stringify(untrusted.untrustedDockerReference)} is not accepted`);
  }
  return Object.freeze({
    verdict: 'accepted',
    location,
    signer,
    signedDockerReference: untrusted.untrustedDockerReference,
    signedManifestDigest: untrusted.untrustedDockerManifestDigest,
    ...(untrusted.untrustedCreator !== undefined ? { creator: untrusted.untrustedCreator } : {}),
    ...(untrusted.untrustedTimestamp !== undefined ? { timestamp: untrusted.untrustedTimestamp } : {}),
  });
}
