/**
 * The unix-socket gRPC server. pullguard owns the listening socket (so it can refuse to start next to
 * a live server, remove a stale socket, and set mode 0660) and hands each connection to grpc-js
 * through a connection injector, after the socket-level :authority fix-up for older Go clients.
 */
import { chmod, lstat, mkdir, unlink } from 'node:fs/promises';
import { createConnection, createServer, type Server as NetServer, type Socket } from 'node:net';
import { dirname } from 'node:path';
import type { Duplex } from 'node:stream';
import * as grpc from '@grpc/grpc-js';
import { PullguardError } from '../domain/errors.js';
import type { Logger } from '../log/logger.js';

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
  /** Stops accepting, lets calls finish for `graceMs`, then cancels what remains. */
  close(graceMs: number): Promise<void>;
}

const DEFAULT_MAX_RECEIVE = 4 * 1024 * 1024;

export async function startCriServer(options: CriServerOptions): Promise<RunningCriServer> {
  const { socketPath, logger } = options;
  await mkdir(dirname(socketPath), { recursive: true, mode: 0o750 });
  await clearStaleSocket(socketPath);

  const grpcServer = new grpc.Server({
    'grpc.max_receive_message_length': options.maxReceiveMessageBytes ?? DEFAULT_MAX_RECEIVE,
    'grpc.max_send_message_length': 16 * 1024 * 1024,
  });
  for (const service of options.services) grpcServer.addService(service.definition, service.implementation);
  const injector = grpcServer.createConnectionInjector(grpc.ServerCredentials.createInsecure());

  const sockets = new Set<Socket>();
  const netServer: NetServer = createServer((socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
    socket.on('error', (err) => logger.debug({ err: err.message }, 'client connection error'));
    injector.injectConnection(options.wrapConnection ? options.wrapConnection(socket) : socket);
  });

  await new Promise<void>((resolve, reject) => {
    netServer.once('error', reject);
    // A restrictive umask while binding: the socket must never be world-accessible, even briefly.
    const previous = process.umask(0o117);
    try {
      netServer.listen(socketPath, () => {
        netServer.off('error', reject);
        resolve();
      });
    } finally {
      process.umask(previous);
    }
  });
  await chmod(socketPath, options.socketMode ?? 0o660);
  logger.info({ socket: socketPath }, 'CRI ImageService listening');

  let closing: Promise<void> | undefined;
  return {
    socketPath,
    close(graceMs: number): Promise<void> {
      closing ??= (async () => {
        await new Promise<void>((resolve) => netServer.close(() => resolve()));
        injector.drain(graceMs);
        await new Promise<void>((resolve) => {
          const timer = setTimeout(() => {
            grpcServer.forceShutdown();
            resolve();
          }, graceMs);
          grpcServer.tryShutdown(() => {
            clearTimeout(timer);
            resolve();
          });
        });
        injector.destroy();
        for (const socket of sockets) socket.destroy();
        await unlink(socketPath).catch(() => undefined);
      })();
      return closing;
    },
  };
}

/** Removes a socket file no server answers on; refuses if one does, or if the path is not a socket. */
async function clearStaleSocket(socketPath: string): Promise<void> {
  let stat;
  try {
    stat = await lstat(socketPath);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw new PullguardError('INVALID_CONFIG', `cannot inspect socket path ${socketPath}`, { cause: err });
  }
  if (!stat.isSocket()) {
    throw new PullguardError('INVALID_CONFIG', `socket path ${socketPath} exists and is not a socket; refusing to replace it`);
  }
  const live = await new Promise<boolean>((resolve) => {
    const probe = createConnection(socketPath);
    probe.once('connect', () => {
      probe.destroy();
      resolve(true);
    });
    probe.once('error', () => resolve(false));
  });
  if (live) {
    throw new PullguardError('INVALID_CONFIG', `another server is already listening on ${socketPath}`);
  }
  await unlink(socketPath);
}
