/**
 * Encoders/decoders for the CRI ImageService messages, taken from the vendored proto through
 * proto-loader (the same options as the server: snake_case, 64-bit ints as strings). Used only
 * where pullguard must look at or change a message; everything else travels as raw bytes.
 */
import type { MethodDefinition } from '@grpc/proto-loader';
import { loadCriPackageDefinition } from '../transport/cri-proto.js';

export const IMAGE_SERVICE = 'runtime.v1.ImageService';
export type ImageRpc = 'ListImages' | 'ImageStatus' | 'PullImage' | 'RemoveImage' | 'ImageFsInfo';

export interface RpcCodec {
  readonly path: string;
  encodeRequest(message: unknown): Buffer;
  decodeRequest(bytes: Buffer): unknown;
  encodeResponse(message: unknown): Buffer;
  decodeResponse(bytes: Buffer): unknown;
}

const codecs = new Map<ImageRpc, RpcCodec>();

export function imageRpcCodec(rpc: ImageRpc): RpcCodec {
  let codec = codecs.get(rpc);
  if (codec === undefined) {
    const service = loadCriPackageDefinition()[IMAGE_SERVICE] as unknown as Record<string, MethodDefinition<unknown, unknown>>;
    const method = service[rpc];
    if (method === undefined) throw new TypeError(`CRI proto has no ImageService.${rpc}`);
    codec = {
      path: method.path,
      encodeRequest: (m) => method.requestSerialize(m),
      decodeRequest: (b) => method.requestDeserialize(b),
      encodeResponse: (m) => method.responseSerialize(m),
      decodeResponse: (b) => method.responseDeserialize(b),
    };
    codecs.set(rpc, codec);
  }
  return codec;
}

export const identity = (bytes: Buffer): Buffer => bytes;
