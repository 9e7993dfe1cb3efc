/**
 * Verifies one sigstore (cosign) attachment layer against a sigstoreSigned requirement, in c/image
 * order (policy_eval_sigstore.go + internal/sigstore_payload.go): signature annotation → the signing
 * key: the requirement's keys (after the Rekor SET, when Rekor keys are configured), or the key of
 * the layer's certificate once it chained to the Fulcio CA (after the Rekor SET, which dates the
 * signature) or to the PKI roots (certificate-trust.ts) → SHA-256 signature over the raw payload
 * bytes → strict payload → manifest digest → identity. Payload and certificate fields stay
 * untrusted until verified. Never throws for a bad signature: returns a rejection.
 */
import { constants, verify } from 'node:crypto';
import type { RejectionKind, SignatureCheck, SignerIdentity, UntrustedSignatureBlob } from '../../domain/signature.js';
import { CertificateTrustError, verifyFulcioCertificate, verifyPkiCertificate } from './certificate-trust.js';
import {
  SIGSTORE_CERTIFICATE_ANNOTATION,
  SIGSTORE_INTERMEDIATE_CHAIN_ANNOTATION,
  SIGSTORE_SET_ANNOTATION,
  SIGSTORE_SIGNATURE_ANNOTATION,
} from './constants.js';
import { judgeSignedPayload, type PayloadExpectations } from '../payload.js';
import { SIGSTORE_PAYLOAD } from './payload.js';
import type { Certificate } from './certificate.js';
import type { PkiTrustRoot } from './certificate-trust.js';
import type { SigstoreKeySet, SigstorePublicKey } from './public-keys.js';
import { RekorSetError, verifyRekorSet } from './rekor-set.js';

/** What a sigstore signature is judged against: the same as for simple signing, and a time for pki. */
export interface SigstoreExpectations extends PayloadExpectations {
  /**
   * The time pki certificates must be valid at (upstream: the current time). Default: now. Fulcio
   * certificates are checked at the Rekor SET's integrated time instead, as upstream.
   */
  readonly now?: Date;
}

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
    return type === 'rsa'
      ? 'crypto/rsa: verification error'
      : type === 'ed25519'
        ? 'failed to verify signature'
        : 'invalid signature when validating ASN.1 encoded signature';
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
  const signature = decodeStdBase64(base64Signature);
  if (typeof signature === 'string') return reject('invalid-signature', `base64 decoding: ${signature}`);

  let candidates: readonly SigstorePublicKey[];
  if (keys.fulcio !== undefined || keys.pki !== undefined) {
    const certified = certifiedKey(keys, annotations, signature, payload, expect.now ?? new Date());
    if (typeof certified === 'string') return reject('invalid-signature', certified);
    candidates = [certified];
  } else {
    if (keys.publicKeys.length === 0) return reject('untrusted-key', 'Need at least one public key to verify the sigstore payload, but got 0');
    candidates = keys.publicKeys;
  }
  if (keys.rekorKeys !== undefined && keys.fulcio === undefined) {
    const set = annotations[SIGSTORE_SET_ANNOTATION];
    if (set === undefined) return reject('invalid-signature', `missing ${SIGSTORE_SET_ANNOTATION} annotation`);
    const failures: string[] = [];
    candidates = candidates.filter((key) => {
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

/**
 * fulcio / pki: the key of the layer's certificate, once the certificate is trusted; or the
 * rejection reason. Fulcio needs the Rekor SET first: it proves the signature was logged and dates it.
 */
function certifiedKey(
  keys: SigstoreKeySet,
  annotations: Readonly<Record<string, string>>,
  signature: Uint8Array,
  payload: Uint8Array,
  now: Date,
): SigstorePublicKey | string {
  const chain = annotations[SIGSTORE_INTERMEDIATE_CHAIN_ANNOTATION];
  try {
    if (keys.fulcio !== undefined) {
      if (keys.rekorKeys === undefined) return 'Internal inconsistency: Fulcio CA specified without a Rekor public key';
      const set = annotations[SIGSTORE_SET_ANNOTATION];
      if (set === undefined) return `missing ${SIGSTORE_SET_ANNOTATION} annotation`;
      const certificatePem = annotations[SIGSTORE_CERTIFICATE_ANNOTATION];
      if (certificatePem === undefined) return `missing ${SIGSTORE_CERTIFICATE_ANNOTATION} annotation`;
      const integratedTime = verifyRekorSet(keys.rekorKeys, set, { certificatePem }, signature, payload);
      return asKey(verifyFulcioCertificate(keys.fulcio, integratedTime * 1000, certificatePem, chain));
    }
    if (keys.rekorKeys !== undefined) return 'Internal inconsistency: PKI specified with a Rekor public key';
    const certificatePem = annotations[SIGSTORE_CERTIFICATE_ANNOTATION];
    if (certificatePem === undefined) return `missing ${SIGSTORE_CERTIFICATE_ANNOTATION} annotation`;
    return asKey(verifyPkiCertificate(keys.pki as PkiTrustRoot, now.getTime(), certificatePem, chain));
  } catch (err) {
    if (err instanceof RekorSetError || err instanceof CertificateTrustError) return err.message;
    throw err;
  }
}

function asKey(certificate: Certificate): SigstorePublicKey {
  return { key: certificate.publicKey, spki: certificate.spki, fingerprint: certificate.fingerprint };
}
