/**
 * The unix-socket gRPC server. pullguard owns the listening socket (so it can refuse to start next to
 * a live server, remove a stale socket, and set mode 0660) and hands each connection to grpc-js
 * through a connection injector, after the socket-level :authority fix-up for older Go clients.
 */
import { unlink } from 'node:fs/promises';
import { createServer, type Server as NetServer, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import * as grpc from '@grpc/grpc-js';
import { PullguardError } from '../domain/errors.js';
import type { Logger } from '../log/logger.js';
import { listenOnUnixSocket, prepareSocketPath } from '../util/unix-socket.js';
import { toServiceError } from './status.js';

export interface CriServerOptions {
  readonly socketPath: string;
  readonly services: readonly { definition: grpc.ServiceDefinition; implementation: grpc.UntypedServiceImplementation }[];
  readonly logger: Logger;
  /** Wraps each accepted connection before grpc-js sees it (the :authority fix-up). */
  readonly wrapConnection?: (socket: Socket) => Duplex;
  /** Largest request accepted; CRI requests are small. */
  readonly maxReceiveMessageBytes?: number;
  readonly socketMode?: number;
}

export interface RunningCriServer {
  readonly socketPath: string;
  /**
   * At once: stops accepting connections, sends GOAWAY on every open one and refuses any call that
   * still arrives with UNAVAILABLE (SHUTTING_DOWN). Calls in flight get `graceMs` to finish; then
   * every connection is destroyed, idle or busy. Resolves when nothing of the server is left.
   */
  close(graceMs: number): Promise<void>;
}

const DEFAULT_MAX_RECEIVE = 4 * 1024 * 1024;

export async function startCriServer(options: CriServerOptions): Promise<RunningCriServer> {
  const { socketPath, logger } = options;
  await prepareSocketPath(socketPath, 'socket');

  const grpcServer = new grpc.Server({
    'grpc.max_receive_message_length': options.maxReceiveMessageBytes ?? DEFAULT_MAX_RECEIVE,
    'grpc.max_send_message_length': 16 * 1024 * 1024,
  });
  let shuttingDown = false;
  const refused = (): boolean => {
    if (shuttingDown) logger.debug('refused a call: shutting down');
    return shuttingDown;
  };
  for (const service of options.services)
    grpcServer.addService(service.definition, refuseWhenShuttingDown(service.definition, service.implementation, refused));
  const injector = grpcServer.createConnectionInjector(grpc.ServerCredentials.createInsecure());

  const sockets = new Set<Socket>();
  const netServer: NetServer = createServer((socket) => {
    if (shuttingDown) {
      socket.destroy();
      return;
    }
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
    socket.on('error', (err) => logger.debug({ err: err.message }, 'client connection error'));
    injector.injectConnection(options.wrapConnection ? options.wrapConnection(socket) : socket);
  });

  // The socket must never be world-accessible, even briefly.
  await listenOnUnixSocket(netServer, socketPath, options.socketMode ?? 0o660);
  logger.info({ socket: socketPath }, 'CRI ImageService listening');

  let closing: Promise<void> | undefined;
  return {
    socketPath,
    close(graceMs: number): Promise<void> {
      closing ??= (async () => {
        shuttingDown = true;
        // net.Server.close's callback waits for every connection to end, and kubelet never ends
        // its own: only stop listening here; the connections are ended below.
        const listenerClosed = new Promise<void>((resolve) => netServer.close(() => resolve()));
        // GOAWAY on every connection now: clients open no new streams there, idle connections
        // close at once and busy ones as soon as their last call completes.
        const drained = await new Promise<boolean>((resolve) => {
          const timer = setTimeout(() => resolve(false), graceMs);
          grpcServer.tryShutdown(() => {
            clearTimeout(timer);
            resolve(true);
          });
        });
        if (!drained) {
          logger.warn({ graceMs, connections: sockets.size }, 'calls still running after the grace period: closing their connections');
          grpcServer.forceShutdown();
        }
        injector.destroy();
        for (const socket of sockets) socket.destroy();
        await listenerClosed;
        await unlink(socketPath).catch(() => undefined);
      })();
      return closing;
    },
  };
}

/**
 * Answers UNAVAILABLE (SHUTTING_DOWN) instead of calling the handler once shutdown has begun: a
 * call whose stream opened before the GOAWAY may still arrive, and must not start new work.
 */
function refuseWhenShuttingDown(
  definition: grpc.ServiceDefinition,
  implementation: grpc.UntypedServiceImplementation,
  shuttingDown: () => boolean,
): grpc.UntypedServiceImplementation {
  const refusal = (): grpc.ServiceError => toServiceError(new PullguardError('SHUTTING_DOWN', 'pullguard is shutting down; retry when it is back'));
  const gated: grpc.UntypedServiceImplementation = {};
  for (const [name, method] of Object.entries(definition)) {
    // Looked up as grpc-js does: by method name, else by the proto's original name.
    const found = implementation[name] ?? (typeof method.originalName === 'string' ? implementation[method.originalName] : undefined);
    if (found === undefined) continue;
    const handler = (found as (...args: unknown[]) => void).bind(implementation);
    gated[name] = (
      method.responseStream
        ? // Server or bidirectional streaming: an 'error' ends the call with that status.
          (call: grpc.ServerWritableStream<unknown, unknown>) => (shuttingDown() ? call.emit('error', refusal()) : handler(call))
        : // Unary or client streaming: answered through the callback.
          (call: unknown, callback: grpc.sendUnaryData<unknown>) => (shuttingDown() ? callback(refusal()) : handler(call, callback))
    ) as grpc.UntypedHandleCall;
  }
  return gated;
}
