/**
 * pullguard wired as in backend mode, for tests: a real store, the real registry client, a given
 * signature phase, the local mirror over the store, the CRI backend client and the CRI server on a
 * temp unix socket with the backend handlers.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createCriBackend, type CriBackend } from '../../../src/backend/cri-backend.js';
import { createCriImageClient, type CriImageClient } from '../../../src/cli/cri-client.js';
import { backendServiceDefinitions, createBackendHandlers, type RuntimeFetchMode } from '../../../src/cri/backend-handlers.js';
import { startCriServer, type RunningCriServer } from '../../../src/cri/server.js';
import type { Verdict } from '../../../src/domain/signature.js';
import { createLogger } from '../../../src/log/logger.js';
import { startMirror, type MirrorServeEvent, type RunningMirror } from '../../../src/mirror/mirror-server.js';
import { InFlightImages } from '../../../src/pull/in-flight-images.js';
import type { SignaturePhase } from '../../../src/pull/ports.js';
import { PullService } from '../../../src/pull/pull-service.js';
import { createRegistryClient, type RegistryImageSource } from '../../../src/registry/client.js';
import { openStore, type OpenedStore } from '../../../src/store/open-store.js';

export const ALLOW_ALL: SignaturePhase = async () => ({ verdict: verdict(true), signatures: [] });

export function verdict(allowed: boolean): Verdict {
  return {
    allowed,
    scope: { policyFile: '<test>', scope: 'default' },
    requirements: allowed
      ? [{ type: 'insecureAcceptAnything', description: 'insecureAcceptAnything', satisfied: true, rejections: [] }]
      : [{ type: 'reject', description: 'reject', satisfied: false, reason: 'Running image is rejected by policy.', rejections: [] }],
    troubles: [],
    warnings: [],
    ...(allowed ? {} : { denial: 'Running image is rejected by policy.' }),
  };
}

export interface PullguardStack {
  readonly store: OpenedStore;
  readonly mirror: RunningMirror;
  readonly mirrorEvents: MirrorServeEvent[];
  /** pullguard's own CRI socket, as kubelet would use it. */
  readonly client: CriImageClient;
  readonly backend: CriBackend;
  close(): Promise<void>;
}

/** Starts store + mirror first (containerd's hosts.toml needs the mirror URL), backend later. */
export async function startStoreAndMirror(): Promise<{
  dir: string;
  store: OpenedStore;
  inFlight: InFlightImages;
  mirror: RunningMirror;
  mirrorEvents: MirrorServeEvent[];
}> {
  const dir = await mkdtemp(join(tmpdir(), 'pullguard-stack-'));
  const store = await openStore(join(dir, 'store'));
  const mirrorEvents: MirrorServeEvent[] = [];
  const inFlight = new InFlightImages();
  const mirror = await startMirror({
    address: '127.0.0.1:0',
    blobs: store.blobs,
    index: store.images,
    inFlight,
    logger: createLogger({ level: 'silent' }),
    onServe: (e) => mirrorEvents.push(e),
  });
  return { dir, store, inFlight, mirror, mirrorEvents };
}

export async function startPullguard(options: {
  readonly base: Awaited<ReturnType<typeof startStoreAndMirror>>;
  readonly registryHosts: readonly string[];
  readonly backendEndpoint: string;
  readonly signaturePhase?: SignaturePhase;
  readonly callTimeoutMs?: number;
  /** Who fetches the layers; default 'mirror' (the stack's mirror serves them). */
  readonly fetchMode?: RuntimeFetchMode;
}): Promise<PullguardStack> {
  const { dir, store, inFlight, mirror, mirrorEvents } = options.base;
  const logger = createLogger({ level: process.env['PULLGUARD_TEST_LOG'] ?? 'silent' });
  const registry: RegistryImageSource = createRegistryClient({
    platform: { os: 'linux', architecture: 'amd64' },
    insecureRegistries: options.registryHosts,
    userAgent: 'pullguard/test',
    retry: { maxAttempts: 1 },
  });
  const pulls = new PullService({
    source: registry,
    signaturePhase: options.signaturePhase ?? ALLOW_ALL,
    content: store.blobs,
    images: store.images,
    leases: store.blobs,
    clock: () => new Date(),
    version: 'test',
    inFlight,
  });
  const backend = createCriBackend({
    endpoint: options.backendEndpoint,
    ...(options.callTimeoutMs !== undefined ? { callTimeoutMs: options.callTimeoutMs } : {}),
  });
  const shutdown = new AbortController();
  const handlers = createBackendHandlers({
    pulls,
    backend,
    fetchMode: options.fetchMode ?? 'mirror',
    index: store.images,
    collectGarbage: () => store.images.collectGarbage(),
    logger,
    shutdownSignal: shutdown.signal,
    version: 'test',
  });
  const definitions = backendServiceDefinitions();
  const socketPath = join(dir, 'pullguard.sock');
  const server: RunningCriServer = await startCriServer({
    socketPath,
    logger,
    services: [
      { definition: definitions.image, implementation: handlers.image },
      { definition: definitions.runtime, implementation: handlers.runtime },
    ],
  });
  const client = createCriImageClient(socketPath);
  return {
    store,
    mirror,
    mirrorEvents,
    client,
    backend,
    async close() {
      client.close();
      shutdown.abort();
      await server.close(500);
      backend.close();
      await registry.close();
      await mirror.close();
      await store.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}
