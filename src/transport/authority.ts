/**
 * kubelet and crictl up to 1.30 dial the bare socket path, so grpc-go sends that path
 * (`/run/pullguard/pullguard.sock`) as the HTTP/2 `:authority`. nghttp2 — under Node's http2 and so
 * grpc-js — rejects an authority containing `/` with RST_STREAM(PROTOCOL_ERROR), and Node exposes no
 * option to relax that check. This layer sits between the accepted unix socket and the HTTP/2 server
 * and replaces such an authority with `localhost` (what kubelet 1.31+ sends) before nghttp2 sees it.
 *
 * How: the client-to-server byte stream is split into frames. Every frame except HEADERS and
 * CONTINUATION passes through untouched (payloads are streamed, not buffered). Every header block is
 * decoded with a full HPACK decoder that tracks the client's dynamic table, the authority is
 * replaced, and the block is re-encoded with the static table only — so the server's decoder table
 * stays empty and can never drift from what the client meant. Padding is dropped (it carries no
 * meaning in HEADERS and does not count toward flow control); PRIORITY and END_STREAM are kept. All
 * other validation stays with nghttp2, which still sees every field as sent. Server-to-client bytes
 * pass through untouched.
 *
 * Anything this layer cannot re-encode faithfully (an HPACK error, a header block interleaved with
 * other frames, an oversized block) is a connection error in RFC 9113 anyway: the connection is
 * closed, without guessing.
 */
import { Duplex } from 'node:stream';
import { PullguardError } from '../domain/errors.js';
import { encodeStaticOnly, HpackDecoder, type HeaderField } from './authority-hpack.js';

export interface LocalAuthorityOptions {
  /** Replacement for a socket-path authority. */
  readonly authority?: string;
  /** The HTTP/2 server's SETTINGS_HEADER_TABLE_SIZE (Node's default is 4096; grpc-js keeps it). */
  readonly headerTableSize?: number;
  /** Cap on one compressed header block (HEADERS + CONTINUATION payloads). */
  readonly maxHeaderBlockBytes?: number;
  /**
   * Cap on one decoded header list (RFC 9113 size: octets + 32 per field). Above the server's own
   * 64 KiB limit so that the server keeps answering moderately large blocks with its usual
   * per-stream reset; this cap only bounds memory against HPACK amplification.
   */
  readonly maxHeaderListBytes?: number;
  /** Told why a connection was closed (for logging); the socket is already being destroyed. */
  readonly onError?: (err: PullguardError) => void;
}

const DEFAULTS = {
  authority: 'localhost',
  headerTableSize: 4096,
  maxHeaderBlockBytes: 64 * 1024,
  maxHeaderListBytes: 128 * 1024,
} as const;

export const CLIENT_PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');
const FRAME_HEADER_BYTES = 9;
/** Every HTTP/2 peer accepts frames up to 16 KiB (SETTINGS_MAX_FRAME_SIZE's floor). */
const OUTPUT_FRAME_BYTES = 16_384;

export const FRAME_TYPE = { DATA: 0x0, HEADERS: 0x1, PRIORITY: 0x2, RST_STREAM: 0x3, SETTINGS: 0x4, CONTINUATION: 0x9 } as const;
export const FLAG = { END_STREAM: 0x1, END_HEADERS: 0x4, PADDED: 0x8, PRIORITY: 0x20 } as const;

/**
 * An authority never contains `/` (RFC 3986 §3.2), so such a value is a socket path or a
 * `unix://` target, which names nothing to a server on a unix socket. Only visible ASCII is
 * rewritten: other malformed values still reach nghttp2 and are rejected as before.
 */
export function isSocketPathAuthority(value: Buffer): boolean {
  let slash = false;
  for (const b of value) {
    if (b < 0x21 || b > 0x7e) return false;
    if (b === 0x2f) slash = true;
  }
  return slash;
}

function protocolError(message: string, http2Error = 'PROTOCOL_ERROR'): PullguardError {
  return new PullguardError('INVALID_ARGUMENT', `HTTP/2: ${message}`, { facts: { http2Error } });
}

interface OpenBlock {
  readonly streamId: number;
  readonly flags: number;
  readonly priority: Buffer | undefined;
  readonly fragments: Buffer[];
  bytes: number;
}

/**
 * The client-to-server half as a pure byte transformer: feed it what the client sent, forward what
 * it returns. Throws PullguardError (facts.http2Error says which RFC 9113 error it is) when the
 * connection must be closed; after that it must not be used again.
 */
export class ClientStreamRewriter {
  private readonly authority: Buffer;
  private readonly maxHeaderBlockBytes: number;
  private readonly maxHeaderListBytes: number;
  private readonly decoder: HpackDecoder;
  private pending: Buffer = Buffer.alloc(0);
  private prefaceSeen = false;
  /** Not an HTTP/2 client: pass everything through and let the server reject it. */
  private passthrough = false;
  /** Payload bytes of the current pass-through frame still to forward. */
  private streaming = 0;
  private open: OpenBlock | undefined;
  /** How many :authority values were replaced, for tests and metrics. */
  rewritten = 0;

  constructor(options: LocalAuthorityOptions = {}) {
    this.authority = Buffer.from(options.authority ?? DEFAULTS.authority, 'latin1');
    this.maxHeaderBlockBytes = options.maxHeaderBlockBytes ?? DEFAULTS.maxHeaderBlockBytes;
    this.maxHeaderListBytes = options.maxHeaderListBytes ?? DEFAULTS.maxHeaderListBytes;
    this.decoder = new HpackDecoder(options.headerTableSize ?? DEFAULTS.headerTableSize);
  }

  push(chunk: Buffer): Buffer[] {
    if (this.passthrough) return [chunk];
    const out: Buffer[] = [];
    let input = this.pending.length > 0 ? Buffer.concat([this.pending, chunk]) : chunk;
    this.pending = Buffer.alloc(0);

    if (!this.prefaceSeen) {
      const n = Math.min(input.length, CLIENT_PREFACE.length);
      if (!input.subarray(0, n).equals(CLIENT_PREFACE.subarray(0, n))) {
        this.passthrough = true;
        return [input];
      }
      if (n < CLIENT_PREFACE.length) {
        this.pending = input;
        return out;
      }
      this.prefaceSeen = true;
      out.push(CLIENT_PREFACE);
      input = input.subarray(CLIENT_PREFACE.length);
    }

    while (input.length > 0) {
      if (this.streaming > 0) {
        const n = Math.min(this.streaming, input.length);
        out.push(input.subarray(0, n));
        this.streaming -= n;
        input = input.subarray(n);
        continue;
      }
      if (input.length < FRAME_HEADER_BYTES) break;
      const length = input.readUIntBE(0, 3);
      const type = input[3] as number;
      const flags = input[4] as number;
      const streamId = input.readUInt32BE(5) & 0x7fffffff;

      if (type !== FRAME_TYPE.HEADERS && type !== FRAME_TYPE.CONTINUATION) {
        if (this.open !== undefined) throw protocolError(`frame type ${type} inside a header block`);
        out.push(input.subarray(0, FRAME_HEADER_BYTES));
        this.streaming = length;
        input = input.subarray(FRAME_HEADER_BYTES);
        continue;
      }

      const blockSoFar = this.open?.bytes ?? 0;
      if (blockSoFar + length > this.maxHeaderBlockBytes + 256) {
        // Checked before buffering the payload; the +256 leaves room for padding and priority.
        throw new PullguardError('TOO_LARGE', `header block larger than ${this.maxHeaderBlockBytes} bytes`, {
          facts: { http2Error: 'ENHANCE_YOUR_CALM' },
        });
      }
      if (input.length < FRAME_HEADER_BYTES + length) break;
      const payload = input.subarray(FRAME_HEADER_BYTES, FRAME_HEADER_BYTES + length);
      input = input.subarray(FRAME_HEADER_BYTES + length);
      const block = type === FRAME_TYPE.HEADERS ? this.startBlock(streamId, flags, payload) : this.continueBlock(streamId, flags, payload);
      if (block !== undefined) out.push(...this.finishBlock(block));
    }
    if (input.length > 0) this.pending = Buffer.from(input);
    return out;
  }

  private startBlock(streamId: number, flags: number, payload: Buffer): OpenBlock | undefined {
    if (this.open !== undefined) throw protocolError('HEADERS inside a header block');
    let start = 0;
    let end = payload.length;
    if (flags & FLAG.PADDED) {
      const padLength = payload[0];
      if (padLength === undefined) throw protocolError('PADDED HEADERS without a pad length', 'FRAME_SIZE_ERROR');
      start = 1;
      end -= padLength;
    }
    let priority: Buffer | undefined;
    if (flags & FLAG.PRIORITY) {
      priority = Buffer.from(payload.subarray(start, start + 5));
      start += 5;
    }
    if (end < start) throw protocolError('HEADERS padding or priority longer than the frame');
    const block: OpenBlock = { streamId, flags, priority, fragments: [payload.subarray(start, end)], bytes: end - start };
    return this.accept(block, flags);
  }

  private continueBlock(streamId: number, flags: number, payload: Buffer): OpenBlock | undefined {
    const block = this.open;
    if (block === undefined || block.streamId !== streamId) throw protocolError('CONTINUATION without a header block on its stream');
    block.fragments.push(payload);
    block.bytes += payload.length;
    return this.accept(block, flags);
  }

  private accept(block: OpenBlock, flags: number): OpenBlock | undefined {
    if (block.bytes > this.maxHeaderBlockBytes) {
      throw new PullguardError('TOO_LARGE', `header block larger than ${this.maxHeaderBlockBytes} bytes`, {
        facts: { http2Error: 'ENHANCE_YOUR_CALM' },
      });
    }
    if (flags & FLAG.END_HEADERS) {
      this.open = undefined;
      return block;
    }
    // The fragment views point into a chunk that will be released: keep copies.
    block.fragments[block.fragments.length - 1] = Buffer.from(block.fragments[block.fragments.length - 1] as Buffer);
    this.open = block;
    return undefined;
  }

  private finishBlock(block: OpenBlock): Buffer[] {
    const fields = this.decoder.decode(Buffer.concat(block.fragments), this.maxHeaderListBytes).map((field): HeaderField => {
      if (field.name.toString('latin1') !== ':authority' || !isSocketPathAuthority(field.value)) return field;
      this.rewritten++;
      return { name: field.name, value: this.authority, neverIndexed: field.neverIndexed };
    });
    return headerFrames(block.streamId, block.flags & FLAG.END_STREAM, block.priority, encodeStaticOnly(fields));
  }
}

/** A header block as HEADERS + CONTINUATION frames of at most 16 KiB each. */
export function headerFrames(streamId: number, endStream: number, priority: Buffer | undefined, block: Buffer): Buffer[] {
  const frames: Buffer[] = [];
  const first = Buffer.concat(priority === undefined ? [] : [priority]);
  let offset = 0;
  let type: number = FRAME_TYPE.HEADERS;
  do {
    const prefix = type === FRAME_TYPE.HEADERS ? first : Buffer.alloc(0);
    const take = Math.min(block.length - offset, OUTPUT_FRAME_BYTES - prefix.length);
    const last = offset + take >= block.length;
    let flags = last ? FLAG.END_HEADERS : 0;
    if (type === FRAME_TYPE.HEADERS) flags |= endStream | (priority === undefined ? 0 : FLAG.PRIORITY);
    frames.push(frameHeader(prefix.length + take, type, flags, streamId), prefix, block.subarray(offset, offset + take));
    offset += take;
    type = FRAME_TYPE.CONTINUATION;
  } while (offset < block.length);
  return frames.filter((b) => b.length > 0);
}

export function frameHeader(length: number, type: number, flags: number, streamId: number): Buffer {
  const header = Buffer.alloc(FRAME_HEADER_BYTES);
  header.writeUIntBE(length, 0, 3);
  header[3] = type;
  header[4] = flags;
  header.writeUInt32BE(streamId & 0x7fffffff, 5);
  return header;
}

/**
 * Wraps an accepted connection (a `net.Socket` from the unix-socket server) so that grpc-js sees
 * `:authority: localhost` where the client sent its socket path. Hand the result to
 * `grpcServer.createConnectionInjector(credentials).injectConnection(duplex)`.
 * Closing or destroying either side closes the other.
 */
export function acceptLocalAuthority(socket: Duplex, options: LocalAuthorityOptions = {}): Duplex {
  const rewriter = new ClientStreamRewriter(options);
  const duplex = new Duplex({
    read() {
      socket.resume();
    },
    write(chunk: Buffer, _encoding, callback) {
      socket.write(chunk, callback);
    },
    final(callback) {
      socket.end(callback);
    },
    destroy(err, callback) {
      socket.destroy();
      callback(err);
    },
  });

  socket.on('data', (chunk: Buffer) => {
    let frames: Buffer[];
    try {
      frames = rewriter.push(chunk);
    } catch (err) {
      const failure = err instanceof PullguardError ? err : new PullguardError('INTERNAL', 'HTTP/2 rewrite failed', { cause: err });
      options.onError?.(failure);
      // Closed like a peer that went away: a connection error either way, and the HTTP/2 session
      // (not our caller) owns error reporting for its socket.
      socket.destroy();
      duplex.destroy();
      return;
    }
    let more = true;
    for (const frame of frames) more = duplex.push(frame) && more;
    if (!more) socket.pause();
  });
  socket.on('end', () => duplex.push(null));
  socket.on('error', (err) => duplex.destroy(err));
  socket.on('close', () => {
    if (!duplex.destroyed) duplex.destroy();
  });
  return duplex;
}
