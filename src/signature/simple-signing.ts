/**
 * Simple-signing ("atomic container signature") verification, in upstream order
 * (c/image simple.go verifyAndExtractSignature): OpenPGP signed message → exactly one signature,
 * made by a trusted primary key (subkeys map to their primary), not expired → only then the strict
 * JSON payload → manifest digest → identity. Payload fields are `untrusted…` until all of that
 * passed. Never throws for a bad signature: it returns a rejected SignatureCheck.
 */
import { readMessage, verify, type KeyID, type PublicKey } from 'openpgp';
import type { RejectionKind, SignatureCheck, SignerIdentity, UntrustedSignatureBlob } from '../domain/signature.js';
import type { GpgKeySet } from './gpg-keys.js';
import { judgeSignedPayload, SIMPLE_SIGNING_PAYLOAD, type PayloadExpectations } from './payload.js';
import { sniffSignatureFormat } from './sniff.js';

export const SIGNATURE_TYPE = SIMPLE_SIGNING_PAYLOAD.type;

export interface SimpleSigningExpectations extends PayloadExpectations {
  /** Verification time: the caller's clock, never read here (key and signature expiry depend on it). */
  readonly now: Date;
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

export async function verifySimpleSigning(blob: UntrustedSignatureBlob, keys: GpgKeySet, expect: SimpleSigningExpectations): Promise<SignatureCheck> {
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
      date: expect.now,
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

  return judgeSignedPayload(data, SIMPLE_SIGNING_PAYLOAD, signer, location, expect);
}

export { parseUntrustedPayload } from './payload.js';
