/**
 * The container runtime's CRI ImageService (containerd, CRI-O) as pullguard's backend. Calls go
 * out as raw bytes (unknown fields survive untouched); callers decode only what they must look at
 * (see cri-wire.ts). grpc-js reconnects by itself; while the runtime is down, calls fail at once
 * with BACKEND_UNAVAILABLE naming the socket, and pullguard stays up.
 */
import * as grpc from '@grpc/grpc-js';
import { PullguardError, type ErrorCode } from '../domain/errors.js';
import { identity, imageRpcCodec, type ImageRpc } from './cri-wire.js';

export interface CriBackendOptions {
  /** `unix:///run/containerd/containerd.sock` */
  readonly endpoint: string;
  /** Deadline for every RPC but PullImage; default 10 s. */
  readonly callTimeoutMs?: number;
  /** Deadline for PullImage, counted from when pullguard has the image; default 10 min. */
  readonly pullTimeoutMs?: number;
  /** Largest response accepted (kubelet's own limit); default 16 MiB. */
  readonly maxReceiveBytes?: number;
  /** Longest wait between reconnection attempts; default 2 s, so a restarted runtime is found fast. */
  readonly maxReconnectBackoffMs?: number;
}

export interface BackendCallOptions {
  readonly signal?: AbortSignal;
  /** Overrides the per-RPC default deadline. */
  readonly timeoutMs?: number;
  /**
   * Starts the deadline only when this settles. A runtime asked to pull while pullguard is still
   * fetching waits on pullguard's mirror; that wait must not eat the runtime's own time budget.
   */
  readonly timeoutStartsWhen?: Promise<unknown>;
}

export interface CriBackend {
  readonly endpoint: string;
  /** Sends request bytes as they are and returns the response bytes as they are. */
  call(rpc: ImageRpc, request: Buffer, options?: BackendCallOptions): Promise<Buffer>;
  /** Encodes `request` with the vendored proto, decodes the answer. */
  callDecoded<Res>(rpc: ImageRpc, request: unknown, options?: BackendCallOptions): Promise<Res>;
  close(): void;
}

export const DEFAULT_BACKEND_ENDPOINT = 'unix:///run/containerd/containerd.sock';
const DEFAULT_CALL_TIMEOUT_MS = 10_000;
const DEFAULT_PULL_TIMEOUT_MS = 10 * 60_000;
const DEFAULT_MAX_RECEIVE = 16 * 1024 * 1024;

export function createCriBackend(options: CriBackendOptions): CriBackend {
  const { endpoint } = options;
  if (!/^unix:\/\/\/./.test(endpoint)) {
    throw new PullguardError('INVALID_CONFIG', `backend endpoint ${JSON.stringify(endpoint)} must be unix:///path/to/socket`);
  }
  const client = new grpc.Client(endpoint, grpc.credentials.createInsecure(), {
    'grpc.max_receive_message_length': options.maxReceiveBytes ?? DEFAULT_MAX_RECEIVE,
    'grpc.max_send_message_length': 16 * 1024 * 1024,
    'grpc.initial_reconnect_backoff_ms': 100,
    'grpc.max_reconnect_backoff_ms': options.maxReconnectBackoffMs ?? 2_000,
    // The runtime is local: no proxy, no name resolution surprises.
    'grpc.enable_http_proxy': 0,
  });
  const callTimeoutMs = options.callTimeoutMs ?? DEFAULT_CALL_TIMEOUT_MS;
  const pullTimeoutMs = options.pullTimeoutMs ?? DEFAULT_PULL_TIMEOUT_MS;

  const call = (rpc: ImageRpc, request: Buffer, callOptions: BackendCallOptions = {}): Promise<Buffer> => {
    const timeoutMs = callOptions.timeoutMs ?? (rpc === 'PullImage' ? pullTimeoutMs : callTimeoutMs);
    const { signal, timeoutStartsWhen } = callOptions;
    if (signal?.aborted) return Promise.reject(new PullguardError('CANCELLED', `${rpc} cancelled before it reached the container runtime`));
    return new Promise<Buffer>((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      let timedOut = false;
      let answered = false;
      const pending = client.makeUnaryRequest(
        imageRpcCodec(rpc).path,
        identity,
        identity,
        request,
        new grpc.Metadata(),
        timeoutStartsWhen === undefined ? { deadline: Date.now() + timeoutMs } : {},
        (err, response) => {
          answered = true;
          signal?.removeEventListener('abort', onAbort);
          clearTimeout(timer);
          if (timedOut)
            reject(
              new PullguardError('BACKEND_UNAVAILABLE', deadlineMessage(rpc, endpoint, timeoutMs), {
                facts: { backend: endpoint, backendCode: 'DEADLINE_EXCEEDED' },
              }),
            );
          else if (err) reject(backendError(err, rpc, endpoint, timeoutMs));
          else if (response === undefined) reject(new PullguardError('BACKEND_ERROR', `container runtime at ${endpoint} sent no ${rpc} response`));
          else resolve(response);
        },
      );
      const onAbort = (): void => pending.cancel();
      signal?.addEventListener('abort', onAbort, { once: true });
      const startDeadline = (): void => {
        if (answered) return;
        timer = setTimeout(() => {
          timedOut = true;
          pending.cancel();
        }, timeoutMs);
      };
      void timeoutStartsWhen?.then(startDeadline, startDeadline);
    });
  };

  return {
    endpoint,
    call,
    async callDecoded<Res>(rpc: ImageRpc, request: unknown, callOptions?: BackendCallOptions): Promise<Res> {
      const codec = imageRpcCodec(rpc);
      return codec.decodeResponse(await call(rpc, codec.encodeRequest(request), callOptions)) as Res;
    },
    close: () => client.close(),
  };
}

function deadlineMessage(rpc: ImageRpc, endpoint: string, timeoutMs: number): string {
  return `container runtime at ${endpoint} did not answer ${rpc} within ${timeoutMs} ms`;
}

/** The runtime's own status, turned into a coded error; its message is kept (kubelet shows it). */
export function backendError(err: grpc.ServiceError, rpc: ImageRpc, endpoint: string, timeoutMs: number): PullguardError {
  const facts = { backend: endpoint, backendCode: grpc.status[err.code] ?? String(err.code) };
  const details = err.details !== '' ? err.details : err.message;
  const make = (code: ErrorCode, message: string): PullguardError => new PullguardError(code, message, { cause: err, facts });
  switch (err.code) {
    case grpc.status.UNAVAILABLE:
      return make('BACKEND_UNAVAILABLE', `container runtime at ${endpoint} is unavailable (${rpc}): ${details}`);
    case grpc.status.DEADLINE_EXCEEDED:
      return make('BACKEND_UNAVAILABLE', deadlineMessage(rpc, endpoint, timeoutMs));
    case grpc.status.CANCELLED:
      return make('CANCELLED', `${rpc} to the container runtime was cancelled`);
    case grpc.status.INVALID_ARGUMENT:
      return make('INVALID_ARGUMENT', `container runtime: ${details}`);
    default:
      return make('BACKEND_ERROR', `container runtime: ${details}`);
  }
}
