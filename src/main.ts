#!/usr/bin/env -S node --max-semi-space-size=2
/**
 * The composition root: the only module that reads the environment and wires adapters to use cases.
 * `pullguard serve` builds config → logger → store → registry client → lookaside → policy →
 * pull service → CRI server; the other commands are clients of a running server (or, for fsck and
 * verify, of the store on disk, under the same configuration as serve).
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Agent } from 'undici';
import { runClientCommand, CLIENT_HELP } from './cli/commands.js';
import { describeError, runFsck, runVerify } from './cli/offline-commands.js';
import { acceptLocalAuthority } from './cri/authority.js';
import { createBackendHandlers, backendServiceDefinitions } from './cri/backend-handlers.js';
import { createImageServiceHandlers, criServiceDefinitions, type ImageServiceDeps } from './cri/image-service.js';
import { createCriBackend } from './backend/cri-backend.js';
import { describePullWarnings } from './events/event-object.js';
import { createEventRecorder } from './events/event-recorder.js';
import { startMetricsServer } from './metrics/metrics-server.js';
import { createPullguardMetrics, observeLookasideEvents, observePullEvents, pullOutcomeOf } from './metrics/pullguard-metrics.js';
import { startMirror } from './mirror/mirror-server.js';
import { InFlightImages } from './pull/in-flight-images.js';
import { startCriServer } from './cri/server.js';
import { isCommandLineError, parseCommandLine } from './config/command-line.js';
import { defaultClientSocket, policySelection, processEnvironment, resolveDaemonConfig, type DaemonConfig, type DaemonFlagValues, type Environment } from './config/daemon-config.js';
import { formatSettingsHelp, parseOptionsFor } from './config/flag-table.js';
import { describeEmbeddedDefault, PolicySelector } from './config/policy-loader.js';
import { loadRegistriesD, parseRegistriesD, UPSTREAM_DEFAULT_LOOKASIDE, type RegistriesD } from './config/registries-d.js';
import { ImageCatalog } from './images/image-catalog.js';
import { policySourceOf } from './pull/verification-record.js';
import { createLookasideSource, type LookasideEvent } from './lookaside/lookaside-source.js';
import { createLogger, type Logger } from './log/logger.js';
import { PullService } from './pull/pull-service.js';
import type { RegistryCredentials, SignatureSource } from './pull/ports.js';
import { runSignaturePhaseWithSignatures } from './pull/signature-phase.js';
import { loadAuthFile, lookupCredentials } from './registry/auth-file.js';
import { createRegistryClient, type ImageArtifactReader } from './registry/client.js';
import { createSigstoreAttachmentSource } from './sigstore/attachment-source.js';
import { EMPTY_REGISTRIES_CONFIG, parseRegistriesConf } from './registry/registries-conf.js';
import { openStore } from './store/open-store.js';
import { packageRoot } from './util/package-root.js';

const VERSION = (JSON.parse(readFileSync(join(packageRoot(), 'package.json'), 'utf8')) as { version: string }).version;

const HELP = `pullguard ${VERSION} — a CRI ImageService that verifies image signatures before pulling

Usage: pullguard <command> [options]

Commands:
  serve      run the CRI ImageService on a unix socket
  pull       pull an image through the running server
  images     list images
  inspect    show an image (--signatures: its verification record)
  rmi        remove images
  fsck       check (and with --repair fix) the store on disk
  verify     re-check a stored image's signatures against the current policy, offline
  version    print the version

Run 'pullguard <command> --help' for a command's options.`;

const SERVE_USAGE = 'Usage: pullguard serve [options]';

const SERVE_HELP = `${SERVE_USAGE}

Runs the CRI ImageService (kubelet imageServiceEndpoint / crictl --image-endpoint). Each setting
comes from its flag, else the --config file (the same keys in camelCase), else the environment,
else its default. SIGTERM or SIGINT stops it; SIGHUP reloads the policy, keys and registries.d.
${formatSettingsHelp(undefined, [['-h, --help', 'this help']])}`;

async function main(argv: readonly string[]): Promise<number> {
  const [command, ...rest] = argv;
  const environment = processEnvironment();
  switch (command) {
    case undefined:
    case 'help':
    case '--help':
    case '-h':
      process.stdout.write(`${HELP}\n`);
      return command === undefined ? 2 : 0;
    case 'version':
    case '--version':
      process.stdout.write(`pullguard ${VERSION}\n`);
      return 0;
    case 'serve':
      if (rest.includes('--help') || rest.includes('-h')) {
        process.stdout.write(`${SERVE_HELP}\n`);
        return 0;
      }
      return serve(rest, environment);
    case 'fsck':
      return runFsck(rest, { stdout: process.stdout, stderr: process.stderr, environment });
    case 'verify':
      return runVerify(rest, { stdout: process.stdout, stderr: process.stderr, environment });
    default:
      if (command in CLIENT_HELP) return runClientCommand(command, rest, { stdout: process.stdout, stderr: process.stderr, defaultSocket: defaultClientSocket(environment) });
      process.stderr.write(`pullguard: unknown command ${JSON.stringify(command)}\n\n${HELP}\n`);
      return 2;
  }
}

/** Everything SIGHUP may replace. Swapped whole, and only once the new set loaded cleanly. */
interface ReloadableConfig {
  readonly policies: PolicySelector;
  readonly registriesD: RegistriesD;
  /** Lookaside first, then sigstore attachments: simple signing before sigstore, as containers/image. */
  readonly signatureSources: readonly SignatureSource[];
}

async function loadReloadable(
  config: DaemonConfig,
  registry: ImageArtifactReader,
  lookasideDispatcher: Agent,
  logger: Logger,
  observeLookaside?: (event: LookasideEvent) => void,
): Promise<ReloadableConfig> {
  const policies = new PolicySelector({ ...policySelection(config), reload: 'explicit' });
  // Load every policy and its keys now: an invalid policy or a missing key file fails here, at
  // start-up or at a SIGHUP reload (which then keeps the previous configuration), not at a pull.
  const global = await policies.preload();
  if (global.embedded) logger.warn({ policy: '<embedded>' }, describeEmbeddedDefault());
  // Embedded defaults keep everything under the state dir; with a registries.d directory the
  // upstream built-in default applies, as in containers/image.
  const registriesD =
    config.registriesD !== undefined
      ? await loadRegistriesD(config.registriesD, { defaultLookaside: UPSTREAM_DEFAULT_LOOKASIDE })
      : parseRegistriesD([], { defaultLookaside: `file://${join(config.stateDir, 'sigstore')}` });
  const lookaside = createLookasideSource({
    registriesD,
    dispatcher: lookasideDispatcher,
    requestTimeoutMs: config.lookaside.requestTimeoutMs,
    budgetMs: config.lookaside.budgetMs,
    userAgent: `pullguard/${VERSION}`,
    onEvent: (event) => {
      observeLookaside?.(event);
      if (event.type === 'retry') logger.info({ lookaside: event }, 'retrying signature request');
      else logger.debug({ lookaside: event }, 'lookaside');
    },
  });
  const attachments = createSigstoreAttachmentSource({ registriesD, registry, budgetMs: config.lookaside.budgetMs });
  return { policies, registriesD, signatureSources: [lookaside, attachments] };
}

async function serve(argv: readonly string[], environment: Environment): Promise<number> {
  let values: DaemonFlagValues;
  try {
    ({ values } = parseCommandLine({ args: [...argv], options: parseOptionsFor(), allowPositionals: false, strict: true }));
  } catch (err) {
    if (!isCommandLineError(err)) throw err;
    process.stderr.write(`pullguard serve: ${err.message}\n${SERVE_USAGE}; run 'pullguard serve --help' for the options.\n`);
    return 2;
  }
  const config = resolveDaemonConfig(values, environment);
  const logger = createLogger({ level: config.logLevel });
  logger.info({ version: VERSION, stateDir: config.stateDir, policy: config.signaturePolicy ?? '<embedded>', registriesD: config.registriesD ?? '<none>' }, 'starting pullguard');

  const store = await openStore(config.storeDir);
  const registries = config.registriesConf !== undefined ? parseRegistriesConf(readFileSync(config.registriesConf, 'utf8'), config.registriesConf) : EMPTY_REGISTRIES_CONFIG;
  const authFile = config.authFile !== undefined ? await loadAuthFile(config.authFile) : undefined;
  const registry = createRegistryClient({
    platform: config.platform,
    registries,
    insecureRegistries: config.insecureRegistries,
    ...(config.certsDir !== undefined ? { tls: { certsDir: config.certsDir } } : {}),
    ...(authFile !== undefined ? { credentialsFor: (host: string, repository: string): RegistryCredentials | undefined => lookupCredentials(authFile, host, repository) } : {}),
    timeouts: { connectMs: config.registry.connectTimeoutMs },
    userAgent: `pullguard/${VERSION}`,
    onEvent: (event) => logger.info({ registry: event }, `registry ${event.type}`),
  });
  // Lookaside servers get their own connection pool: they never see registry credentials.
  const lookasideDispatcher = new Agent({ connect: { timeout: config.lookaside.requestTimeoutMs } });
  const metrics = createPullguardMetrics();
  const observeLookaside = observeLookasideEvents(metrics);
  let reloadable = await loadReloadable(config, registry, lookasideDispatcher, logger, observeLookaside);

  const shutdown = new AbortController();
  const observePull = observePullEvents(metrics);
  const inFlight = new InFlightImages();
  const pulls = new PullService({
    inFlight,
    source: registry,
    signaturePhase: async ({ namespace, image, credentials, signal }) => {
      const current = reloadable;
      const policy = await current.policies.policyForNamespace(namespace);
      const outcome = await runSignaturePhaseWithSignatures({
        policy,
        image,
        sources: current.signatureSources,
        ...(signal !== undefined ? { signal } : {}),
        ...(credentials !== undefined ? { credentials } : {}),
      });
      // Kept in the verification record: `pullguard verify` names it and compares.
      const namespaceFile = namespace !== undefined && namespace !== '' && config.signaturePolicyDir !== undefined ? { name: namespace, file: join(config.signaturePolicyDir, `${namespace}.json`) } : undefined;
      return { ...outcome, policySource: policySourceOf({ embedded: policy.embedded, file: policy.policy.source }, namespaceFile) };
    },
    content: store.blobs,
    images: store.images,
    leases: store.blobs,
    collectGarbage: () => store.images.collectGarbage(),
    clock: () => new Date(),
    version: VERSION,
    layerConcurrency: config.registry.layerConcurrency,
    onEvent: (event) => {
      observePull(event);
      if (event.type === 'verdict') {
        logger.info({ image: event.image, allowed: event.verdict.allowed, policyFile: event.verdict.scope.policyFile, scope: event.verdict.scope.scope, troubles: event.verdict.troubles.length }, 'signature verdict');
      } else logger.debug({ pull: event }, `pull ${event.type}`);
    },
  });
  const catalog = new ImageCatalog(store.images, {
    collectGarbage: () => store.images.collectGarbage(),
    fsInfo: async () => store.blobs.fsInfo(),
  });
  const events = await createEventRecorder({
    logger,
    nodeName: config.nodeName,
    ...(config.kubeconfig !== undefined ? { kubeconfigPath: config.kubeconfig } : {}),
    inCluster: config.inCluster,
    onOutcome: (outcome) => metrics.recordEvent(outcome),
  });
  const onPullWarnings: ImageServiceDeps['onPullWarnings'] = ({ image, pod, warnings }) => {
    if (pod !== undefined) events.warn(pod, { reason: 'SignatureRetrievalDegraded', message: describePullWarnings(warnings), image });
  };
  const metricsServer = config.metricsAddress !== undefined ? await startMetricsServer({ address: config.metricsAddress, metrics, logger }) : undefined;

  // Backend mode: verified pulls are handed to the runtime pinned by digest; it fetches the
  // verified bytes from the loopback mirror (containerd hosts.toml / CRI-O registries.conf).
  const backend = config.backend !== undefined ? createCriBackend({ endpoint: config.backend }) : undefined;
  const mirror = backend !== undefined ? await startMirror({ address: config.mirrorAddress, blobs: store.blobs, index: store.images, inFlight, logger }) : undefined;
  if (mirror !== undefined) logger.info({ backend: config.backend, mirror: mirror.url }, 'backend mode: serving verified content to the runtime');
  const handlers =
    backend !== undefined
      ? createBackendHandlers({ pulls, backend, index: store.images, collectGarbage: () => store.images.collectGarbage(), logger, shutdownSignal: shutdown.signal, version: VERSION, onPullWarnings })
      : createImageServiceHandlers({
          pulls,
          catalog,
          logger,
          version: VERSION,
          clock: () => new Date(),
          shutdownSignal: shutdown.signal,
          onPullWarnings,
          observer: { rpc: (rpc, code) => metrics.recordRpc(rpc, code), pull: (result, seconds) => metrics.recordPull(pullOutcomeOf(result), seconds) },
        });
  const definitions = backend !== undefined ? backendServiceDefinitions() : criServiceDefinitions();
  const server = await startCriServer({
    socketPath: config.socket,
    logger,
    services: [
      { definition: definitions.image, implementation: handlers.image },
      { definition: definitions.runtime, implementation: handlers.runtime },
    ],
    wrapConnection: (socket) => acceptLocalAuthority(socket, { onError: (err) => logger.warn({ err: err.message }, 'closed a malformed HTTP/2 connection') }),
  });

  process.on('SIGHUP', () => {
    loadReloadable(config, registry, lookasideDispatcher, logger, observeLookaside).then(
      (next) => {
        reloadable = next;
        logger.info('configuration reloaded');
      },
      (err: unknown) => logger.error({ err: describeError(err) }, 'configuration reload failed; keeping the previous configuration'),
    );
  });

  return new Promise<number>((resolve) => {
    let stopping = false;
    const stop = (signal: string): void => {
      if (stopping) return;
      stopping = true;
      logger.info({ signal, graceMs: config.shutdownGraceMs }, 'shutting down: no new calls; in-flight calls get the grace period');
      // After the grace period, cancel what is still running; ingests abort and leave no partial blob.
      const cancelTimer = setTimeout(() => shutdown.abort(new Error('server shutting down')), config.shutdownGraceMs);
      server
        .close(config.shutdownGraceMs + 1000)
        .then(async () => {
          clearTimeout(cancelTimer);
          shutdown.abort(new Error('server shut down'));
          await events.close();
          await metricsServer?.close();
          await mirror?.close();
          backend?.close();
          await registry.close();
          await lookasideDispatcher.close();
          await store.close();
          logger.info('stopped');
          logger.flush();
          resolve(0);
        })
        .catch((err: unknown) => {
          logger.error({ err: describeError(err) }, 'shutdown failed');
          resolve(1);
        });
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
  });
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`pullguard${process.argv[2] !== undefined ? ` ${process.argv[2]}` : ''}: ${describeError(err)}\n`);
    process.exitCode = 1;
  },
);
