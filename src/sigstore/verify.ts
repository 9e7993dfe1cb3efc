/**
 * Verifies one sigstore (cosign) attachment layer against a key-based sigstoreSigned requirement, in
 * c/image order (policy_eval_sigstore.go + internal/sigstore_payload.go): signature annotation →
 * (Rekor SET, when Rekor keys are configured) → SHA-256 signature over the raw payload bytes by one of
 * the requirement's keys → strict payload → manifest digest → identity. Payload fields stay
 * untrusted until the signature verified. Never throws for a bad signature: returns a rejection.
 */
import { constants, verify } from 'node:crypto';
import type { RejectionKind, SignatureCheck, SignerIdentity, UntrustedSignatureBlob } from '../domain/signature.js';
import { SIGSTORE_SET_ANNOTATION, SIGSTORE_SIGNATURE_ANNOTATION } from './constants.js';
import { judgeSignedPayload, type PayloadExpectations } from '../signature/payload.js';
import { SIGSTORE_PAYLOAD } from './payload.js';
import type { SigstoreKeySet, SigstorePublicKey } from './public-keys.js';
import { RekorSetError, verifyRekorSet } from './rekor-set.js';

/** What a sigstore signature is judged against: the same as for simple signing. */
export type SigstoreExpectations = PayloadExpectations;

/** Go base64.StdEncoding.DecodeString, with its error text. CR/LF are ignored as in Go. */
function decodeStdBase64(text: string): Buffer | string {
  const clean = text.replace(/[\r\n]/g, '');
  const bad = clean.search(/[^A-Za-z0-9+/=]/);
  if (bad !== -1) return `illegal base64 data at input byte ${bad}`;
  const pad = clean.indexOf('=');
  if (pad !== -1 && (!/^={1,2}$/.test(clean.slice(pad)) || clean.length % 4 !== 0)) return `illegal base64 data at input byte ${pad}`;
  if (clean.length % 4 !== 0) return `illegal base64 data at input byte ${clean.length - (clean.length % 4)}`;
  return Buffer.from(clean, 'base64');
}

/** The error text of the Go verifier c/image uses for this key type (sigstore/pkg/signature). */
function verifyWith(key: SigstorePublicKey, payload: Uint8Array, signature: Uint8Array): string | undefined {
  const type = key.key.asymmetricKeyType;
  try {
    if (type === 'ed25519') return verify(null, payload, key.key, signature) ? undefined : 'failed to verify signature';
    if (type === 'rsa') {
      return verify('sha256', payload, { key: key.key, padding: constants.RSA_PKCS1_PADDING }, signature) ? undefined : 'crypto/rsa: verification error';
    }
    return verify('sha256', payload, { key: key.key, dsaEncoding: 'der' }, signature) ? undefined : 'invalid signature when validating ASN.1 encoded signature';
  } catch {
    return type === 'rsa' ? 'crypto/rsa: verification error' : type === 'ed25519' ? 'failed to verify signature' : 'invalid signature when validating ASN.1 encoded signature';
  }
}

export function verifySigstoreSignature(blob: UntrustedSignatureBlob, keys: SigstoreKeySet, expect: SigstoreExpectations): SignatureCheck {
  const location = blob.location;
  const reject = (kind: RejectionKind, reason: string, signer?: SignerIdentity): SignatureCheck =>
    Object.freeze({ verdict: 'rejected', location, kind, reason, ...(signer !== undefined ? { signer } : {}) });

  if (blob.format !== 'sigstore') return reject('unsupported', `signature format ${blob.format} is not handled by sigstoreSigned`);
  const annotations = blob.untrustedAnnotations ?? {};
  const base64Signature = annotations[SIGSTORE_SIGNATURE_ANNOTATION];
  if (base64Signature === undefined) return reject('invalid-signature', `missing ${SIGSTORE_SIGNATURE_ANNOTATION} annotation`);
  const payload = blob.bytes;
  if (keys.publicKeys.length === 0) return reject('untrusted-key', 'Need at least one public key to verify the sigstore payload, but got 0');
  const signature = decodeStdBase64(base64Signature);
  if (typeof signature === 'string') return reject('invalid-signature', `base64 decoding: ${signature}`);

  let candidates = keys.publicKeys;
  if (keys.rekorKeys !== undefined) {
    const set = annotations[SIGSTORE_SET_ANNOTATION];
    if (set === undefined) return reject('invalid-signature', `missing ${SIGSTORE_SET_ANNOTATION} annotation`);
    const failures: string[] = [];
    candidates = keys.publicKeys.filter((key) => {
      try {
        verifyRekorSet(keys.rekorKeys as readonly SigstorePublicKey[], set, key, signature, payload);
        return true;
      } catch (err) {
        if (!(err instanceof RekorSetError)) throw err;
        if (!failures.includes(err.message)) failures.push(err.message);
        return false;
      }
    });
    if (candidates.length === 0) return reject('invalid-signature', `No public key verified against the RekorSET: ${failures.join(', ')}`);
  }

  const failures: string[] = [];
  let signerKey: SigstorePublicKey | undefined;
  for (const key of candidates) {
    const failure = verifyWith(key, payload, signature);
    if (failure === undefined) {
      signerKey = key;
      break;
    }
    failures.push(failure);
  }
  if (signerKey === undefined) return reject('invalid-signature', `cryptographic signature verification failed: ${failures.join(', ')}`);
  const signer: SignerIdentity = { keyFingerprint: signerKey.fingerprint, primaryKeyFingerprint: signerKey.fingerprint };

  return judgeSignedPayload(payload, SIGSTORE_PAYLOAD, signer, location, expect);
}
