/**
 * The per-RPC decorator: one log line per call with duration and outcome, cancellation turned into an
 * AbortSignal, and every failure translated by src/cri/status.ts. Handlers stay plain async functions.
 */
import * as grpc from '@grpc/grpc-js';
import type { Logger } from '../log/logger.js';
import { describeFailure, toServiceError } from './status.js';

export interface RpcContext {
  readonly signal: AbortSignal;
  readonly log: Logger;
}

export interface RpcReply<Res> {
  readonly response: Res;
  readonly trailers?: grpc.Metadata;
}

export type RpcHandler<Req, Res> = (request: Req, context: RpcContext) => Promise<RpcReply<Res>>;

let nextRequestId = 1;

export function instrumentUnary<Req, Res>(
  rpc: string,
  handler: RpcHandler<Req, Res>,
  options: {
    logger: Logger;
    describe?: (request: Req) => Record<string, unknown>;
    shutdownSignal: AbortSignal;
    /** Told the gRPC code of every completed call (metrics). */
    onCompleted?: (rpc: string, code: grpc.status) => void;
  },
): grpc.handleUnaryCall<Req, Res> {
  return (call, callback) => {
    const started = process.hrtime.bigint();
    const controller = new AbortController();
    const onShutdown = (): void => controller.abort(options.shutdownSignal.reason);
    options.shutdownSignal.addEventListener('abort', onShutdown, { once: true });
    call.on('cancelled', () => controller.abort(new Error('cancelled by client')));
    const fields: Record<string, unknown> = { rpc, requestId: nextRequestId++, ...(options.describe?.(call.request) ?? {}) };
    const log = options.logger.child(fields);
    const ms = (): number => Number(process.hrtime.bigint() - started) / 1e6;

    handler(call.request, { signal: controller.signal, log }).then(
      (reply) => {
        options.shutdownSignal.removeEventListener('abort', onShutdown);
        log.info({ outcome: 'ok', durationMs: round(ms()) }, `${rpc} ok`);
        options.onCompleted?.(rpc, grpc.status.OK);
        if (reply.trailers !== undefined) callback(null, reply.response, reply.trailers);
        else callback(null, reply.response);
      },
      (err: unknown) => {
        options.shutdownSignal.removeEventListener('abort', onShutdown);
        const image = typeof fields['image'] === 'string' ? fields['image'] : undefined;
        const failure = describeFailure(err, image !== undefined ? { image } : {});
        log.warn({ outcome: 'error', durationMs: round(ms()), grpcCode: failure.code, reason: failure.reason, error: failure.message }, `${rpc} failed`);
        options.onCompleted?.(rpc, failure.code);
        callback(toServiceError(err, image !== undefined ? { image } : {}));
      },
    );
  };
}

function round(ms: number): number {
  return Math.round(ms * 1000) / 1000;
}
