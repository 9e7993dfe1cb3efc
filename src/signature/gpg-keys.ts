/**
 * GPG public key material, parsed once per configuration load (upstream re-reads key files and
 * builds a fresh GPG home per signature). CPU only: callers read the files.
 */
import { readKeys, type PublicKey } from 'openpgp';
import { PullguardError } from '../domain/errors.js';

export interface GpgKeySet {
  readonly keys: readonly PublicKey[];
  /** Uppercase hex fingerprints of the primary keys: what trust is decided on. */
  readonly primaryFingerprints: ReadonlySet<string>;
  /** Uppercase subkey fingerprint → uppercase primary fingerprint. */
  readonly subkeyToPrimary: ReadonlyMap<string, string>;
}

const ARMOR_BLOCK = /-----BEGIN PGP PUBLIC KEY BLOCK-----[\s\S]*?-----END PGP PUBLIC KEY BLOCK-----/g;

function looksArmored(bytes: Uint8Array): boolean {
  const head = new TextDecoder('utf-8', { fatal: false }).decode(bytes.subarray(0, 256)).trimStart();
  return head.startsWith('-----BEGIN PGP');
}

async function readKeyring(bytes: Uint8Array, index: number): Promise<PublicKey[]> {
  try {
    if (looksArmored(bytes)) {
      // A file may hold several armoured blocks (e.g. `cat a.asc b.asc`).
      const text = new TextDecoder().decode(bytes);
      const blocks = text.match(ARMOR_BLOCK) ?? [];
      const keys: PublicKey[] = [];
      for (const block of blocks) keys.push(...((await readKeys({ armoredKeys: block })) as PublicKey[]));
      return keys;
    }
    return (await readKeys({ binaryKeys: bytes })) as PublicKey[];
  } catch (err) {
    throw new PullguardError('KEY_LOAD_FAILED', `reading keyring ${index + 1}: ${(err as Error).message}`, { cause: err });
  }
}

/** Parses binary or ASCII-armoured keyrings (several keys per keyring allowed). */
export async function loadGpgKeys(keyringBytes: readonly Uint8Array[]): Promise<GpgKeySet> {
  const keys: PublicKey[] = [];
  for (const [i, bytes] of keyringBytes.entries()) keys.push(...(await readKeyring(bytes, i)));
  if (keys.length === 0) throw new PullguardError('KEY_LOAD_FAILED', 'No public keys imported');
  const primaryFingerprints = new Set<string>();
  const subkeyToPrimary = new Map<string, string>();
  for (const key of keys) {
    const primary = key.getFingerprint().toUpperCase();
    primaryFingerprints.add(primary);
    for (const sub of key.getSubkeys()) subkeyToPrimary.set(sub.getFingerprint().toUpperCase(), primary);
  }
  return Object.freeze({ keys: Object.freeze(keys), primaryFingerprints, subkeyToPrimary });
}
