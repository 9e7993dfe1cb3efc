/**
 * Sigstore public keys (`keyPath`/`keyPaths`/`keyData`/`keyDatas`, `rekorPublicKey*`) parsed once
 * at policy load, beside the fulcio/pki trust roots (certificate-trust.ts). Each source holds one
 * PEM public key (c/image cryptoutils.UnmarshalPEMToPublicKey): `PUBLIC KEY` (SPKI: ECDSA, Ed25519, RSA) or `RSA PUBLIC KEY` (PKCS#1). Rekor keys must be ECDSA.
 */
import { createHash, createPublicKey, type KeyObject } from 'node:crypto';
import { PullguardError } from '../../domain/errors.js';
import type { FulcioTrustRoot, PkiTrustRoot } from './certificate-trust.js';

export interface SigstorePublicKey {
  readonly key: KeyObject;
  /** DER SubjectPublicKeyInfo: what a Rekor entry's public key is compared with. */
  readonly spki: Uint8Array;
  /** Uppercase hex SHA-256 of the SPKI: how the key is named in checks and logs. */
  readonly fingerprint: string;
}

/**
 * What one sigstoreSigned requirement trusts: public keys, or (with no public keys) a Fulcio or PKI
 * trust root whose certificates vouch for the signing key.
 */
export interface SigstoreKeySet {
  /** The `keyPath`/`keyPaths`/`keyData`/`keyDatas` keys; empty for fulcio and pki. */
  readonly publicKeys: readonly SigstorePublicKey[];
  /** Present when the requirement names Rekor keys: the Rekor SET is then mandatory (always for fulcio). */
  readonly rekorKeys?: readonly SigstorePublicKey[];
  readonly fulcio?: FulcioTrustRoot;
  readonly pki?: PkiTrustRoot;
}

const PEM_BLOCK = /-----BEGIN ([A-Z0-9 ]+)-----\r?\n([\s\S]*?)-----END \1-----/;

/** Parses the first PEM block of `bytes` as a public key; `where` names the source in errors. */
export function parseSigstorePublicKey(bytes: Uint8Array, where: string, options: { readonly ecdsaOnly?: boolean } = {}): SigstorePublicKey {
  const text = Buffer.from(bytes).toString('latin1');
  const block = PEM_BLOCK.exec(text);
  if (block === null) throw new PullguardError('KEY_LOAD_FAILED', `${where}: PEM decoding failed`);
  const type = block[1] as string;
  const der = Buffer.from((block[2] as string).replace(/\s+/g, ''), 'base64');
  let key: KeyObject;
  try {
    if (type === 'PUBLIC KEY') key = createPublicKey({ key: der, format: 'der', type: 'spki' });
    else if (type === 'RSA PUBLIC KEY') key = createPublicKey({ key: der, format: 'der', type: 'pkcs1' });
    else throw new Error(`unknown Public key PEM file type: ${type}. Are you passing the correct public key?`);
  } catch (err) {
    throw new PullguardError('KEY_LOAD_FAILED', `${where}: ${(err as Error).message}`, { cause: err });
  }
  const kind = key.asymmetricKeyType;
  if (kind !== 'ec' && kind !== 'ed25519' && kind !== 'rsa') {
    throw new PullguardError('KEY_LOAD_FAILED', `${where}: unsupported public key type ${String(kind)}`);
  }
  if (options.ecdsaOnly === true && kind !== 'ec') {
    throw new PullguardError('KEY_LOAD_FAILED', `${where}: Rekor public key is not using ECDSA`);
  }
  const spki = new Uint8Array(key.export({ format: 'der', type: 'spki' }));
  return Object.freeze({ key, spki, fingerprint: createHash('sha256').update(spki).digest('hex').toUpperCase() });
}
