/**
 * A minimal DER reader for the parts of X.509 certificates that node:crypto's X509Certificate does
 * not expose (extensions by OID, their criticality, exact validity times, raw names). Definite
 * lengths only, minimal length encodings, low tag numbers (all X.509 uses); anything else throws
 * DerError. Pure; never reads past the buffer.
 */

export class DerError extends Error {}

export interface Tlv {
  /** The identifier octet (class, constructed bit and tag number, e.g. 0x30 SEQUENCE, 0xa3 [3]). */
  readonly tag: number;
  /** The contents octets. */
  readonly value: Uint8Array;
  /** The whole encoding, header included. */
  readonly raw: Uint8Array;
}

export const TAG = Object.freeze({
  BOOLEAN: 0x01,
  INTEGER: 0x02,
  BIT_STRING: 0x03,
  OCTET_STRING: 0x04,
  NULL: 0x05,
  OID: 0x06,
  UTF8_STRING: 0x0c,
  NUMERIC_STRING: 0x12,
  PRINTABLE_STRING: 0x13,
  T61_STRING: 0x14,
  IA5_STRING: 0x16,
  UTC_TIME: 0x17,
  GENERALIZED_TIME: 0x18,
  SEQUENCE: 0x30,
  SET: 0x31,
});

/** Reads the TLV at `offset`; returns it and the offset after it. */
export function readTlv(bytes: Uint8Array, offset = 0): { tlv: Tlv; next: number } {
  if (offset + 2 > bytes.length) throw new DerError('truncated DER element');
  const tag = bytes[offset] as number;
  if ((tag & 0x1f) === 0x1f) throw new DerError('high-tag-number DER identifiers are not supported');
  let length = bytes[offset + 1] as number;
  let header = 2;
  if (length & 0x80) {
    const count = length & 0x7f;
    if (count === 0) throw new DerError('indefinite DER length');
    if (count > 4) throw new DerError('DER length too large');
    if (offset + 2 + count > bytes.length) throw new DerError('truncated DER length');
    length = 0;
    for (let i = 0; i < count; i++) length = length * 256 + (bytes[offset + 2 + i] as number);
    if ((bytes[offset + 2] as number) === 0 || length < 0x80) throw new DerError('non-minimal DER length');
    header += count;
  }
  const end = offset + header + length;
  if (end > bytes.length) throw new DerError('truncated DER element');
  return { tlv: { tag, value: bytes.subarray(offset + header, end), raw: bytes.subarray(offset, end) }, next: end };
}

/** Exactly one TLV filling `bytes`. */
export function readOnly(bytes: Uint8Array, what: string): Tlv {
  const { tlv, next } = readTlv(bytes, 0);
  if (next !== bytes.length) throw new DerError(`trailing data after ${what}`);
  return tlv;
}

/** The elements of a constructed value (SEQUENCE, SET, [n] constructed). */
export function children(tlv: Tlv): Tlv[] {
  if ((tlv.tag & 0x20) === 0) throw new DerError(`DER element 0x${tlv.tag.toString(16)} is not constructed`);
  const out: Tlv[] = [];
  let offset = 0;
  while (offset < tlv.value.length) {
    const { tlv: child, next } = readTlv(tlv.value, offset);
    out.push(child);
    offset = next;
  }
  return out;
}

export function expectTag(tlv: Tlv | undefined, tag: number, what: string): Tlv {
  if (tlv === undefined || tlv.tag !== tag) throw new DerError(`malformed ${what}`);
  return tlv;
}

/** Dotted OID text of an OBJECT IDENTIFIER's contents. */
export function decodeOid(value: Uint8Array): string {
  if (value.length === 0) throw new DerError('empty OID');
  const arcs: number[] = [];
  let current = 0;
  for (let i = 0; i < value.length; i++) {
    const byte = value[i] as number;
    if (current === 0 && byte === 0x80) throw new DerError('non-minimal OID arc');
    current = current * 128 + (byte & 0x7f);
    if (current > Number.MAX_SAFE_INTEGER / 128) throw new DerError('OID arc too large');
    if ((byte & 0x80) === 0) {
      arcs.push(current);
      current = 0;
    } else if (i === value.length - 1) {
      throw new DerError('truncated OID');
    }
  }
  const first = arcs[0] as number;
  const head = first < 40 ? [0, first] : first < 80 ? [1, first - 40] : [2, first - 80];
  return [...head, ...arcs.slice(1)].join('.');
}

export function decodeBoolean(tlv: Tlv): boolean {
  expectTag(tlv, TAG.BOOLEAN, 'BOOLEAN');
  if (tlv.value.length !== 1 || (tlv.value[0] !== 0 && tlv.value[0] !== 0xff)) throw new DerError('malformed BOOLEAN');
  return tlv.value[0] === 0xff;
}

/** A small non-negative INTEGER (versions, path lengths). */
export function decodeSmallInteger(tlv: Tlv): number {
  expectTag(tlv, TAG.INTEGER, 'INTEGER');
  const v = tlv.value;
  if (v.length === 0 || v.length > 4) throw new DerError('INTEGER out of range');
  if (v.length > 1 && ((v[0] === 0 && ((v[1] as number) & 0x80) === 0) || (v[0] === 0xff && ((v[1] as number) & 0x80) !== 0))) {
    throw new DerError('non-minimal INTEGER');
  }
  if (((v[0] as number) & 0x80) !== 0) throw new DerError('negative INTEGER');
  let n = 0;
  for (const b of v) n = n * 256 + b;
  return n;
}

/** Milliseconds since the epoch of a UTCTime (YYMMDDHHMMSSZ) or GeneralizedTime (YYYYMMDDHHMMSSZ). */
export function decodeTime(tlv: Tlv): number {
  const text = Buffer.from(tlv.value).toString('latin1');
  let m: RegExpExecArray | null;
  let year: number;
  if (tlv.tag === TAG.UTC_TIME) {
    m = /^(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})Z$/.exec(text);
    if (m === null) throw new DerError(`malformed UTCTime ${JSON.stringify(text)}`);
    const yy = Number(m[1]);
    year = yy < 50 ? 2000 + yy : 1900 + yy;
  } else if (tlv.tag === TAG.GENERALIZED_TIME) {
    m = /^(\d{4})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})Z$/.exec(text);
    if (m === null) throw new DerError(`malformed GeneralizedTime ${JSON.stringify(text)}`);
    year = Number(m[1]);
  } else {
    throw new DerError('malformed validity time');
  }
  const [month, day, hour, minute, second] = [m[2], m[3], m[4], m[5], m[6]].map(Number) as [number, number, number, number, number];
  const ms = Date.UTC(year, month - 1, day, hour, minute, second);
  const check = new Date(ms);
  if (check.getUTCMonth() !== month - 1 || check.getUTCDate() !== day || hour > 23 || minute > 59 || second > 59) {
    throw new DerError(`invalid validity time ${JSON.stringify(text)}`);
  }
  if (year < 1000) {
    // Date.UTC maps years 0–99 to 1900–1999.
    return new Date(ms).setUTCFullYear(year);
  }
  return ms;
}

/** The text of a character string (UTF8String, PrintableString, IA5String, T61String, NumericString). */
export function decodeString(tlv: Tlv): string {
  switch (tlv.tag) {
    case TAG.UTF8_STRING:
      try {
        return new TextDecoder('utf-8', { fatal: true }).decode(tlv.value);
      } catch {
        throw new DerError('invalid UTF-8 in UTF8String');
      }
    case TAG.PRINTABLE_STRING:
    case TAG.IA5_STRING:
    case TAG.NUMERIC_STRING:
    case TAG.T61_STRING:
      return Buffer.from(tlv.value).toString('latin1');
    default:
      throw new DerError(`not a character string (tag 0x${tlv.tag.toString(16)})`);
  }
}
