/**
 * An HTTP/2 (gRPC) pass-through on a unix socket in front of containerd's socket, for pullguard's
 * `--backend`: every call goes through unchanged (headers, messages, trailers), and each
 * `/runtime.v1.ImageService/PullImage` request is recorded — the image and who the AuthConfig names,
 * with only a sha256 of the password (the proxy keeps no credential). So a test can tell that the
 * pod's credentials reached the runtime.
 *
 *   const proxy = await startCriRecordingProxy(join(dir, 'backend.sock'), containerd.socketPath);
 *   pullguard --backend unix://<proxy.socketPath>;   proxy.pulls  // [{ image, username, passwordSha256, serverAddress }]
 *   await proxy.close();
 *
 * The upstream session is made per need, so a containerd restart only fails the calls in flight.
 */
import { createHash } from 'node:crypto';
import { rm } from 'node:fs/promises';
import http2 from 'node:http2';
import net from 'node:net';

export interface RecordedPull {
  readonly image: string;
  readonly username: string;
  /** sha256 (hex) of AuthConfig.password, or '' when there is none. */
  readonly passwordSha256: string;
  readonly serverAddress: string;
  readonly at: number;
}

export interface CriRecordingProxy {
  readonly socketPath: string;
  readonly pulls: RecordedPull[];
  close(): Promise<void>;
}

/** Length-delimited and varint fields of one protobuf message: field number → values. */
function protoFields(buf: Buffer): Map<number, (Buffer | number)[]> {
  const fields = new Map<number, (Buffer | number)[]>();
  let i = 0;
  const varint = (): number => {
    let result = 0;
    let shift = 0;
    for (;;) {
      const b = buf[i++]!;
      result += (b & 0x7f) * 2 ** shift;
      if ((b & 0x80) === 0) return result;
      shift += 7;
    }
  };
  while (i < buf.length) {
    const key = varint();
    const field = Math.floor(key / 8);
    const wire = key & 7;
    let value: Buffer | number;
    if (wire === 0) value = varint();
    else if (wire === 2) {
      const len = varint();
      value = buf.subarray(i, i + len);
      i += len;
    } else if (wire === 1) {
      i += 8;
      continue;
    } else if (wire === 5) {
      i += 4;
      continue;
    } else break;
    fields.set(field, [...(fields.get(field) ?? []), value]);
  }
  return fields;
}

function text(fields: Map<number, (Buffer | number)[]>, n: number): string {
  const v = fields.get(n)?.[0];
  return Buffer.isBuffer(v) ? v.toString('utf8') : '';
}

/** PullImageRequest { ImageSpec image = 1 { string image = 1 }; AuthConfig auth = 2 { username 1, password 2, server_address 4 } }. */
function recordPull(body: Buffer): RecordedPull | undefined {
  if (body.length < 5 || body[0] !== 0) return undefined; // one uncompressed gRPC message
  const request = protoFields(body.subarray(5, 5 + body.readUInt32BE(1)));
  const spec = request.get(1)?.[0];
  const auth = request.get(2)?.[0];
  const authFields = Buffer.isBuffer(auth) ? protoFields(auth) : new Map<number, (Buffer | number)[]>();
  const password = text(authFields, 2);
  return {
    image: Buffer.isBuffer(spec) ? text(protoFields(spec), 1) : '',
    username: text(authFields, 1),
    passwordSha256: password === '' ? '' : createHash('sha256').update(password).digest('hex'),
    serverAddress: text(authFields, 4),
    at: Date.now(),
  };
}

export async function startCriRecordingProxy(socketPath: string, upstreamSocket: string): Promise<CriRecordingProxy> {
  const pulls: RecordedPull[] = [];
  let upstream: http2.ClientHttp2Session | undefined;
  const session = (): http2.ClientHttp2Session => {
    if (upstream === undefined || upstream.closed || upstream.destroyed) {
      const s = http2.connect('http://localhost', { createConnection: () => net.connect(upstreamSocket) });
      s.on('error', () => undefined);
      upstream = s;
    }
    return upstream;
  };

  const server = http2.createServer();
  const sessions = new Set<http2.ServerHttp2Session>();
  server.on('session', (s) => {
    sessions.add(s);
    s.on('error', () => undefined);
    s.once('close', () => sessions.delete(s));
  });
  server.on('stream', (stream, headers) => {
    const path = String(headers[':path'] ?? '');
    const forward: http2.OutgoingHttpHeaders = {};
    for (const [key, value] of Object.entries(headers)) {
      if (key === ':authority' || key === ':scheme' || key === 'connection') continue;
      forward[key] = value;
    }
    stream.on('error', () => undefined);
    let req: http2.ClientHttp2Stream;
    try {
      req = session().request(forward);
    } catch {
      stream.respond({ ':status': 200, 'content-type': 'application/grpc', 'grpc-status': '14', 'grpc-message': 'backend%20unavailable' }, { endStream: true });
      return;
    }
    req.on('error', () => {
      if (!stream.headersSent && !stream.destroyed)
        stream.respond(
          { ':status': 200, 'content-type': 'application/grpc', 'grpc-status': '14', 'grpc-message': 'backend%20unavailable' },
          { endStream: true },
        );
      else stream.destroy();
    });
    const chunks: Buffer[] = [];
    stream.on('data', (chunk: Buffer) => {
      if (path === '/runtime.v1.ImageService/PullImage') chunks.push(chunk);
      req.write(chunk);
    });
    stream.on('end', () => {
      req.end();
      if (chunks.length > 0) {
        const pull = recordPull(Buffer.concat(chunks));
        if (pull !== undefined) pulls.push(pull);
      }
    });
    stream.on('close', () => {
      if (!req.closed) req.close(http2.constants.NGHTTP2_CANCEL);
    });
    let trailers: http2.IncomingHttpHeaders | undefined;
    req.on('trailers', (t) => {
      trailers = t;
    });
    req.on('response', (responseHeaders, flags) => {
      const out: http2.OutgoingHttpHeaders = {};
      for (const [key, value] of Object.entries(responseHeaders)) if (!key.startsWith(':') || key === ':status') out[key] = value;
      // A trailers-only answer (an error before any message) ends with these headers.
      const trailersOnly = (flags & http2.constants.NGHTTP2_FLAG_END_STREAM) !== 0 || responseHeaders['grpc-status'] !== undefined;
      if (stream.destroyed) return;
      stream.respond(out, trailersOnly ? { endStream: true } : { waitForTrailers: true });
      if (trailersOnly) return;
      stream.on('wantTrailers', () => {
        const t: http2.OutgoingHttpHeaders = {};
        for (const [key, value] of Object.entries(trailers ?? {})) if (!key.startsWith(':')) t[key] = value;
        if (Object.keys(t).length === 0) t['grpc-status'] = '13';
        stream.sendTrailers(t);
      });
      req.on('data', (chunk: Buffer) => stream.write(chunk));
      req.on('end', () => stream.end());
    });
  });
  await rm(socketPath, { force: true });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(socketPath, () => resolve());
  });
  return {
    socketPath,
    pulls,
    async close() {
      upstream?.destroy();
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const s of sessions) s.destroy();
      await closed;
      await rm(socketPath, { force: true });
    },
  };
}
