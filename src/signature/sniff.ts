/**
 * Signature blob format sniffing, byte-for-byte as containers/image `signature.FromBlob`
 * (image/internal/signature/signature.go). Pure; never throws.
 *
 * Deliberate quirk parity: upstream lists `0x3D` ('=') among the one-pass-signature first bytes
 * where the OpenPGP pattern implies `0x93`. We keep `0x3D` (a blob starting with '=' is classified
 * as simple signing and then fails at verification, exactly as upstream) and, like upstream,
 * reject `0x93`. Diverging would change which index counts as a "trouble" versus a "rejection",
 * and therefore the wording operators see, for no security gain: both outcomes never accept.
 */

export type SniffResult =
  | { readonly ok: true; readonly format: 'simple-signing' | 'sigstore'; readonly payload: Uint8Array }
  | { readonly ok: false; readonly message: string; readonly firstByte?: number };

/** OpenPGP first bytes that upstream accepts as a raw simple-signing blob. */
const SIMPLE_SIGNING_FIRST_BYTES: ReadonlySet<number> = new Set([
  // compressed data packet
  0xa0, 0xa1, 0xa2, 0xa3, 0xc8,
  // one-pass signature packet (0x3d is upstream's quirk, see the file comment)
  0x90, 0x91, 0x92, 0xc4, 0x3d,
  // signature packet
  0x88, 0x89, 0x8a, 0x8b, 0xc2,
]);

/** Go's `%#x` for one byte: no zero padding (`0xa`, `0x3c`). */
export function formatByteGo(byte: number): string {
  return `0x${byte.toString(16)}`;
}

export function sniffSignatureFormat(bytes: Uint8Array): SniffResult {
  if (bytes.length === 0) return { ok: false, message: 'empty signature blob' };
  const first = bytes[0] as number;
  if (SIMPLE_SIGNING_FIRST_BYTES.has(first)) return { ok: true, format: 'simple-signing', payload: bytes };
  if (first !== 0x00) {
    return { ok: false, message: `unrecognized signature format, starting with binary ${formatByteGo(first)}`, firstByte: first };
  }
  return sniffTagged(bytes);
}

/** The `00` + ASCII format name + `\n` + payload form used for stored blobs. */
function sniffTagged(bytes: Uint8Array): SniffResult {
  const newline = bytes.indexOf(0x0a, 1);
  if (newline === -1) return { ok: false, message: 'invalid signature format, missing newline', firstByte: 0 };
  let name = '';
  for (let i = 1; i < newline; i++) {
    const b = bytes[i] as number;
    if (b < 32 || b >= 0x7f) {
      return { ok: false, message: `invalid signature format, non-ASCII byte ${formatByteGo(b)}`, firstByte: 0 };
    }
    name += String.fromCharCode(b);
  }
  const payload = bytes.subarray(newline + 1);
  switch (name) {
    case 'simple-signing':
      return { ok: true, format: 'simple-signing', payload };
    case 'sigstore-json':
      // The JSON envelope ({mimeType, payload, annotations}) is decoded by the sigstore reader.
      return { ok: true, format: 'sigstore', payload };
    default:
      return { ok: false, message: `unrecognized signature format ${JSON.stringify(name)}`, firstByte: 0 };
  }
}
