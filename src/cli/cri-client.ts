/** A grpc-js CRI ImageService client over the unix socket, for the CLI and the tests. */
import { resolve } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { loadCriPackageDefinition } from '../transport/cri-proto.js';

type Unary = (
  request: unknown,
  metadata: grpc.Metadata,
  options: grpc.CallOptions,
  callback: (err: grpc.ServiceError | null, response: unknown) => void,
) => grpc.ClientUnaryCall;

export interface CriImageClient {
  call<T>(
    rpc: 'PullImage' | 'ImageStatus' | 'ListImages' | 'RemoveImage' | 'ImageFsInfo',
    request: unknown,
    options?: { deadlineMs?: number; onTrailers?: (md: grpc.Metadata) => void },
  ): Promise<T>;
  close(): void;
}

export function createCriImageClient(socketPath: string, channelOptions: grpc.ChannelOptions = {}): CriImageClient {
  const loaded = grpc.loadPackageDefinition(loadCriPackageDefinition()) as unknown as {
    runtime: {
      v1: { ImageService: new (address: string, credentials: grpc.ChannelCredentials, options?: grpc.ChannelOptions) => grpc.Client & Record<string, Unary> };
    };
  };
  const client = new loaded.runtime.v1.ImageService(`unix://${resolve(socketPath)}`, grpc.credentials.createInsecure(), {
    'grpc.max_receive_message_length': 16 * 1024 * 1024,
    ...channelOptions,
  });
  return {
    call<T>(rpc: string, request: unknown, options: { deadlineMs?: number; onTrailers?: (md: grpc.Metadata) => void } = {}): Promise<T> {
      return new Promise<T>((resolve, reject) => {
        const method = client[rpc] as Unary;
        const callOptions: grpc.CallOptions = options.deadlineMs !== undefined ? { deadline: Date.now() + options.deadlineMs } : {};
        const call = method.call(client, request, new grpc.Metadata(), callOptions, (err, response) => (err ? reject(err) : resolve(response as T)));
        if (options.onTrailers) call.on('status', (status: grpc.StatusObject) => options.onTrailers?.(status.metadata));
      });
    },
    close: () => client.close(),
  };
}
