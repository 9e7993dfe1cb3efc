/**
 * Ephemeral OpenPGP keys and simple-signing messages made with openpgp.js, for cases real gpg/skopeo
 * fixtures do not cover (malformed payloads, odd timestamps). Real interop fixtures live in
 * test/fixtures/signatures (regenerate.sh).
 */
import { createMessage, generateKey, readPrivateKey, sign, type PrivateKey } from 'openpgp';

export interface TestKey {
  readonly privateKey: PrivateKey;
  /** Binary public keyring bytes, as loadGpgKeys takes them. */
  readonly publicKeyBytes: Uint8Array;
  readonly fingerprint: string;
}

export async function generateTestKey(name = 'Pullguard Test'): Promise<TestKey> {
  const { privateKey, publicKey } = await generateKey({
    type: 'ecc',
    curve: 'ed25519Legacy',
    userIDs: [{ name, email: 'test@pullguard.test' }],
    format: 'binary',
  });
  const key = await readPrivateKey({ binaryKey: privateKey });
  return { privateKey: key, publicKeyBytes: publicKey, fingerprint: key.getFingerprint().toUpperCase() };
}

/** The simple-signing payload skopeo writes; pass `raw` to sign arbitrary bytes instead. */
export function simpleSigningPayload(
  manifestDigest: string,
  dockerReference: string,
  optional: Record<string, unknown> = { creator: 'pullguard test', timestamp: 1700000000 },
): string {
  return JSON.stringify({
    critical: { type: 'atomic container signature', image: { 'docker-manifest-digest': manifestDigest }, identity: { 'docker-reference': dockerReference } },
    optional,
  });
}

/** An OpenPGP signed (inline, binary) message over `payload`, like `gpg --sign`. */
export async function signPayload(key: TestKey, payload: string | Uint8Array, options: { date?: Date } = {}): Promise<Uint8Array> {
  const message = await createMessage(typeof payload === 'string' ? { binary: new TextEncoder().encode(payload) } : { binary: payload });
  return (await sign({ message, signingKeys: key.privateKey, format: 'binary', ...(options.date !== undefined ? { date: options.date } : {}) })) as Uint8Array;
}
