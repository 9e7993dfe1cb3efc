/**
 * Simple-signing ("atomic container signature") verification, in upstream order
 * (c/image simple.go verifyAndExtractSignature): OpenPGP signed message → exactly one signature,
 * made by a trusted primary key (subkeys map to their primary), not expired → only then the strict
 * JSON payload → manifest digest → identity. Payload fields are `untrusted…` until all of that
 * passed. Never throws for a bad signature: it returns a rejected SignatureCheck.
 */
import { createHash } from 'node:crypto';
import { readMessage, verify, type KeyID, type PublicKey } from 'openpgp';
import { digestAlgorithm, parseDigest, type Digest } from '../domain/digest.js';
import { PullguardError } from '../domain/errors.js';
import type { RejectionKind, SignatureCheck, SignerIdentity, UntrustedSignatureBlob } from '../domain/signature.js';
import {
  JsonNumber,
  isJsonObject,
  objectKeyProblems,
  parseStrictJsonBytes,
  type JsonObject,
  type JsonValue,
} from '../domain/strict-json.js';
import type { GpgKeySet } from './gpg-keys.js';
import { sniffSignatureFormat } from './sniff.js';

export const SIGNATURE_TYPE = 'atomic container signature';

export interface SimpleSigningExpectations {
  /** The digest of the manifest being pulled (the platform instance for manifest lists). */
  readonly manifestDigest: Digest;
  /** The manifest bytes, to re-hash when the signature uses another digest algorithm. */
  readonly manifestBytes?: Uint8Array;
  /** The requirement's signedIdentity rule applied to the user's reference. */
  readonly matchesIdentity: (untrustedDockerReference: string) => boolean;
  /** Verification time (injected clock); defaults to now. */
  readonly now?: Date;
}

/** A malformed payload: coded like every parser error; verifySimpleSigning turns it into a rejection. */
class PayloadError extends PullguardError<'INVALID_ARGUMENT'> {
  constructor(message: string | undefined) {
    super('INVALID_ARGUMENT', message ?? 'invalid signature payload');
  }
}

interface UntrustedPayload {
  readonly untrustedDockerManifestDigest: Digest;
  readonly untrustedDockerReference: string;
  readonly untrustedCreator?: string;
  readonly untrustedTimestamp?: number;
}

function exactObject(value: JsonValue, keys: readonly string[]): JsonObject {
  const problems = objectKeyProblems(value, keys, keys);
  if (problems.length > 0) throw new PayloadError(problems[0]);
  return value as JsonObject;
}

function stringField(obj: JsonObject, key: string, where: string): string {
  const value = obj.get(key);
  if (typeof value !== 'string') throw new PayloadError(`Field ${where} is not a string`);
  return value;
}

/** Strict payload parse (simple.go l.116-182). Call only after cryptographic verification. */
export function parseUntrustedPayload(bytes: Uint8Array): UntrustedPayload {
  let doc: JsonValue;
  try {
    doc = parseStrictJsonBytes(bytes);
  } catch (err) {
    throw new PayloadError((err as Error).message);
  }
  const top = exactObject(doc, ['critical', 'optional']);
  const critical = exactObject(top.get('critical') as JsonValue, ['type', 'image', 'identity']);
  const type = stringField(critical, 'type', 'critical.type');
  if (type !== SIGNATURE_TYPE) throw new PayloadError(`Unrecognized signature type ${type}`);
  const image = exactObject(critical.get('image') as JsonValue, ['docker-manifest-digest']);
  const rawDigest = stringField(image, 'docker-manifest-digest', 'critical.image.docker-manifest-digest');
  let untrustedDockerManifestDigest: Digest;
  try {
    untrustedDockerManifestDigest = parseDigest(rawDigest);
  } catch (err) {
    throw new PayloadError(`invalid docker-manifest-digest value ${JSON.stringify(rawDigest)}: ${(err as Error).message}`);
  }
  const identity = exactObject(critical.get('identity') as JsonValue, ['docker-reference']);
  const untrustedDockerReference = stringField(identity, 'docker-reference', 'critical.identity.docker-reference');

  const optional = top.get('optional') as JsonValue;
  if (!isJsonObject(optional)) throw new PayloadError(objectKeyProblems(optional, [])[0]);
  const creator = optional.get('creator');
  if (creator !== undefined && typeof creator !== 'string') throw new PayloadError('Field optional.creator is not a string');
  const timestamp = optional.get('timestamp');
  if (timestamp !== undefined && !(timestamp instanceof JsonNumber && timestamp.isSafeInteger())) {
    throw new PayloadError('Field optional.timestamp is not an integer');
  }
  return {
    untrustedDockerManifestDigest,
    untrustedDockerReference,
    ...(creator !== undefined ? { untrustedCreator: creator } : {}),
    ...(timestamp instanceof JsonNumber ? { untrustedTimestamp: timestamp.value } : {}),
  };
}

function findSigner(keys: GpgKeySet, keyId: KeyID): { key: PublicKey; signer: SignerIdentity } | undefined {
  for (const key of keys.keys) {
    const [match] = key.getKeys(keyId);
    if (match === undefined) continue;
    return {
      key,
      signer: { keyFingerprint: match.getFingerprint().toUpperCase(), primaryKeyFingerprint: key.getFingerprint().toUpperCase() },
    };
  }
  return undefined;
}

function manifestMatches(signed: Digest, expect: SimpleSigningExpectations): boolean {
  if (signed === expect.manifestDigest) return true;
  if (expect.manifestBytes === undefined || digestAlgorithm(signed) === digestAlgorithm(expect.manifestDigest)) return false;
  const hex = createHash(digestAlgorithm(signed)).update(expect.manifestBytes).digest('hex');
  return `${digestAlgorithm(signed)}:${hex}` === signed;
}

export async function verifySimpleSigning(
  blob: UntrustedSignatureBlob,
  keys: GpgKeySet,
  expect: SimpleSigningExpectations,
): Promise<SignatureCheck> {
  const location = blob.location;
  const reject = (kind: RejectionKind, reason: string, signer?: SignerIdentity): SignatureCheck =>
    Object.freeze({ verdict: 'rejected', location, kind, reason, ...(signer !== undefined ? { signer } : {}) });

  if (blob.format !== 'simple-signing') return reject('unsupported', `signature format ${blob.format} is not handled by signedBy`);
  // Blobs may arrive raw (lookaside) or in the tagged `00` storage form.
  const sniffed = sniffSignatureFormat(blob.bytes);
  if (!sniffed.ok) return reject('invalid-signature', sniffed.message);
  if (sniffed.format !== 'simple-signing') return reject('unsupported', 'signature format sigstore is not handled by signedBy');

  let signatures;
  let data: Uint8Array;
  try {
    const message = await readMessage({ binaryMessage: sniffed.payload });
    const result = await verify({
      message,
      verificationKeys: keys.keys as PublicKey[],
      format: 'binary',
      date: expect.now ?? new Date(),
    });
    signatures = result.signatures;
    data = result.data;
  } catch (err) {
    return reject('invalid-signature', `signature error: ${(err as Error).message}`);
  }
  if (signatures.length === 0) return reject('invalid-signature', 'not signed');
  if (signatures.length !== 1) return reject('invalid-signature', `Unexpected GPG signature count ${signatures.length}`);
  const [only] = signatures;
  if (only === undefined) return reject('invalid-signature', 'not signed');
  const keyIdHex = only.keyID.toHex();

  const found = findSigner(keys, only.keyID);
  if (found === undefined) {
    // Not in this requirement's keys. Name the key by its fingerprint when the signature says it.
    let fingerprint: string | undefined;
    try {
      const packet = (await only.signature).packets[0];
      const raw = packet?.issuerFingerprint;
      if (raw instanceof Uint8Array && raw.length > 0) fingerprint = Buffer.from(raw).toString('hex').toUpperCase();
    } catch {
      // No parseable signature packet: fall through to the key ID text.
    }
    only.verified.catch(() => undefined); // openpgp rejects it for the missing key; already handled.
    return reject(
      'untrusted-key',
      fingerprint !== undefined ? `signature by key ${fingerprint} is not accepted` : `Key not found for key ID ${keyIdHex.toUpperCase()} in signature`,
    );
  }
  const { signer } = found;
  try {
    await only.verified;
  } catch (err) {
    const text = (err as Error).message;
    if (/expired/i.test(text)) return reject('expired', `Signature expired: ${text}`, signer);
    return reject('invalid-signature', `signature error: ${text}`, signer);
  }
  if (!keys.primaryFingerprints.has(signer.primaryKeyFingerprint)) {
    return reject(
      'untrusted-key',
      signer.keyFingerprint === signer.primaryKeyFingerprint
        ? `signature by key ${signer.keyFingerprint} is not accepted`
        : `signature by key ${signer.keyFingerprint} of ${signer.primaryKeyFingerprint} is not accepted`,
      signer,
    );
  }

  let payload: UntrustedPayload;
  try {
    payload = parseUntrustedPayload(data);
  } catch (err) {
    if (err instanceof PayloadError) return reject('invalid-payload', err.message, signer);
    throw err;
  }
  if (!manifestMatches(payload.untrustedDockerManifestDigest, expect)) {
    return reject('digest-mismatch', `Signature for digest ${payload.untrustedDockerManifestDigest} does not match`, signer);
  }
  if (!expect.matchesIdentity(payload.untrustedDockerReference)) {
    return reject('identity-mismatch', `Signature for identity ${JSON.stringify(payload.untrustedDockerReference)} is not accepted`, signer);
  }
  return Object.freeze({
    verdict: 'accepted',
    location,
    signer,
    signedDockerReference: payload.untrustedDockerReference,
    signedManifestDigest: payload.untrustedDockerManifestDigest,
    ...(payload.untrustedCreator !== undefined ? { creator: payload.untrustedCreator } : {}),
    ...(payload.untrustedTimestamp !== undefined ? { timestamp: payload.untrustedTimestamp } : {}),
  });
}
