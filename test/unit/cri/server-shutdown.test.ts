/**
 * startCriServer's close(grace) in-process, with clients that keep their connections: idle ones do
 * not hold it up, a call that opened its stream before the GOAWAY is refused with UNAVAILABLE
 * (SHUTTING_DOWN) rather than served, and a call still running at the end of the grace is cut off.
 */
import { connect as http2Connect, constants as h2, type ClientHttp2Session } from 'node:http2';
import { mkdtemp, rm } from 'node:fs/promises';
import { createConnection } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { acceptLocalAuthority } from '../../../src/transport/authority.js';
import { loadRpcRoot } from '../../../src/transport/cri-proto.js';
import { startCriServer, type RunningCriServer } from '../../../src/cri/server.js';
import { createLogger } from '../../../src/log/logger.js';

const identity = (b: Buffer): Buffer => b;
const method = (name: string): grpc.MethodDefinition<Buffer, Buffer> => ({
  path: `/test.Shutdown/${name}`,
  requestStream: false,
  responseStream: false,
  requestSerialize: identity,
  requestDeserialize: identity,
  responseSerialize: identity,
  responseDeserialize: identity,
});
const definition: grpc.ServiceDefinition = { Echo: method('Echo'), Hold: method('Hold') };
const Client = grpc.makeGenericClientConstructor(definition, 'Shutdown') as unknown as new (
  address: string,
  credentials: grpc.ChannelCredentials,
) => grpc.Client & {
  Echo(request: Buffer, callback: (err: grpc.ServiceError | null, res?: Buffer) => void): grpc.ClientUnaryCall;
  Hold(request: Buffer, callback: (err: grpc.ServiceError | null, res?: Buffer) => void): grpc.ClientUnaryCall;
};

/** Generous against a slow machine; every bound below is grace + this. */
const SLACK_MS = 3000;

let dir: string;
let server: RunningCriServer;
let echoed: number;
/** Hold never answers on its own: it ends only when the server cuts its connection. */
let holding: number;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'pullguard-cri-close-'));
  echoed = 0;
  holding = 0;
  server = await startCriServer({
    socketPath: join(dir, 'cri.sock'),
    logger: createLogger({ level: 'silent' }),
    services: [
      {
        definition,
        implementation: {
          Echo: ((call: grpc.ServerUnaryCall<Buffer, Buffer>, callback: grpc.sendUnaryData<Buffer>) => {
            echoed++;
            callback(null, call.request);
          }) as grpc.UntypedHandleCall,
          Hold: (() => {
            holding++;
          }) as grpc.UntypedHandleCall,
        },
      },
    ],
    wrapConnection: (socket) => acceptLocalAuthority(socket),
  });
});

afterEach(async () => {
  await timed(server.close(0)).catch(() => undefined);
  await rm(dir, { recursive: true, force: true });
});

function client(): InstanceType<typeof Client> {
  return new Client(`unix://${server.socketPath}`, grpc.credentials.createInsecure());
}

function unary(c: InstanceType<typeof Client>, name: 'Echo' | 'Hold'): Promise<grpc.ServiceError | Buffer> {
  return new Promise((resolve) => c[name](Buffer.from('hi'), (err, res) => resolve(err ?? (res as Buffer))));
}

/** How long `p` took; rejects once it has taken `limitMs` (a hang fails the test instead of stalling it). */
async function timed<T>(p: Promise<T>, limitMs = 10_000): Promise<{ value: T; ms: number }> {
  const started = Date.now();
  let timer: NodeJS.Timeout | undefined;
  const limit = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`still pending after ${limitMs} ms`)), limitMs);
  });
  try {
    const value = await Promise.race([p, limit]);
    return { value, ms: Date.now() - started };
  } finally {
    clearTimeout(timer);
  }
}

function reasonOf(detailsBin: string): string {
  const root = loadRpcRoot();
  const status = root.lookupType('google.rpc.Status').decode(Buffer.from(detailsBin, 'base64')) as unknown as { details: { value: Uint8Array }[] };
  return (root.lookupType('google.rpc.ErrorInfo').decode(status.details[0]!.value) as unknown as { reason: string }).reason;
}

describe('CRI server close(grace)', () => {
  it('resolves at once while idle clients keep their connections open', async () => {
    const idle = [client(), client(), client()];
    for (const c of idle) expect(await unary(c, 'Echo')).toEqual(Buffer.from('hi'));
    const { ms } = await timed(server.close(10_000));
    expect(ms).toBeLessThan(SLACK_MS);
    for (const c of idle) c.close();
  });

  it('refuses a call whose stream opened before the GOAWAY with UNAVAILABLE (SHUTTING_DOWN), and gives it no handler', async () => {
    const session: ClientHttp2Session = http2Connect('http://localhost', { createConnection: () => createConnection(server.socketPath) });
    session.on('error', () => undefined);
    try {
      await new Promise<void>((resolve) => session.once('connect', () => resolve()));
      const stream = session.request(
        { [h2.HTTP2_HEADER_METHOD]: 'POST', [h2.HTTP2_HEADER_PATH]: '/test.Shutdown/Echo', 'content-type': 'application/grpc', te: 'trailers' },
        { endStream: false },
      );
      stream.on('error', () => undefined);
      // The first 5 bytes of the message: their write completes only after the HEADERS went out, and
      // a PING's ack comes back only after the server has read both (a PING alone may overtake them).
      await new Promise<void>((resolve) => stream.write(Buffer.from([0, 0, 0, 0, 4]), () => resolve()));
      await new Promise<void>((resolve, reject) => session.ping((err) => (err ? reject(err) : resolve())));
      const closed = server.close(10_000);
      // grpc-js answers a refusal trailers-only: the status is in the response headers.
      const answer = new Promise<Record<string, unknown>>((resolve) => {
        stream.once('response', (h) => resolve(h as Record<string, unknown>));
        stream.once('trailers', (h) => resolve(h as Record<string, unknown>));
      });
      stream.end(Buffer.from('late'));
      const t = await answer;
      expect(t['grpc-status']).toBe(String(grpc.status.UNAVAILABLE));
      expect(decodeURIComponent(String(t['grpc-message']))).toMatch(/shutting down/);
      expect(reasonOf(String(t['grpc-status-details-bin']))).toBe('SHUTTING_DOWN');
      expect(echoed).toBe(0);
      // That was the last stream: the connection closes and so does the server, well before the grace.
      const { ms } = await timed(closed);
      expect(ms).toBeLessThan(SLACK_MS);
    } finally {
      session.destroy();
    }
  });

  it('gives a running call the grace period, then cuts its connection; a new call on that channel is UNAVAILABLE', async () => {
    const busy = client();
    const idle = client();
    expect(await unary(idle, 'Echo')).toEqual(Buffer.from('hi'));
    const held = timed(unary(busy, 'Hold'));
    while (holding === 0) await new Promise((r) => setTimeout(r, 5));

    const graceMs = 500;
    const closed = timed(server.close(graceMs));
    const late = await timed(unary(busy, 'Echo'));
    expect((late.value as grpc.ServiceError).code).toBe(grpc.status.UNAVAILABLE);
    expect(late.ms).toBeLessThan(graceMs + SLACK_MS);
    expect(echoed).toBe(1);

    const { ms } = await closed;
    expect(ms).toBeGreaterThanOrEqual(graceMs - 50);
    expect(ms).toBeLessThan(graceMs + SLACK_MS);
    const cut = await held;
    expect((cut.value as grpc.ServiceError).code).toBeDefined();
    expect(cut.ms).toBeLessThan(graceMs + SLACK_MS);
    busy.close();
    idle.close();
  });
});
