/**
 * A stand-in container runtime for faults containerd cannot be made to show on demand (hanging,
 * huge answers, exact bytes on the wire): a grpc-js server on a unix socket speaking the real CRI
 * ImageService paths with raw byte handlers. It records every request's bytes.
 */
import { rm } from 'node:fs/promises';
import * as grpc from '@grpc/grpc-js';
import { identity, imageRpcCodec, type ImageRpc } from '../../../src/backend/cri-wire.js';

export type FakeAnswer = Buffer | { code: grpc.status; details: string } | 'hang';

export interface FakeCriBackend {
  readonly endpoint: string;
  readonly received: { rpc: ImageRpc; bytes: Buffer }[];
  /** Decides each answer; default: an empty message of the right type. */
  answer: (rpc: ImageRpc, request: Buffer) => FakeAnswer;
  stop(): Promise<void>;
  start(): Promise<void>;
}

const RPCS: readonly ImageRpc[] = ['ListImages', 'ImageStatus', 'PullImage', 'RemoveImage', 'ImageFsInfo'];

export async function startFakeCriBackend(socketPath: string): Promise<FakeCriBackend> {
  let server: grpc.Server | undefined;
  const hanging = new Set<() => void>();
  const fake: FakeCriBackend = {
    endpoint: `unix://${socketPath}`,
    received: [],
    answer: () => Buffer.alloc(0),
    async start() {
      if (server !== undefined) return;
      await rm(socketPath, { force: true });
      const s = new grpc.Server();
      for (const rpc of RPCS) {
        s.register(
          imageRpcCodec(rpc).path,
          (call: grpc.ServerUnaryCall<Buffer, Buffer>, callback: grpc.sendUnaryData<Buffer>) => {
            fake.received.push({ rpc, bytes: call.request });
            const answer = fake.answer(rpc, call.request);
            if (answer === 'hang') {
              const release = (): void => callback({ code: grpc.status.UNAVAILABLE, details: 'released' });
              hanging.add(release);
              call.on('cancelled', () => hanging.delete(release));
            } else if (Buffer.isBuffer(answer)) callback(null, answer);
            else callback({ code: answer.code, details: answer.details });
          },
          identity,
          identity,
          'unary',
        );
      }
      await new Promise<void>((resolve, reject) =>
        s.bindAsync(`unix://${socketPath}`, grpc.ServerCredentials.createInsecure(), (err) => (err ? reject(err) : resolve())),
      );
      server = s;
    },
    async stop() {
      for (const release of hanging) release();
      hanging.clear();
      server?.forceShutdown();
      server = undefined;
      await rm(socketPath, { force: true });
    },
  };
  await fake.start();
  return fake;
}
