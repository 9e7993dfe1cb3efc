import http2 from 'node:http2';
import net from 'node:net';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isPullguardError } from '../../../src/domain/errors.js';
import { encodeInteger, HpackDecoder, huffmanDecode, huffmanEncode, type HeaderField } from '../../../src/transport/authority-hpack.js';
import {
  acceptLocalAuthority,
  CLIENT_PREFACE,
  ClientStreamRewriter,
  FLAG,
  FRAME_TYPE,
  frameHeader,
  isSocketPathAuthority,
} from '../../../src/transport/authority.js';

const SOCKET_PATH = '/run/pullguard/pullguard.sock';
const SETTINGS = frameHeader(0, FRAME_TYPE.SETTINGS, 0, 0);

// --- a tiny client-side HPACK encoder that can produce every representation -------------------
type Rep =
  | { kind: 'indexed'; index: number }
  | { kind: 'incremental' | 'without' | 'never'; nameIndex?: number; name?: string; value: string; huffman?: boolean }
  | { kind: 'size'; size: number };

function str(out: number[], s: string, huffman = false): void {
  const raw = Buffer.from(s, 'latin1');
  const bytes = huffman ? huffmanEncode(raw) : raw;
  encodeInteger(out, huffman ? 0x80 : 0, 7, bytes.length);
  out.push(...bytes);
}

function block(...reps: Rep[]): Buffer {
  const out: number[] = [];
  for (const rep of reps) {
    if (rep.kind === 'indexed') encodeInteger(out, 0x80, 7, rep.index);
    else if (rep.kind === 'size') encodeInteger(out, 0x20, 5, rep.size);
    else {
      const [first, bits] = rep.kind === 'incremental' ? [0x40, 6] : rep.kind === 'never' ? [0x10, 4] : [0x00, 4];
      encodeInteger(out, first, bits, rep.nameIndex ?? 0);
      if (!rep.nameIndex) str(out, rep.name ?? '', rep.huffman);
      str(out, rep.value, rep.huffman);
    }
  }
  return Buffer.from(out);
}

const GRPC_REQUEST: Rep[] = [
  { kind: 'indexed', index: 3 }, // :method POST
  { kind: 'indexed', index: 6 }, // :scheme http
  { kind: 'incremental', nameIndex: 4, value: '/runtime.v1.ImageService/ImageFsInfo', huffman: true },
  { kind: 'incremental', name: 'content-type', value: 'application/grpc', huffman: true },
  { kind: 'incremental', name: 'user-agent', value: 'grpc-go/1.33.3' },
  { kind: 'incremental', name: 'te', value: 'trailers' },
  { kind: 'never', name: 'authorization', value: 'Bearer s3cret' },
];

interface Frame {
  type: number;
  flags: number;
  streamId: number;
  payload: Buffer;
}

function parseFrames(bytes: Buffer): Frame[] {
  expect(bytes.subarray(0, CLIENT_PREFACE.length)).toEqual(CLIENT_PREFACE);
  const frames: Frame[] = [];
  let pos = CLIENT_PREFACE.length;
  while (pos < bytes.length) {
    const length = bytes.readUIntBE(pos, 3);
    frames.push({ type: bytes[pos + 3]!, flags: bytes[pos + 4]!, streamId: bytes.readUInt32BE(pos + 5), payload: bytes.subarray(pos + 9, pos + 9 + length) });
    pos += 9 + length;
  }
  expect(pos).toBe(bytes.length);
  return frames;
}

/** Decodes the header blocks the server would see, with one decoder for the connection. */
function serverView(frames: Frame[]): { streamId: number; flags: number; fields: [string, string][] }[] {
  const decoder = new HpackDecoder(4096);
  const blocks: { streamId: number; flags: number; fields: [string, string][] }[] = [];
  let open: { streamId: number; flags: number; parts: Buffer[] } | undefined;
  for (const frame of frames) {
    if (frame.type === FRAME_TYPE.HEADERS) {
      expect(frame.flags & FLAG.PADDED).toBe(0);
      const start = frame.flags & FLAG.PRIORITY ? 5 : 0;
      open = { streamId: frame.streamId, flags: frame.flags, parts: [frame.payload.subarray(start)] };
    } else if (frame.type === FRAME_TYPE.CONTINUATION) {
      open!.parts.push(frame.payload);
    } else continue;
    if (frame.flags & FLAG.END_HEADERS) {
      const raw = Buffer.concat(open!.parts);
      const fields = decoder.decode(raw, 1 << 20).map((f): [string, string] => [f.name.toString('latin1'), f.value.toString('latin1')]);
      // Static-table only: a fresh decoder reads the block the same way.
      expect(new HpackDecoder(4096).decode(raw, 1 << 20).map((f) => f.value.toString('latin1'))).toEqual(fields.map((f) => f[1]));
      blocks.push({ streamId: open!.streamId, flags: open!.flags, fields });
      open = undefined;
    }
  }
  return blocks;
}

function rewrite(input: Buffer, chunkSize = input.length): Buffer {
  const rewriter = new ClientStreamRewriter();
  const out: Buffer[] = [];
  for (let i = 0; i < input.length; i += chunkSize) out.push(...rewriter.push(input.subarray(i, i + chunkSize)));
  return Buffer.concat(out);
}

function expectConnectionError(input: Buffer, code: string, http2Error: string, maxHeaderBlockBytes = 1024): void {
  let thrown: unknown;
  try {
    new ClientStreamRewriter({ maxHeaderBlockBytes }).push(input);
  } catch (err) {
    thrown = err;
  }
  expect(isPullguardError(thrown, code as never)).toBe(true);
  expect((thrown as { facts: Record<string, unknown> }).facts.http2Error).toBe(http2Error);
}

describe('HPACK Huffman', () => {
  it('round-trips every octet', () => {
    const all = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
    expect(huffmanDecode(huffmanEncode(all))).toEqual(all);
    expect(huffmanDecode(huffmanEncode(Buffer.from(SOCKET_PATH))).toString()).toBe(SOCKET_PATH);
  });
  it('matches RFC 7541 C.4.1 ("www.example.com")', () => {
    expect(huffmanEncode(Buffer.from('www.example.com')).toString('hex')).toBe('f1e3c2e5f23a6ba0ab90f4ff');
  });
  it('rejects padding longer than 7 bits, padding with zeros, and EOS', () => {
    const encoded = huffmanEncode(Buffer.from('a')); // 00011 + 111 padding
    expect(() => huffmanDecode(Buffer.concat([encoded, Buffer.from([0xff])]))).toThrow(/padding/);
    expect(() => huffmanDecode(Buffer.from([0x18]))).toThrow(/padding/);
    expect(() => huffmanDecode(Buffer.from([0xff, 0xff, 0xff, 0xff]))).toThrow(/EOS/);
  });
});

describe('isSocketPathAuthority', () => {
  it.each([
    [SOCKET_PATH, true],
    ['unix:///run/x.sock', true],
    ['localhost', false],
    ['pullguard.sock', false],
    ['[::1]:10010', false],
    ['/run/with space', false],
    ['', false],
  ])('%j → %s', (value, expected) => {
    expect(isSocketPathAuthority(Buffer.from(value))).toBe(expected);
  });
});

describe('ClientStreamRewriter', () => {
  it('rewrites a Huffman-coded, indexed-later socket path and keeps every other field', () => {
    const first = block(...GRPC_REQUEST, { kind: 'incremental', nameIndex: 1, value: SOCKET_PATH, huffman: true });
    // The second request leans on the client's dynamic table: 62 = authority (newest), then te,
    // user-agent, content-type, :path (authorization was never indexed).
    const second = block(
      { kind: 'indexed', index: 3 },
      { kind: 'indexed', index: 6 },
      { kind: 'indexed', index: 66 },
      { kind: 'indexed', index: 62 },
      { kind: 'indexed', index: 65 },
      { kind: 'indexed', index: 64 },
      { kind: 'indexed', index: 63 },
    );
    const data = Buffer.concat([frameHeader(5, FRAME_TYPE.DATA, FLAG.END_STREAM, 1), Buffer.from([0, 0, 0, 0, 0])]);
    const input = Buffer.concat([
      CLIENT_PREFACE,
      SETTINGS,
      frameHeader(first.length, FRAME_TYPE.HEADERS, FLAG.END_HEADERS, 1),
      first,
      data,
      frameHeader(second.length, FRAME_TYPE.HEADERS, FLAG.END_HEADERS | FLAG.END_STREAM, 3),
      second,
    ]);
    for (const chunkSize of [input.length, 1, 7]) {
      const frames = parseFrames(rewrite(input, chunkSize));
      expect(frames.map((f) => f.type)).toEqual([FRAME_TYPE.SETTINGS, FRAME_TYPE.HEADERS, FRAME_TYPE.DATA, FRAME_TYPE.HEADERS]);
      expect(Buffer.concat([frameHeader(5, FRAME_TYPE.DATA, FLAG.END_STREAM, 1), frames[2]!.payload])).toEqual(data);
      const [a, b] = serverView(frames);
      expect(a!.fields).toEqual([
        [':method', 'POST'],
        [':scheme', 'http'],
        [':path', '/runtime.v1.ImageService/ImageFsInfo'],
        ['content-type', 'application/grpc'],
        ['user-agent', 'grpc-go/1.33.3'],
        ['te', 'trailers'],
        ['authorization', 'Bearer s3cret'],
        [':authority', 'localhost'],
      ]);
      expect(b!.fields).toEqual([
        [':method', 'POST'],
        [':scheme', 'http'],
        [':path', '/runtime.v1.ImageService/ImageFsInfo'],
        [':authority', 'localhost'],
        ['content-type', 'application/grpc'],
        ['user-agent', 'grpc-go/1.33.3'],
        ['te', 'trailers'],
      ]);
      expect(b!.flags & FLAG.END_STREAM).toBe(FLAG.END_STREAM);
      expect(a!.flags & FLAG.END_STREAM).toBe(0);
    }
  });

  it('keeps never-indexed fields never indexed, including a rewritten authority', () => {
    const input = block({ kind: 'never', nameIndex: 1, value: SOCKET_PATH }, { kind: 'never', name: 'x-token', value: 'abc' });
    const out = parseFrames(rewrite(Buffer.concat([CLIENT_PREFACE, frameHeader(input.length, FRAME_TYPE.HEADERS, FLAG.END_HEADERS, 1), input])));
    const fields: HeaderField[] = new HpackDecoder(4096).decode(out[0]!.payload, 1 << 20);
    expect(fields.map((f) => [f.name.toString(), f.value.toString(), f.neverIndexed])).toEqual([
      [':authority', 'localhost', true],
      ['x-token', 'abc', true],
    ]);
  });

  it('leaves valid authorities and non-path values alone', () => {
    for (const value of ['localhost', 'pullguard.sock', '/bad path']) {
      const input = block({ kind: 'without', nameIndex: 1, value });
      const frames = parseFrames(rewrite(Buffer.concat([CLIENT_PREFACE, frameHeader(input.length, FRAME_TYPE.HEADERS, FLAG.END_HEADERS, 1), input])));
      expect(serverView(frames)[0]!.fields).toEqual([[':authority', value]]);
    }
  });

  it('joins CONTINUATION frames, drops padding and keeps PRIORITY', () => {
    const raw = block(...GRPC_REQUEST, { kind: 'without', nameIndex: 1, value: SOCKET_PATH, huffman: true });
    const priority = Buffer.from([0x80, 0, 0, 0, 0x10]); // exclusive dependency on stream 16... weight 17
    const padding = Buffer.alloc(9);
    const headersPayload = Buffer.concat([Buffer.from([padding.length]), priority, raw.subarray(0, 10), padding]);
    const input = Buffer.concat([
      CLIENT_PREFACE,
      frameHeader(headersPayload.length, FRAME_TYPE.HEADERS, FLAG.PADDED | FLAG.PRIORITY | FLAG.END_STREAM, 1),
      headersPayload,
      frameHeader(20, FRAME_TYPE.CONTINUATION, 0, 1),
      raw.subarray(10, 30),
      frameHeader(raw.length - 30, FRAME_TYPE.CONTINUATION, FLAG.END_HEADERS, 1),
      raw.subarray(30),
    ]);
    for (const chunkSize of [input.length, 3]) {
      const frames = parseFrames(rewrite(input, chunkSize));
      expect(frames).toHaveLength(1);
      expect(frames[0]!.flags).toBe(FLAG.PRIORITY | FLAG.END_STREAM | FLAG.END_HEADERS);
      expect(frames[0]!.payload.subarray(0, 5)).toEqual(priority);
      expect(serverView(frames)[0]!.fields.at(-1)).toEqual([':authority', 'localhost']);
    }
  });

  it('splits a re-encoded block larger than 16 KiB into CONTINUATION frames', () => {
    const big = 'x'.repeat(30_000);
    const raw = block({ kind: 'without', nameIndex: 1, value: SOCKET_PATH }, { kind: 'without', name: 'x-big', value: big, huffman: true });
    const input = Buffer.concat([CLIENT_PREFACE, frameHeader(raw.length, FRAME_TYPE.HEADERS, FLAG.END_HEADERS, 1), raw]);
    const frames = parseFrames(rewrite(input));
    expect(frames.map((f) => [f.type, f.flags, f.payload.length <= 16_384])).toEqual([
      [FRAME_TYPE.HEADERS, 0, true],
      [FRAME_TYPE.CONTINUATION, FLAG.END_HEADERS, true],
    ]);
    expect(serverView(frames)[0]!.fields).toEqual([
      [':authority', 'localhost'],
      ['x-big', big],
    ]);
  });

  it('follows dynamic table size updates and evictions', () => {
    const first = block({ kind: 'incremental', name: 'x-a', value: 'a'.repeat(40) }, { kind: 'incremental', nameIndex: 1, value: SOCKET_PATH });
    // Shrinking to 100 octets keeps only the authority entry (32 + 10 + 29 = 71).
    const second = block({ kind: 'size', size: 100 }, { kind: 'indexed', index: 62 });
    const input = Buffer.concat([
      CLIENT_PREFACE,
      frameHeader(first.length, FRAME_TYPE.HEADERS, FLAG.END_HEADERS, 1),
      first,
      frameHeader(second.length, FRAME_TYPE.HEADERS, FLAG.END_HEADERS, 3),
      second,
    ]);
    expect(serverView(parseFrames(rewrite(input)))[1]!.fields).toEqual([[':authority', 'localhost']]);
    const stale = block({ kind: 'size', size: 100 }, { kind: 'indexed', index: 63 });
    const bad = Buffer.concat([
      CLIENT_PREFACE,
      frameHeader(first.length, FRAME_TYPE.HEADERS, FLAG.END_HEADERS, 1),
      first,
      frameHeader(stale.length, FRAME_TYPE.HEADERS, FLAG.END_HEADERS, 3),
      stale,
    ]);
    expectConnectionError(bad, 'INVALID_ARGUMENT', 'COMPRESSION_ERROR');
  });

  it('passes a non-HTTP/2 byte stream through untouched', () => {
    const rewriter = new ClientStreamRewriter();
    const http1 = Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n');
    expect(Buffer.concat(rewriter.push(http1))).toEqual(http1);
  });

  describe('closes the connection instead of guessing', () => {
    const headers = (payload: Buffer, flags: number = FLAG.END_HEADERS): Buffer =>
      Buffer.concat([frameHeader(payload.length, FRAME_TYPE.HEADERS, flags, 1), payload]);
    it.each<[string, Buffer, string, string, number?]>([
      ['an oversized header block', Buffer.concat([CLIENT_PREFACE, frameHeader(4000, FRAME_TYPE.HEADERS, 0, 1)]), 'TOO_LARGE', 'ENHANCE_YOUR_CALM'],
      [
        'CONTINUATIONs adding up past the cap',
        Buffer.concat([CLIENT_PREFACE, headers(Buffer.alloc(600, 0x82), 0), frameHeader(600, FRAME_TYPE.CONTINUATION, 0, 1), Buffer.alloc(600, 0x82)]),
        'TOO_LARGE',
        'ENHANCE_YOUR_CALM',
      ],
      [
        'a DATA frame inside a header block',
        Buffer.concat([CLIENT_PREFACE, headers(block({ kind: 'indexed', index: 2 }), 0), frameHeader(0, FRAME_TYPE.DATA, 0, 1)]),
        'INVALID_ARGUMENT',
        'PROTOCOL_ERROR',
      ],
      [
        'a CONTINUATION on another stream',
        Buffer.concat([
          CLIENT_PREFACE,
          headers(block({ kind: 'indexed', index: 2 }), 0),
          frameHeader(1, FRAME_TYPE.CONTINUATION, FLAG.END_HEADERS, 3),
          Buffer.from([0x82]),
        ]),
        'INVALID_ARGUMENT',
        'PROTOCOL_ERROR',
      ],
      [
        'padding longer than the frame',
        Buffer.concat([CLIENT_PREFACE, frameHeader(2, FRAME_TYPE.HEADERS, FLAG.END_HEADERS | FLAG.PADDED, 1), Buffer.from([2, 0x82])]),
        'INVALID_ARGUMENT',
        'PROTOCOL_ERROR',
      ],
      ['index outside the tables', Buffer.concat([CLIENT_PREFACE, headers(block({ kind: 'indexed', index: 62 }))]), 'INVALID_ARGUMENT', 'COMPRESSION_ERROR'],
      ['index 0', Buffer.concat([CLIENT_PREFACE, headers(Buffer.from([0x80]))]), 'INVALID_ARGUMENT', 'COMPRESSION_ERROR'],
      ['a table size above SETTINGS', Buffer.concat([CLIENT_PREFACE, headers(block({ kind: 'size', size: 4097 }))]), 'INVALID_ARGUMENT', 'COMPRESSION_ERROR'],
      [
        'a table size update after a field',
        Buffer.concat([CLIENT_PREFACE, headers(block({ kind: 'indexed', index: 2 }, { kind: 'size', size: 0 }))]),
        'INVALID_ARGUMENT',
        'COMPRESSION_ERROR',
      ],
      ['a truncated string', Buffer.concat([CLIENT_PREFACE, headers(Buffer.from([0x41, 0x05, 0x61]))]), 'INVALID_ARGUMENT', 'COMPRESSION_ERROR'],
      [
        'an HPACK bomb (decoded list over the cap)',
        Buffer.concat([CLIENT_PREFACE, headers(Buffer.concat([block({ kind: 'incremental', name: 'x', value: 'y'.repeat(4000) }), Buffer.alloc(900, 0xbe)]))]),
        'TOO_LARGE',
        'ENHANCE_YOUR_CALM',
        64 * 1024,
      ],
    ])('%s', (_name, input, code, http2Error, maxHeaderBlockBytes) => {
      expectConnectionError(input, code, http2Error, maxHeaderBlockBytes);
    });
  });
});

describe('acceptLocalAuthority with Node http2 (nghttp2 encoder: dynamic table, Huffman)', () => {
  let dir: string;
  let socket: string;
  let server: net.Server;
  let h2: http2.Http2Server;
  let bare: net.Server;
  let bareSocket: string;
  const seen: Record<string, string | string[] | undefined>[] = [];

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'pullguard-authority-'));
    socket = join(dir, 'h2.sock');
    h2 = http2.createServer();
    h2.on('stream', (stream, headers) => {
      seen.push({ ...headers });
      stream.respond({ ':status': 200 });
      stream.end('ok');
    });
    server = net.createServer((connection) => h2.emit('connection', acceptLocalAuthority(connection)));
    await new Promise<void>((resolve) => server.listen(socket, resolve));
    bareSocket = join(dir, 'bare.sock');
    bare = net.createServer((connection) => h2.emit('connection', connection));
    await new Promise<void>((resolve) => bare.listen(bareSocket, resolve));
  });
  afterAll(async () => {
    await new Promise<void>((resolve) => server.close(() => resolve()));
    await new Promise<void>((resolve) => bare.close(() => resolve()));
    await rm(dir, { recursive: true, force: true });
  });

  it('control: without the layer nghttp2 resets the stream', async () => {
    const client = http2.connect('http://localhost', { createConnection: () => net.connect(bareSocket) });
    try {
      const outcome = await new Promise<unknown>((resolve) => {
        const req = client.request({ ':path': '/', ':authority': SOCKET_PATH }, { endStream: true });
        req.on('response', (h) => resolve(h[':status']));
        req.on('error', (err: NodeJS.ErrnoException) => resolve(err.code));
        req.on('close', () => resolve(req.rstCode));
        req.resume();
      });
      expect(outcome).toBe('ERR_HTTP2_STREAM_ERROR');
    } finally {
      client.close();
    }
  });

  it('delivers every request with its headers intact and authority localhost', async () => {
    const client = http2.connect('http://localhost', { createConnection: () => net.connect(socket) });
    try {
      const requests = Array.from({ length: 40 }, (_, i) => ({
        ':method': 'POST',
        ':path': `/svc/${i % 3}`,
        ':authority': SOCKET_PATH,
        'content-type': 'application/grpc',
        'x-request': `r${i}-${'z'.repeat(i * 37)}`,
        'x-same': 'constant value',
      }));
      for (const headers of requests) {
        const status = await new Promise<number | undefined>((resolve, reject) => {
          const req = client.request(headers, { endStream: true });
          req.on('response', (h) => resolve(h[':status']));
          req.on('error', reject);
          req.resume();
        });
        expect(status).toBe(200);
      }
      expect(seen).toHaveLength(requests.length);
      seen.forEach((headers, i) => {
        expect(headers).toMatchObject({ ...requests[i], ':authority': 'localhost' });
      });
    } finally {
      client.close();
    }
  });
});
