/**
 * Rekor SET ("signed entry timestamp") verification for key-based sigstoreSigned requirements, after
 * c/image `signature/internal/rekor_set.go`: the SET signs the RFC 8785 canonical JSON of
 * `{body, integratedTime, logID, logIndex}` with a Rekor ECDSA key; the body must be a hashedrekord
 * 0.0.1 entry carrying the same signature, the same public key and the SHA-256 of the payload.
 * Offline only: no Rekor server is contacted.
 */
import { createHash, verify } from 'node:crypto';
import { JsonNumber, isJsonObject, objectKeyProblems, parseStrictJson, type JsonObject, type JsonValue } from '../../domain/strict-json.js';
import type { SigstorePublicKey } from './public-keys.js';

export class RekorSetError extends Error {}

const STRICT_BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

function base64Field(value: JsonValue | undefined, what: string): Buffer {
  // Go decodes []byte JSON fields with StdEncoding (padding required; CR/LF ignored).
  const text = typeof value === 'string' ? value.replace(/[\r\n]/g, '') : undefined;
  if (text === undefined || !STRICT_BASE64.test(text)) throw new RekorSetError(`parsing Rekor SET: ${what} is not valid base64`);
  return Buffer.from(text, 'base64');
}

function exactFields(value: JsonValue | undefined, keys: readonly string[]): JsonObject {
  const problems = objectKeyProblems(value ?? null, keys, keys);
  if (problems.length > 0) throw new RekorSetError(`parsing Rekor SET: ${problems[0]}`);
  return value as JsonObject;
}

function int64Field(value: JsonValue | undefined, what: string): number {
  if (!(value instanceof JsonNumber) || !value.isSafeInteger()) throw new RekorSetError(`parsing Rekor SET: ${what} is not an integer`);
  return value.value;
}

/** RFC 8785 canonical JSON of the SET payload (keys sorted; strings/integers as ES6 JSON). */
function canonicalPayload(body: Buffer, integratedTime: number, logIndex: number, logID: string): string {
  return `{"body":${JSON.stringify(body.toString('base64'))},"integratedTime":${integratedTime},"logID":${JSON.stringify(logID)},"logIndex":${logIndex}}`;
}

function pemDer(bytes: Buffer, what = 'publicKey in Rekor SET'): Buffer | undefined {
  const m = /^\s*-----BEGIN ([A-Z0-9 ]+)-----\r?\n([\s\S]*?)-----END \1-----\r?\n?([\s\S]*)$/.exec(bytes.toString('latin1'));
  if (m === null) return undefined;
  if ((m[3] as string).length !== 0) throw new RekorSetError(`${what} has trailing data`);
  return Buffer.from((m[2] as string).replace(/\s+/g, ''), 'base64');
}

function get(obj: unknown, key: string): unknown {
  return typeof obj === 'object' && obj !== null && !Array.isArray(obj) ? (obj as Record<string, unknown>)[key] : undefined;
}

/**
 * Verifies `setText` (the `dev.sigstore.cosign/bundle` annotation) for a signature made by
 * `signer`: a public key (its SPKI) or, for Fulcio, the certificate PEM of the
 * `dev.sigstore.cosign/certificate` annotation, whose DER the entry must carry. Returns the
 * integrated time (Unix seconds); throws RekorSetError with upstream's text.
 */
export function verifyRekorSet(
  rekorKeys: readonly SigstorePublicKey[],
  setText: string,
  signer: SigstorePublicKey | { readonly certificatePem: string },
  signature: Uint8Array,
  payload: Uint8Array,
): number {
  let doc: JsonValue;
  try {
    doc = parseStrictJson(setText);
  } catch (err) {
    throw new RekorSetError(`parsing Rekor SET: ${(err as Error).message}`);
  }
  const set = exactFields(doc, ['SignedEntryTimestamp', 'Payload']);
  const setSignature = base64Field(set.get('SignedEntryTimestamp'), 'SignedEntryTimestamp');
  const p = exactFields(set.get('Payload'), ['body', 'integratedTime', 'logIndex', 'logID']);
  const body = base64Field(p.get('body'), 'body');
  const integratedTime = int64Field(p.get('integratedTime'), 'integratedTime');
  const logIndex = int64Field(p.get('logIndex'), 'logIndex');
  const logID = p.get('logID');
  if (typeof logID !== 'string') throw new RekorSetError('parsing Rekor SET: logID is not a string');
  if (!isJsonObject(set.get('Payload'))) throw new RekorSetError('parsing Rekor SET: Payload is not an object');

  const signed = Buffer.from(canonicalPayload(body, integratedTime, logIndex, logID));
  const verifiedAny = rekorKeys.some((k) => {
    try {
      return verify('sha256', signed, { key: k.key, dsaEncoding: 'der' }, setSignature);
    } catch {
      return false;
    }
  });
  if (!verifiedAny) throw new RekorSetError('cryptographic signature verification of Rekor SET failed');

  let entry: unknown;
  try {
    entry = JSON.parse(body.toString('utf8'));
  } catch (err) {
    throw new RekorSetError(`parsing Rekor entry: ${(err as Error).message}`);
  }
  const kind = get(entry, 'kind');
  if (kind !== 'hashedrekord') throw new RekorSetError(`unexpected Rekor entry kind ${JSON.stringify(kind ?? '')}`);
  const apiVersion = get(entry, 'apiVersion');
  if (apiVersion !== '0.0.1') throw new RekorSetError(`unsupported Rekor entry API version ${JSON.stringify(apiVersion ?? '')}`);
  const spec = get(entry, 'spec');
  const sig = get(spec, 'signature');
  if (sig === undefined || sig === null) throw new RekorSetError('missing "signature" field in hashedrekord');
  const content = get(sig, 'content');
  if (typeof content !== 'string' || !Buffer.from(content, 'base64').equals(Buffer.from(signature))) {
    throw new RekorSetError('signature in Rekor SET does not match');
  }
  const publicKey = get(get(sig, 'publicKey'), 'content');
  if (typeof publicKey !== 'string') throw new RekorSetError('missing "signature.publicKey" field in hashedrekord');
  const rekorKeyDer = pemDer(Buffer.from(publicKey, 'base64'));
  if (rekorKeyDer === undefined) throw new RekorSetError('publicKey in Rekor SET is not in PEM format');
  let signerDer: Buffer;
  if ('certificatePem' in signer) {
    const der = pemDer(Buffer.from(signer.certificatePem, 'latin1'), 'public key or cert to be matched against publicKey in Rekor SET');
    if (der === undefined) throw new RekorSetError('public key or cert to be matched against publicKey in Rekor SET is not in PEM format');
    signerDer = der;
  } else {
    signerDer = Buffer.from(signer.spki);
  }
  if (!rekorKeyDer.equals(signerDer)) throw new RekorSetError('publicKey in Rekor SET does not match');
  const data = get(spec, 'data');
  if (data === undefined || data === null) throw new RekorSetError('missing "data" field in hashedrekord');
  const hash = get(data, 'hash');
  if (hash === undefined || hash === null) throw new RekorSetError('missing "data.hash" field in hashedrekord');
  const algorithm = get(hash, 'algorithm');
  if (algorithm === undefined) throw new RekorSetError('missing "data.hash.algorithm" field in hashedrekord');
  if (algorithm !== 'sha256') throw new RekorSetError(`unexpected "data.hash.algorithm" value ${JSON.stringify(algorithm)}`);
  const value = get(hash, 'value');
  if (typeof value !== 'string') throw new RekorSetError('missing "data.hash.value" field in hashedrekord');
  if (createHash('sha256').update(payload).digest('hex') !== value) throw new RekorSetError('payload in Rekor SET does not match');
  return integratedTime;
}
