/**
 * Just enough HPACK (RFC 7541) to re-encode a client's header blocks: a strict decoder that keeps
 * the client's dynamic table, and an encoder that uses the static table only, so the blocks it
 * produces never touch the receiving decoder's dynamic table. Used by ./authority.ts.
 */
import { PullguardError } from '../domain/errors.js';

export interface HeaderField {
  readonly name: Buffer;
  readonly value: Buffer;
  /** Sent as "literal never indexed": intermediaries must keep it that way (RFC 7541 §6.2.3). */
  readonly neverIndexed: boolean;
}

/** RFC 7541 Appendix A. Index 1 is the first entry. */
const STATIC_TABLE: readonly (readonly [string, string])[] = [
  [':authority', ''],
  [':method', 'GET'],
  [':method', 'POST'],
  [':path', '/'],
  [':path', '/index.html'],
  [':scheme', 'http'],
  [':scheme', 'https'],
  [':status', '200'],
  [':status', '204'],
  [':status', '206'],
  [':status', '304'],
  [':status', '400'],
  [':status', '404'],
  [':status', '500'],
  ['accept-charset', ''],
  ['accept-encoding', 'gzip, deflate'],
  ['accept-language', ''],
  ['accept-ranges', ''],
  ['accept', ''],
  ['access-control-allow-origin', ''],
  ['age', ''],
  ['allow', ''],
  ['authorization', ''],
  ['cache-control', ''],
  ['content-disposition', ''],
  ['content-encoding', ''],
  ['content-language', ''],
  ['content-length', ''],
  ['content-location', ''],
  ['content-range', ''],
  ['content-type', ''],
  ['cookie', ''],
  ['date', ''],
  ['etag', ''],
  ['expect', ''],
  ['expires', ''],
  ['from', ''],
  ['host', ''],
  ['if-match', ''],
  ['if-modified-since', ''],
  ['if-none-match', ''],
  ['if-range', ''],
  ['if-unmodified-since', ''],
  ['last-modified', ''],
  ['link', ''],
  ['location', ''],
  ['max-forwards', ''],
  ['proxy-authenticate', ''],
  ['proxy-authorization', ''],
  ['range', ''],
  ['referer', ''],
  ['refresh', ''],
  ['retry-after', ''],
  ['server', ''],
  ['set-cookie', ''],
  ['strict-transport-security', ''],
  ['transfer-encoding', ''],
  ['user-agent', ''],
  ['vary', ''],
  ['via', ''],
  ['www-authenticate', ''],
];

/** RFC 7541 Appendix B: [code, bit length] for symbols 0..255; EOS (256) is 30 one-bits. */
const HUFFMAN: readonly (readonly [number, number])[] = [
  [0x1ff8, 13],
  [0x7fffd8, 23],
  [0xfffffe2, 28],
  [0xfffffe3, 28],
  [0xfffffe4, 28],
  [0xfffffe5, 28],
  [0xfffffe6, 28],
  [0xfffffe7, 28],
  [0xfffffe8, 28],
  [0xffffea, 24],
  [0x3ffffffc, 30],
  [0xfffffe9, 28],
  [0xfffffea, 28],
  [0x3ffffffd, 30],
  [0xfffffeb, 28],
  [0xfffffec, 28],
  [0xfffffed, 28],
  [0xfffffee, 28],
  [0xfffffef, 28],
  [0xffffff0, 28],
  [0xffffff1, 28],
  [0xffffff2, 28],
  [0x3ffffffe, 30],
  [0xffffff3, 28],
  [0xffffff4, 28],
  [0xffffff5, 28],
  [0xffffff6, 28],
  [0xffffff7, 28],
  [0xffffff8, 28],
  [0xffffff9, 28],
  [0xffffffa, 28],
  [0xffffffb, 28],
  [0x14, 6],
  [0x3f8, 10],
  [0x3f9, 10],
  [0xffa, 12],
  [0x1ff9, 13],
  [0x15, 6],
  [0xf8, 8],
  [0x7fa, 11],
  [0x3fa, 10],
  [0x3fb, 10],
  [0xf9, 8],
  [0x7fb, 11],
  [0xfa, 8],
  [0x16, 6],
  [0x17, 6],
  [0x18, 6],
  [0x0, 5],
  [0x1, 5],
  [0x2, 5],
  [0x19, 6],
  [0x1a, 6],
  [0x1b, 6],
  [0x1c, 6],
  [0x1d, 6],
  [0x1e, 6],
  [0x1f, 6],
  [0x5c, 7],
  [0xfb, 8],
  [0x7ffc, 15],
  [0x20, 6],
  [0xffb, 12],
  [0x3fc, 10],
  [0x1ffa, 13],
  [0x21, 6],
  [0x5d, 7],
  [0x5e, 7],
  [0x5f, 7],
  [0x60, 7],
  [0x61, 7],
  [0x62, 7],
  [0x63, 7],
  [0x64, 7],
  [0x65, 7],
  [0x66, 7],
  [0x67, 7],
  [0x68, 7],
  [0x69, 7],
  [0x6a, 7],
  [0x6b, 7],
  [0x6c, 7],
  [0x6d, 7],
  [0x6e, 7],
  [0x6f, 7],
  [0x70, 7],
  [0x71, 7],
  [0x72, 7],
  [0xfc, 8],
  [0x73, 7],
  [0xfd, 8],
  [0x1ffb, 13],
  [0x7fff0, 19],
  [0x1ffc, 13],
  [0x3ffc, 14],
  [0x22, 6],
  [0x7ffd, 15],
  [0x3, 5],
  [0x23, 6],
  [0x4, 5],
  [0x24, 6],
  [0x5, 5],
  [0x25, 6],
  [0x26, 6],
  [0x27, 6],
  [0x6, 5],
  [0x74, 7],
  [0x75, 7],
  [0x28, 6],
  [0x29, 6],
  [0x2a, 6],
  [0x7, 5],
  [0x2b, 6],
  [0x76, 7],
  [0x2c, 6],
  [0x8, 5],
  [0x9, 5],
  [0x2d, 6],
  [0x77, 7],
  [0x78, 7],
  [0x79, 7],
  [0x7a, 7],
  [0x7b, 7],
  [0x7ffe, 15],
  [0x7fc, 11],
  [0x3ffd, 14],
  [0x1ffd, 13],
  [0xffffffc, 28],
  [0xfffe6, 20],
  [0x3fffd2, 22],
  [0xfffe7, 20],
  [0xfffe8, 20],
  [0x3fffd3, 22],
  [0x3fffd4, 22],
  [0x3fffd5, 22],
  [0x7fffd9, 23],
  [0x3fffd6, 22],
  [0x7fffda, 23],
  [0x7fffdb, 23],
  [0x7fffdc, 23],
  [0x7fffdd, 23],
  [0x7fffde, 23],
  [0xffffeb, 24],
  [0x7fffdf, 23],
  [0xffffec, 24],
  [0xffffed, 24],
  [0x3fffd7, 22],
  [0x7fffe0, 23],
  [0xffffee, 24],
  [0x7fffe1, 23],
  [0x7fffe2, 23],
  [0x7fffe3, 23],
  [0x7fffe4, 23],
  [0x1fffdc, 21],
  [0x3fffd8, 22],
  [0x7fffe5, 23],
  [0x3fffd9, 22],
  [0x7fffe6, 23],
  [0x7fffe7, 23],
  [0xffffef, 24],
  [0x3fffda, 22],
  [0x1fffdd, 21],
  [0xfffe9, 20],
  [0x3fffdb, 22],
  [0x3fffdc, 22],
  [0x7fffe8, 23],
  [0x7fffe9, 23],
  [0x1fffde, 21],
  [0x7fffea, 23],
  [0x3fffdd, 22],
  [0x3fffde, 22],
  [0xfffff0, 24],
  [0x1fffdf, 21],
  [0x3fffdf, 22],
  [0x7fffeb, 23],
  [0x7fffec, 23],
  [0x1fffe0, 21],
  [0x1fffe1, 21],
  [0x3fffe0, 22],
  [0x1fffe2, 21],
  [0x7fffed, 23],
  [0x3fffe1, 22],
  [0x7fffee, 23],
  [0x7fffef, 23],
  [0xfffea, 20],
  [0x3fffe2, 22],
  [0x3fffe3, 22],
  [0x3fffe4, 22],
  [0x7ffff0, 23],
  [0x3fffe5, 22],
  [0x3fffe6, 22],
  [0x7ffff1, 23],
  [0x3ffffe0, 26],
  [0x3ffffe1, 26],
  [0xfffeb, 20],
  [0x7fff1, 19],
  [0x3fffe7, 22],
  [0x7ffff2, 23],
  [0x3fffe8, 22],
  [0x1ffffec, 25],
  [0x3ffffe2, 26],
  [0x3ffffe3, 26],
  [0x3ffffe4, 26],
  [0x7ffffde, 27],
  [0x7ffffdf, 27],
  [0x3ffffe5, 26],
  [0xfffff1, 24],
  [0x1ffffed, 25],
  [0x7fff2, 19],
  [0x1fffe3, 21],
  [0x3ffffe6, 26],
  [0x7ffffe0, 27],
  [0x7ffffe1, 27],
  [0x3ffffe7, 26],
  [0x7ffffe2, 27],
  [0xfffff2, 24],
  [0x1fffe4, 21],
  [0x1fffe5, 21],
  [0x3ffffe8, 26],
  [0x3ffffe9, 26],
  [0xffffffd, 28],
  [0x7ffffe3, 27],
  [0x7ffffe4, 27],
  [0x7ffffe5, 27],
  [0xfffec, 20],
  [0xfffff3, 24],
  [0xfffed, 20],
  [0x1fffe6, 21],
  [0x3fffe9, 22],
  [0x1fffe7, 21],
  [0x1fffe8, 21],
  [0x7ffff3, 23],
  [0x3fffea, 22],
  [0x3fffeb, 22],
  [0x1ffffee, 25],
  [0x1ffffef, 25],
  [0xfffff4, 24],
  [0xfffff5, 24],
  [0x3ffffea, 26],
  [0x7ffff4, 23],
  [0x3ffffeb, 26],
  [0x7ffffe6, 27],
  [0x3ffffec, 26],
  [0x3ffffed, 26],
  [0x7ffffe7, 27],
  [0x7ffffe8, 27],
  [0x7ffffe9, 27],
  [0x7ffffea, 27],
  [0x7ffffeb, 27],
  [0xffffffe, 28],
  [0x7ffffec, 27],
  [0x7ffffed, 27],
  [0x7ffffee, 27],
  [0x7ffffef, 27],
  [0x7fffff0, 27],
  [0x3ffffee, 26],
];
const EOS = 256;

/** Per RFC 7541 §4.1 every entry costs its octets plus 32. */
export const ENTRY_OVERHEAD = 32;
/** Larger integers than this are no header-block quantity; reject instead of overflowing. */
const MAX_INTEGER = 2 ** 28;

const staticByName = new Map<string, number>();
const staticByPair = new Map<string, number>();
STATIC_TABLE.forEach(([name, value], i) => {
  if (!staticByName.has(name)) staticByName.set(name, i + 1);
  staticByPair.set(`${name}\0${value}`, i + 1);
});

function compressionError(message: string): PullguardError {
  return new PullguardError('INVALID_ARGUMENT', `HPACK: ${message}`, { facts: { http2Error: 'COMPRESSION_ERROR' } });
}

// Huffman decoding walks a binary trie: children[2n] / children[2n+1] are the 0 / 1 successors of
// node n (0 = none); symbols[n] is the symbol ending at n, or -1.
const trie = (() => {
  const children: number[] = [0, 0];
  const symbols: number[] = [-1];
  const add = (code: number, length: number, symbol: number): void => {
    let node = 0;
    for (let bit = length - 1; bit >= 0; bit--) {
      const slot = 2 * node + ((code >>> bit) & 1);
      let next = children[slot] ?? 0;
      if (next === 0) {
        next = symbols.length;
        symbols.push(-1);
        children.push(0, 0);
        children[slot] = next;
      }
      node = next;
    }
    symbols[node] = symbol;
  };
  for (const [symbol, [code, length]] of HUFFMAN.entries()) add(code, length, symbol);
  add(0x3fffffff, 30, EOS);
  return { children: Int32Array.from(children), symbols: Int32Array.from(symbols) };
})();

export function huffmanDecode(input: Buffer): Buffer {
  const out: number[] = [];
  let node = 0;
  let pendingBits = 0; // bits read since the last complete symbol
  let pendingAllOnes = true;
  for (const byte of input) {
    for (let bit = 7; bit >= 0; bit--) {
      const b = (byte >>> bit) & 1;
      node = trie.children[2 * node + b] ?? 0;
      pendingBits++;
      pendingAllOnes &&= b === 1;
      const symbol = trie.symbols[node] ?? -1;
      if (symbol === EOS) throw compressionError('Huffman string contains EOS');
      if (symbol >= 0) {
        out.push(symbol);
        node = 0;
        pendingBits = 0;
        pendingAllOnes = true;
      }
    }
  }
  // §5.2: padding is the most significant bits of EOS (all ones) and shorter than a byte.
  if (pendingBits > 7 || !pendingAllOnes) throw compressionError('invalid Huffman padding');
  return Buffer.from(out);
}

export function huffmanEncode(input: Buffer): Buffer {
  const out: number[] = [];
  let acc = 0;
  let accBits = 0;
  for (const byte of input) {
    const [code, length] = HUFFMAN[byte] as readonly [number, number];
    for (let bit = length - 1; bit >= 0; bit--) {
      acc = (acc << 1) | ((code >>> bit) & 1);
      if (++accBits === 8) {
        out.push(acc);
        acc = 0;
        accBits = 0;
      }
    }
  }
  if (accBits > 0) out.push(((acc << (8 - accBits)) | (0xff >>> accBits)) & 0xff);
  return Buffer.from(out);
}

/** Appends an HPACK integer with an N-bit prefix; `first` holds the representation's flag bits. */
export function encodeInteger(out: number[], first: number, prefixBits: number, value: number): void {
  const max = (1 << prefixBits) - 1;
  if (value < max) {
    out.push(first | value);
    return;
  }
  out.push(first | max);
  let rest = value - max;
  while (rest >= 128) {
    out.push((rest % 128) + 128);
    rest = Math.floor(rest / 128);
  }
  out.push(rest);
}

function encodeString(out: number[], bytes: Buffer): void {
  encodeInteger(out, 0x00, 7, bytes.length);
  for (const b of bytes) out.push(b);
}

/**
 * Encodes fields with static-table references and literals "without indexing" (or "never
 * indexed" where the sender chose that), no Huffman: the receiver's dynamic table stays empty.
 */
export function encodeStaticOnly(fields: readonly HeaderField[]): Buffer {
  const out: number[] = [];
  for (const field of fields) {
    const name = field.name.toString('latin1');
    const pair = field.neverIndexed ? undefined : staticByPair.get(`${name}\0${field.value.toString('latin1')}`);
    if (pair !== undefined) {
      encodeInteger(out, 0x80, 7, pair);
      continue;
    }
    const nameIndex = staticByName.get(name) ?? 0;
    encodeInteger(out, field.neverIndexed ? 0x10 : 0x00, 4, nameIndex);
    if (nameIndex === 0) encodeString(out, field.name);
    encodeString(out, field.value);
  }
  return Buffer.from(out);
}

interface Entry {
  readonly name: Buffer;
  readonly value: Buffer;
}

/**
 * Decodes the header blocks of one direction of one connection, in order. Strict like nghttp2:
 * bad indexes, bad Huffman, oversized strings or integers, table size updates above the
 * SETTINGS limit or after the first field are COMPRESSION_ERRORs.
 */
export class HpackDecoder {
  /** Newest first, as HPACK indexes them. */
  private readonly entries: Entry[] = [];
  private size = 0;
  private maxSize: number;

  /** @param settingsMaxSize the receiver's SETTINGS_HEADER_TABLE_SIZE (what the encoder may use) */
  constructor(private readonly settingsMaxSize: number) {
    this.maxSize = settingsMaxSize;
  }

  /** @param maxListBytes cap on the decoded list (RFC 9113 header list size), against blow-up */
  decode(block: Buffer, maxListBytes: number): HeaderField[] {
    const fields: HeaderField[] = [];
    let listBytes = 0;
    let pos = 0;
    const byte = (): number => {
      const b = block[pos++];
      if (b === undefined) throw compressionError('header block truncated');
      return b;
    };
    const integer = (prefixBits: number): number => {
      const max = (1 << prefixBits) - 1;
      let value = byte() & max;
      if (value < max) return value;
      for (let shift = 0; ; shift += 7) {
        const b = byte();
        value += (b & 0x7f) * 2 ** shift;
        if (value > MAX_INTEGER) throw compressionError('integer too large');
        if ((b & 0x80) === 0) return value;
      }
    };
    const string = (): Buffer => {
      const huffman = ((block[pos] ?? 0) & 0x80) !== 0;
      const length = integer(7);
      if (length > block.length - pos) throw compressionError('string longer than the header block');
      const raw = block.subarray(pos, pos + length);
      pos += length;
      return huffman ? huffmanDecode(raw) : Buffer.from(raw);
    };
    const lookup = (index: number): Entry => {
      if (index === 0) throw compressionError('index 0');
      const fromStatic = STATIC_TABLE[index - 1];
      if (fromStatic !== undefined) {
        return { name: Buffer.from(fromStatic[0], 'latin1'), value: Buffer.from(fromStatic[1], 'latin1') };
      }
      const entry = this.entries[index - STATIC_TABLE.length - 1];
      if (entry === undefined) throw compressionError(`index ${index} outside the tables`);
      return entry;
    };
    const emit = (name: Buffer, value: Buffer, neverIndexed: boolean): void => {
      listBytes += name.length + value.length + ENTRY_OVERHEAD;
      if (listBytes > maxListBytes) {
        throw new PullguardError('TOO_LARGE', `header list larger than ${maxListBytes} bytes`, {
          facts: { http2Error: 'ENHANCE_YOUR_CALM' },
        });
      }
      fields.push({ name, value, neverIndexed });
    };

    while (pos < block.length) {
      const first = block[pos] ?? 0;
      if (first & 0x80) {
        const entry = lookup(integer(7));
        emit(entry.name, entry.value, false);
      } else if (first & 0x40) {
        const nameIndex = integer(6);
        const name = nameIndex === 0 ? string() : lookup(nameIndex).name;
        const value = string();
        this.insert({ name, value });
        emit(name, value, false);
      } else if (first & 0x20) {
        // §4.2: only at the start of a block (nghttp2 enforces this too).
        if (fields.length > 0) throw compressionError('dynamic table size update after a header field');
        const size = integer(5);
        if (size > this.settingsMaxSize) throw compressionError(`dynamic table size ${size} above ${this.settingsMaxSize}`);
        this.maxSize = size;
        this.evict(0);
      } else {
        const neverIndexed = (first & 0x10) !== 0;
        const nameIndex = integer(4);
        const name = nameIndex === 0 ? string() : lookup(nameIndex).name;
        emit(name, string(), neverIndexed);
      }
    }
    return fields;
  }

  private insert(entry: Entry): void {
    const cost = entry.name.length + entry.value.length + ENTRY_OVERHEAD;
    this.evict(cost);
    // §4.4: an entry larger than the table empties it and is not added.
    if (cost > this.maxSize) return;
    this.entries.unshift(entry);
    this.size += cost;
  }

  private evict(room: number): void {
    while (this.size + room > this.maxSize && this.entries.length > 0) {
      const old = this.entries.pop() as Entry;
      this.size -= old.name.length + old.value.length + ENTRY_OVERHEAD;
    }
  }
}
