/**
 * The cosign payload (c/image `signature/internal/sigstore_payload.go`): the simple-signing shape
 * with type `cosign container image signature`, and `"optional": null` accepted because cosign
 * emits it. Strict: unknown or duplicate keys are errors. Parse only after the signature verified.
 */
import { parseDigest, type Digest } from '../domain/digest.js';
import { JsonNumber, isJsonObject, objectKeyProblems, parseStrictJsonBytes, type JsonObject, type JsonValue } from '../domain/strict-json.js';
import { SIGSTORE_SIGNATURE_TYPE } from './constants.js';

export class SigstorePayloadError extends Error {}

export interface UntrustedSigstorePayload {
  readonly untrustedDockerManifestDigest: Digest;
  readonly untrustedDockerReference: string;
  readonly untrustedCreator?: string;
  readonly untrustedTimestamp?: number;
}

function exactObject(value: JsonValue | undefined, keys: readonly string[]): JsonObject {
  const problems = objectKeyProblems(value ?? null, keys, keys);
  if (problems.length > 0) throw new SigstorePayloadError(problems[0]);
  return value as JsonObject;
}

function stringField(obj: JsonObject, key: string, where: string): string {
  const value = obj.get(key);
  if (typeof value !== 'string') throw new SigstorePayloadError(`Field ${where} is not a string`);
  return value;
}

export function parseSigstorePayload(bytes: Uint8Array): UntrustedSigstorePayload {
  let doc: JsonValue;
  try {
    doc = parseStrictJsonBytes(bytes);
  } catch (err) {
    throw new SigstorePayloadError((err as Error).message);
  }
  const top = exactObject(doc, ['critical', 'optional']);
  let creator: JsonValue | undefined;
  let timestamp: JsonValue | undefined;
  const optional = top.get('optional') as JsonValue;
  if (optional !== null) {
    if (!isJsonObject(optional)) throw new SigstorePayloadError(objectKeyProblems(optional, [])[0]);
    creator = optional.get('creator');
    timestamp = optional.get('timestamp');
    if (creator !== undefined && typeof creator !== 'string') throw new SigstorePayloadError('Field optional.creator is not a string');
    if (timestamp !== undefined && !(timestamp instanceof JsonNumber && timestamp.isSafeInteger())) {
      throw new SigstorePayloadError('Field optional.timestamp is not an integer');
    }
  }
  const critical = exactObject(top.get('critical'), ['type', 'image', 'identity']);
  const type = stringField(critical, 'type', 'critical.type');
  if (type !== SIGSTORE_SIGNATURE_TYPE) throw new SigstorePayloadError(`Unrecognized signature type ${type}`);
  const image = exactObject(critical.get('image'), ['docker-manifest-digest']);
  const rawDigest = stringField(image, 'docker-manifest-digest', 'critical.image.docker-manifest-digest');
  let untrustedDockerManifestDigest: Digest;
  try {
    untrustedDockerManifestDigest = parseDigest(rawDigest);
  } catch (err) {
    throw new SigstorePayloadError(`invalid docker-manifest-digest value ${JSON.stringify(rawDigest)}: ${(err as Error).message}`);
  }
  const identity = exactObject(critical.get('identity'), ['docker-reference']);
  const untrustedDockerReference = stringField(identity, 'docker-reference', 'critical.identity.docker-reference');
  return {
    untrustedDockerManifestDigest,
    untrustedDockerReference,
    ...(typeof creator === 'string' ? { untrustedCreator: creator } : {}),
    ...(timestamp instanceof JsonNumber ? { untrustedTimestamp: timestamp.value } : {}),
  };
}
