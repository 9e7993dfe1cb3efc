/**
 * The per-RPC decorator: one log line per call with duration and outcome, cancellation turned into an
 * AbortSignal, and every failure translated by src/cri/status.ts. Handlers stay plain async functions.
 * countRpcs counts the answers of a whole handler set, whichever CRI mode built it.
 */
import * as grpc from '@grpc/grpc-js';
import type { Logger } from '../log/logger.js';
import { describeFailure, toServiceError } from './status.js';

export interface RpcContext {
  readonly signal: AbortSignal;
  readonly log: Logger;
  /** The fields every log line of this call carries (rpc, requestId, what `describe` adds). */
  readonly logFields: Readonly<Record<string, unknown>>;
}

/** The ImageService and RuntimeService handlers of one CRI mode. */
export interface CriHandlers {
  readonly image: grpc.UntypedServiceImplementation;
  readonly runtime: grpc.UntypedServiceImplementation;
}

/** Told the gRPC code of every answered call (PullguardMetrics is one). */
export interface RpcCounter {
  recordRpc(rpc: string, code: grpc.status): void;
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

    handler(call.request, { signal: controller.signal, log, logFields: fields }).then(
      (reply) => {
        options.shutdownSignal.removeEventListener('abort', onShutdown);
        log.info({ outcome: 'ok', durationMs: round(ms()) }, `${rpc} ok`);
        if (reply.trailers !== undefined) callback(null, reply.response, reply.trailers);
        else callback(null, reply.response);
      },
      (err: unknown) => {
        options.shutdownSignal.removeEventListener('abort', onShutdown);
        const image = typeof fields['image'] === 'string' ? fields['image'] : undefined;
        const failure = describeFailure(err, image !== undefined ? { image } : {});
        log.warn({ outcome: 'error', durationMs: round(ms()), grpcCode: failure.code, reason: failure.reason, error: failure.message }, `${rpc} failed`);
        callback(toServiceError(err, image !== undefined ? { image } : {}));
      },
    );
  };
}

/** The same handlers, each answer counted by method name and gRPC code. */
export function countRpcs(handlers: CriHandlers, counter: RpcCounter): CriHandlers {
  return { image: countEach(handlers.image, counter), runtime: countEach(handlers.runtime, counter) };
}

function countEach(implementation: grpc.UntypedServiceImplementation, counter: RpcCounter): grpc.UntypedServiceImplementation {
  const counted: grpc.UntypedServiceImplementation = {};
  for (const [rpc, handler] of Object.entries(implementation)) {
    // Every CRI handler here is unary (instrumentUnary).
    const unary = handler as grpc.handleUnaryCall<unknown, unknown>;
    counted[rpc] = ((call, callback) =>
      unary(call, (err, value, trailer, flags) => {
        try {
          counter.recordRpc(rpc, err === null ? grpc.status.OK : (err.code ?? grpc.status.UNKNOWN));
        } catch {
          // Counting must never change an answer.
        }
        callback(err, value, trailer, flags);
      })) satisfies grpc.handleUnaryCall<unknown, unknown>;
  }
  return counted;
}

function round(ms: number): number {
  return Math.round(ms * 1000) / 1000;
}
