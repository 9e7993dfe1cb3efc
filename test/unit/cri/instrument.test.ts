/** countRpcs: every answer of a handler set is counted by method and gRPC code, and passed on unchanged. */
import * as grpc from '@grpc/grpc-js';
import { describe, expect, it } from 'vitest';
import { PullguardError } from '../../../src/domain/errors.js';
import { countRpcs, instrumentUnary, type CriHandlers } from '../../../src/cri/instrument.js';
import { createLogger } from '../../../src/log/logger.js';

function call(
  handlers: grpc.UntypedServiceImplementation,
  rpc: string,
): Promise<{ err: grpc.ServiceError | null; value: unknown; trailers: grpc.Metadata | undefined }> {
  const handler = handlers[rpc] as grpc.handleUnaryCall<unknown, unknown>;
  return new Promise((resolve) =>
    handler({ request: {}, on: () => undefined } as never, (err, value, trailers) => resolve({ err: err as grpc.ServiceError | null, value, trailers })),
  );
}

describe('countRpcs', () => {
  it('counts each answered call with its code and leaves the answer as it was', async () => {
    const options = { logger: createLogger({ level: 'silent' }), shutdownSignal: new AbortController().signal };
    const trailers = new grpc.Metadata();
    trailers.set('pullguard-warnings', 'PGW001');
    const handlers: CriHandlers = {
      image: {
        PullImage: instrumentUnary('PullImage', async () => ({ response: { image_ref: 'sha256:1' }, trailers }), options),
        RemoveImage: instrumentUnary('RemoveImage', async () => Promise.reject(new PullguardError('INVALID_ARGUMENT', 'no such image name')), options),
      },
      runtime: { Version: instrumentUnary('Version', async () => ({ response: { version: '0.1.0' } }), options) },
    };
    const counted: [string, number][] = [];
    const counting = countRpcs(handlers, { recordRpc: (rpc, code) => void counted.push([rpc, code]) });

    expect(await call(counting.image, 'PullImage')).toEqual({ err: null, value: { image_ref: 'sha256:1' }, trailers });
    const failed = await call(counting.image, 'RemoveImage');
    expect(failed.err?.code).toBe(grpc.status.INVALID_ARGUMENT);
    await call(counting.runtime, 'Version');
    expect(counted).toEqual([
      ['PullImage', grpc.status.OK],
      ['RemoveImage', grpc.status.INVALID_ARGUMENT],
      ['Version', grpc.status.OK],
    ]);
  });

  it('answers even when counting throws', async () => {
    const options = { logger: createLogger({ level: 'silent' }), shutdownSignal: new AbortController().signal };
    const handlers: CriHandlers = { image: { ImageFsInfo: instrumentUnary('ImageFsInfo', async () => ({ response: {} }), options) }, runtime: {} };
    const counting = countRpcs(handlers, {
      recordRpc: () => {
        throw new Error('metrics bug');
      },
    });
    expect(await call(counting.image, 'ImageFsInfo')).toMatchObject({ err: null, value: {} });
  });
});
