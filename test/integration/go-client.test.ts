/**
 * Real grpc-go clients (Debian grpc-go 1.33, see test/go-client) against an ImageService on a unix
 * socket, dialled both ways kubelet does. The server comes from a factory so the same checks can
 * run against pullguard's real server; the default factory is a minimal grpc-js ImageService with
 * canned answers behind acceptLocalAuthority, and the control case runs it without the layer.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { acceptLocalAuthority } from '../../src/transport/authority.js';
import { buildGoClient, runGoClient, type DialStyle, type GoClientResult } from '../helpers/go-client.js';

const protoDir = fileURLToPath(new URL('../../proto/', import.meta.url));

export interface CriServerUnderTest {
  readonly socket: string;
  close(): Promise<void>;
}
/** Starts an ImageService listening on a unix socket inside `dir`. */
export type CriServerFactory = (dir: string) => Promise<CriServerUnderTest>;

const IMAGE_ID = `sha256:${'ab'.repeat(32)}`;
const IMAGE = {
  id: IMAGE_ID,
  repo_tags: ['registry.test/app:1'],
  repo_digests: [`registry.test/app@sha256:${'cd'.repeat(32)}`],
  size: '1234',
  uid: null,
  username: '',
  spec: null,
  pinned: false,
};
const DENIAL = 'SignatureValidationFailed: registry.test/app:1: no signature accepted by policy';
const FS = { timestamp: '1700000000000000000', fs_id: { mountpoint: '/var/lib/pullguard' }, used_bytes: { value: '4096' }, inodes_used: { value: '3' } };

// Hand-rolled protobuf for google.rpc.Status and its details: independent of the code under test.
function varint(n: number): Buffer {
  const out: number[] = [];
  while (n >= 0x80) {
    out.push((n & 0x7f) | 0x80);
    n >>>= 7;
  }
  out.push(n);
  return Buffer.from(out);
}
const field = (tag: number, value: Buffer | string): Buffer => {
  const bytes = typeof value === 'string' ? Buffer.from(value) : value;
  return Buffer.concat([varint((tag << 3) | 2), varint(bytes.length), bytes]);
};
const any = (type: string, value: Buffer): Buffer => field(3, Buffer.concat([field(1, `type.googleapis.com/${type}`), field(2, value)]));

function denialStatus(): Buffer {
  const errorInfo = Buffer.concat([
    field(1, 'SIGNATURE_VALIDATION_FAILED'),
    field(2, 'pullguard.dev'),
    field(3, Buffer.concat([field(1, 'digest'), field(2, `sha256:${'cd'.repeat(32)}`)])),
  ]);
  const precondition = field(1, Buffer.concat([field(1, 'SIGNATURE'), field(2, 'registry.test/app'), field(3, 'no signature accepted')]));
  return Buffer.concat([
    Buffer.from([0x08, grpc.status.UNKNOWN]),
    field(2, DENIAL),
    any('google.rpc.ErrorInfo', errorInfo),
    any('google.rpc.PreconditionFailure', precondition),
  ]);
}

function loadRuntime(): grpc.GrpcObject {
  const definition = protoLoader.loadSync('runtime/v1/api.proto', {
    keepCase: true,
    longs: String,
    enums: String,
    defaults: true,
    oneofs: true,
    includeDirs: [protoDir],
  });
  return grpc.loadPackageDefinition(definition);
}

type ServiceCtor = grpc.ServiceClientConstructor;
function imageService(): ServiceCtor {
  const runtime = loadRuntime() as unknown as { runtime: { v1: { ImageService: ServiceCtor } } };
  return runtime.runtime.v1.ImageService;
}

/** A minimal grpc-js ImageService with canned answers; `layer` puts acceptLocalAuthority in front. */
export function cannedImageServer(layer: boolean): CriServerFactory {
  return async (dir) => {
    const socket = join(dir, 'cri.sock');
    const server = new grpc.Server();
    server.addService(imageService().service, {
      ListImages: (_call: unknown, cb: grpc.sendUnaryData<unknown>) => cb(null, { images: [IMAGE] }),
      ImageStatus: (_call: unknown, cb: grpc.sendUnaryData<unknown>) => cb(null, { image: IMAGE, info: { verbose: 'yes' } }),
      PullImage: (_call: unknown, cb: grpc.sendUnaryData<unknown>) => {
        const metadata = new grpc.Metadata();
        metadata.set('grpc-status-details-bin', denialStatus());
        cb({ code: grpc.status.UNKNOWN, details: DENIAL, metadata });
      },
      RemoveImage: (_call: unknown, cb: grpc.sendUnaryData<unknown>) => cb(null, {}),
      ImageFsInfo: (_call: unknown, cb: grpc.sendUnaryData<unknown>) => cb(null, { image_filesystems: [FS], container_filesystems: [] }),
    });
    if (!layer) {
      await new Promise<void>((resolve, reject) =>
        server.bindAsync(`unix://${socket}`, grpc.ServerCredentials.createInsecure(), (err) => (err ? reject(err) : resolve())),
      );
      return { socket, close: () => new Promise<void>((resolve) => server.tryShutdown(() => resolve())) };
    }
    const injector = server.createConnectionInjector(grpc.ServerCredentials.createInsecure());
    const listener = net.createServer((connection) => injector.injectConnection(acceptLocalAuthority(connection)));
    await new Promise<void>((resolve, reject) => {
      listener.once('error', reject);
      listener.listen(socket, resolve);
    });
    return {
      socket,
      close: async () => {
        injector.destroy();
        await new Promise<void>((resolve) => server.tryShutdown(() => resolve()));
        await new Promise<void>((resolve) => listener.close(() => resolve()));
      },
    };
  };
}

/** ImageFsInfo from a grpc-js client that sends the socket path as :authority. */
async function grpcJsFsInfo(socket: string): Promise<unknown> {
  const Client = imageService();
  const client = new Client(`unix://${socket}`, grpc.credentials.createInsecure(), { 'grpc.default_authority': socket });
  try {
    const fsInfo = (client as unknown as Record<string, (req: unknown, cb: (err: unknown, res: unknown) => void) => void>).ImageFsInfo;
    return await new Promise<unknown>((resolve, reject) => fsInfo!.call(client, {}, (err, res) => (err ? reject(err) : resolve(res))));
  } finally {
    client.close();
  }
}

function expectOk(result: GoClientResult): Record<string, unknown> {
  if (!result.ok) throw new Error(`call failed: ${JSON.stringify(result)}`);
  return result.response;
}

/** The same checks for any ImageService with the canned answers above (or the lead's fixtures). */
function describeGoClients(name: string, factory: CriServerFactory): void {
  describe(name, () => {
    let dir: string;
    let server: CriServerUnderTest;
    beforeAll(async () => {
      await buildGoClient();
      dir = await mkdtemp(join(tmpdir(), 'pullguard-go-client-'));
      server = await factory(dir);
    });
    afterAll(async () => {
      await server?.close();
      if (dir) await rm(dir, { recursive: true, force: true });
    });

    describe.each<DialStyle>(['bare', 'localhost'])('dial %s', (dial) => {
      it('ListImages', async () => {
        const response = expectOk(await runGoClient({ socket: server.socket, dial, rpc: 'list' }));
        expect(response).toMatchObject({ images: [{ id: IMAGE_ID, repo_tags: IMAGE.repo_tags, repo_digests: IMAGE.repo_digests, size: '1234' }] });
      });
      it('ImageStatus', async () => {
        const response = expectOk(await runGoClient({ socket: server.socket, dial, rpc: 'status', args: ['registry.test/app:1'] }));
        expect(response).toMatchObject({ image: { id: IMAGE_ID }, info: { verbose: 'yes' } });
      });
      it('PullImage denial reaches grpc-go as kubelet reads it', async () => {
        const result = await runGoClient({ socket: server.socket, dial, rpc: 'pull', args: ['registry.test/app:1'] });
        expect(result.ok).toBe(false);
        const error = !result.ok ? result.error : undefined;
        expect(error).toMatchObject({
          code: grpc.status.UNKNOWN,
          message: DENIAL,
          signature_validation_failed: true,
          registry_unavailable: false,
          header: { grpc_status: String(grpc.status.UNKNOWN), grpc_message: DENIAL, has_details_bin: true },
        });
        expect(error?.details).toEqual([
          {
            type_url: 'type.googleapis.com/google.rpc.ErrorInfo',
            reason: 'SIGNATURE_VALIDATION_FAILED',
            domain: 'pullguard.dev',
            metadata: { digest: `sha256:${'cd'.repeat(32)}` },
          },
          {
            type_url: 'type.googleapis.com/google.rpc.PreconditionFailure',
            violations: [{ type: 'SIGNATURE', subject: 'registry.test/app', description: 'no signature accepted' }],
          },
        ]);
      });
      it('RemoveImage', async () => {
        expect(expectOk(await runGoClient({ socket: server.socket, dial, rpc: 'remove', args: [IMAGE_ID] }))).toEqual({});
      });
      it('ImageFsInfo', async () => {
        const response = expectOk(await runGoClient({ socket: server.socket, dial, rpc: 'fsinfo' }));
        expect(response).toEqual({ image_filesystems: [FS], container_filesystems: [] });
      });
    });

    it('a connection with a broken header block is closed and the server keeps serving', async () => {
      const connection = net.connect(server.socket);
      const preface = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');
      // HEADERS on stream 1 whose only field is the invalid HPACK index 0.
      const bad = Buffer.from([0, 0, 1, 0x01, 0x04, 0, 0, 0, 1, 0x80]);
      const closed = new Promise<void>((resolve) => connection.on('close', () => resolve()));
      connection.on('error', () => undefined);
      connection.on('data', () => undefined);
      connection.write(Buffer.concat([preface, Buffer.from([0, 0, 0, 0x04, 0, 0, 0, 0, 0]), bad]));
      await closed;
      expect(expectOk(await runGoClient({ socket: server.socket, dial: 'bare', rpc: 'fsinfo' }))).toMatchObject({ image_filesystems: [FS] });
    });

    it('a grpc-js client whose authority is the socket path', async () => {
      expect(await grpcJsFsInfo(server.socket)).toEqual({ image_filesystems: [FS], container_filesystems: [] });
    });
  });
}

describeGoClients('grpc-go clients against a grpc-js ImageService behind acceptLocalAuthority', cannedImageServer(true));

describe('control: the same server without acceptLocalAuthority', () => {
  let dir: string;
  let server: CriServerUnderTest;
  beforeAll(async () => {
    await buildGoClient();
    dir = await mkdtemp(join(tmpdir(), 'pullguard-go-client-'));
    server = await cannedImageServer(false)(dir);
  });
  afterAll(async () => {
    await server?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('rejects the socket-path authority of kubelet <= 1.30 with RST_STREAM(PROTOCOL_ERROR)', async () => {
    const result = await runGoClient({ socket: server.socket, dial: 'bare', rpc: 'fsinfo' });
    expect(result).toMatchObject({
      ok: false,
      error: { code: grpc.status.INTERNAL, message: 'stream terminated by RST_STREAM with error code: PROTOCOL_ERROR' },
    });
  });

  it('rejects a grpc-js client whose authority is the socket path', async () => {
    await expect(grpcJsFsInfo(server.socket)).rejects.toMatchObject({ code: grpc.status.INTERNAL, details: 'Received RST_STREAM with code 1' }); // 1 = PROTOCOL_ERROR
  });

  it('accepts authority localhost', async () => {
    expect(expectOk(await runGoClient({ socket: server.socket, dial: 'localhost', rpc: 'fsinfo' }))).toEqual({
      image_filesystems: [FS],
      container_filesystems: [],
    });
  });
});
