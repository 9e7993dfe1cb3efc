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
import { runFsck, runVerify } from './cli/offline-commands.js';
import { acceptLocalAuthority } from './transport/authority.js';
import { createBackendHandlers, backendServiceDefinitions } from './cri/backend-handlers.js';
import { createImageServiceHandlers, criServiceDefinitions } from './cri/image-service.js';
import { countRpcs } from './cri/instrument.js';
import { createCriBackend } from './backend/cri-backend.js';
import { createEventRecorder } from './events/event-recorder.js';
import { PullWarningEvents } from './events/pull-warning-events.js';
import { startMetricsServer } from './metrics/metrics-server.js';
import { createPullguardMetrics, observeLookasideEvents, PullMetrics } from './metrics/pullguard-metrics.js';
import { startMirror } from './mirror/mirror-server.js';
import { InFlightImages } from './pull/in-flight-images.js';
import { startCriServer } from './cri/server.js';
import { describeError, isCommandLineError, parseCommandLine } from './config/command-line.js';
import {
  defaultClientSocket,
  policySelection,
  processEnvironment,
  resolveDaemonConfig,
  type DaemonConfig,
  type DaemonFlagValues,
  type Environment,
} from './config/daemon-config.js';
import { formatSettingsHelp, parseOptionsFor } from './config/flag-table.js';
import { describeEmbeddedDefault, PolicySelector } from './config/policy-loader.js';
import { loadRegistriesD, parseRegistriesD, UPSTREAM_DEFAULT_LOOKASIDE, type RegistriesD } from './config/registries-d.js';
import { ImageCatalog } from './images/image-catalog.js';
import { createLookasideSource, type LookasideEvent } from './sources/lookaside-source.js';
import { createLogger, type Logger } from './log/logger.js';
import { eachListener } from './pull/observers.js';
import { logLookasideEvents, logRegistryEvents, PullLog } from './pull/pull-log.js';
import { PullService } from './pull/pull-service.js';
import type { LoadedTrust } from './pull/ports.js';
import { signaturePhaseUnder } from './pull/signature-phase.js';
import { VerdictCache } from './pull/verdict-cache.js';
import { ConfiguredTrust, TrustConfigurationHolder } from './pull/trust-configuration.js';
import { loadAuthFile } from './registry/auth-file.js';
import { createRegistryClient, type ImageArtifactReader } from './registry/client.js';
import { createSigstoreAttachmentSource } from './sources/attachment-source.js';
import { EMPTY_REGISTRIES_CONFIG, parseRegistriesConf } from './registry/registries-conf.js';
import { openStore } from './store/open-store.js';
import { packageRoot } from './util/package-root.js';
import { runDoctor } from './doctor/doctor-command.js';
import { runVerifierCommand } from './verifier/verifier-command.js';
import { startVerifierServer } from './verifier/verifier-server.js';
import { verifierJudge } from './verifier/verifier-verdicts.js';

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
  verifier   install pullguard as containerd 2.x's image verifier (verifier install)
  doctor     warn where the node's runtime configuration skips or undoes verification
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
    case 'verifier':
      return runVerifierCommand(rest, { stdout: process.stdout, stderr: process.stderr, environment });
    case 'doctor':
      return runDoctor(rest, { stdout: process.stdout, stderr: process.stderr, environment });
    default:
      if (command in CLIENT_HELP)
        return runClientCommand(command, rest, { stdout: process.stdout, stderr: process.stderr, defaultSocket: defaultClientSocket(environment) });
      process.stderr.write(`pullguard: unknown command ${JSON.stringify(command)}\n\n${HELP}\n`);
      return 2;
  }
}

/**
 * Loads the trust configuration: every policy with its keys, registries.d, and the signature sources
 * it configures. At start-up, and again at each SIGHUP (which keeps the previous one if this fails).
 */
async function loadTrust(
  config: DaemonConfig,
  registry: ImageArtifactReader,
  lookasideDispatcher: Agent,
  logger: Logger,
  onLookasideEvent: (event: LookasideEvent) => void,
): Promise<LoadedTrust> {
  const policies = new PolicySelector({ ...policySelection(config), reload: 'explicit' });
  // Load every policy and its keys now: an invalid policy or a missing key file fails here, at
  // start-up or at a SIGHUP reload (which then keeps the previous configuration), not at a pull.
  const global = await policies.preload();
  if (global.embedded) logger.warn({ policy: '<embedded>' }, describeEmbeddedDefault());
  // Embedded defaults keep everything under the state dir; with a registries.d directory the
  // upstream built-in default applies, as in containers/image.
  const registriesD: RegistriesD =
    config.registriesD !== undefined
      ? await loadRegistriesD(config.registriesD, { defaultLookaside: UPSTREAM_DEFAULT_LOOKASIDE })
      : parseRegistriesD([], { defaultLookaside: `file://${join(config.stateDir, 'sigstore')}` });
  const lookaside = createLookasideSource({
    registriesD,
    dispatcher: lookasideDispatcher,
    requestTimeoutMs: config.lookaside.requestTimeoutMs,
    budgetMs: config.lookaside.budgetMs,
    userAgent: `pullguard/${VERSION}`,
    onEvent: onLookasideEvent,
  });
  const attachments = createSigstoreAttachmentSource({ registriesD, registry, budgetMs: config.lookaside.budgetMs });
  return new ConfiguredTrust({
    policies,
    ...(config.signaturePolicyDir !== undefined ? { namespaceDir: config.signaturePolicyDir } : {}),
    signatureSources: [lookaside, attachments],
    requireSignatureVerification: config.requireSignatureVerification,
  });
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
  logger.info(
    { version: VERSION, stateDir: config.stateDir, policy: config.signaturePolicy ?? '<embedded>', registriesD: config.registriesD ?? '<none>' },
    'starting pullguard',
  );

  const store = await openStore(config.storeDir);
  const registries =
    config.registriesConf !== undefined ? parseRegistriesConf(readFileSync(config.registriesConf, 'utf8'), config.registriesConf) : EMPTY_REGISTRIES_CONFIG;
  const authFile = config.authFile !== undefined ? await loadAuthFile(config.authFile) : undefined;
  const registry = createRegistryClient({
    platform: config.platform,
    registries,
    insecureRegistries: config.insecureRegistries,
    ...(config.certsDir !== undefined ? { tls: { certsDir: config.certsDir } } : {}),
    ...(authFile !== undefined ? { authFile } : {}),
    timeouts: { connectMs: config.registry.connectTimeoutMs, readMs: config.registry.readTimeoutMs },
    minBlobBytesPerSecond: config.registry.minBlobRateKiBps * 1024,
    userAgent: `pullguard/${VERSION}`,
    onEvent: logRegistryEvents(logger),
  });
  // Lookaside servers get their own connection pool: they never see registry credentials.
  const lookasideDispatcher = new Agent({ connect: { timeout: config.lookaside.requestTimeoutMs } });
  const metrics = createPullguardMetrics();
  const onLookasideEvent = eachListener(observeLookasideEvents(metrics), logLookasideEvents(logger));
  const trust = new TrustConfigurationHolder(await loadTrust(config, registry, lookasideDispatcher, logger, onLookasideEvent));

  const events = await createEventRecorder({
    logger,
    nodeName: config.nodeName,
    ...(config.kubeconfig !== undefined ? { kubeconfigPath: config.kubeconfig } : {}),
    inCluster: config.inCluster,
    outcomes: metrics,
  });
  const shutdown = new AbortController();
  const inFlight = new InFlightImages();
  const pulls = new PullService({
    inFlight,
    source: registry,
    signaturePhase: signaturePhaseUnder(trust, {
      // A denial is remembered no longer than one signature phase may take: an outage must not outlive itself.
      cache: new VerdictCache({ ttlMs: config.verdictCacheTtlMs, denialTtlMs: config.lookaside.budgetMs }),
    }),
    trust,
    content: store.blobs,
    images: store.images,
    leases: store.blobs,
    garbage: store.images,
    version: VERSION,
    layerConcurrency: config.registry.layerConcurrency,
    // Every pull, in either CRI mode, is counted, logged and (with warnings) told to its pod.
    observers: [new PullMetrics(metrics), new PullLog(logger), new PullWarningEvents(events)],
  });
  const catalog = new ImageCatalog(store.images, {
    collectGarbage: () => store.images.collectGarbage(),
    fsInfo: async () => store.blobs.fsInfo(),
  });
  const metricsServer = config.metricsAddress !== undefined ? await startMetricsServer({ address: config.metricsAddress, metrics, logger }) : undefined;

  // Backend mode: verified pulls are handed to the runtime pinned by digest. By default it fetches
  // them from its own registry configuration; with --runtime-fetch mirror, from pullguard's loopback
  // mirror of verified bytes (containerd hosts.toml / CRI-O registries.conf).
  const backend = config.backend !== undefined ? createCriBackend({ endpoint: config.backend }) : undefined;
  const mirror =
    backend !== undefined && config.runtimeFetch === 'mirror'
      ? await startMirror({ address: config.mirrorAddress, blobs: store.blobs, index: store.images, inFlight, logger })
      : undefined;
  if (backend !== undefined) {
    logger.info(
      { backend: config.backend, runtimeFetch: config.runtimeFetch, ...(mirror !== undefined ? { mirror: mirror.url } : {}) },
      'backend mode: the runtime pulls verified digests',
    );
  }
  const handlers = countRpcs(
    backend !== undefined
      ? createBackendHandlers({
          pulls,
          backend,
          fetchMode: config.runtimeFetch,
          index: store.images,
          collectGarbage: () => store.images.collectGarbage(),
          logger,
          shutdownSignal: shutdown.signal,
          version: VERSION,
        })
      : createImageServiceHandlers({ pulls, catalog, logger, version: VERSION, clock: () => new Date(), shutdownSignal: shutdown.signal }),
    metrics,
  );
  const definitions = backend !== undefined ? backendServiceDefinitions() : criServiceDefinitions();
  // containerd 2.x's image verifier asks here for the verdict on name@digest (src/verifier/); up
  // before the CRI socket, so whoever sees that one listening finds this one too.
  const verifierServer =
    config.verifierSocket !== undefined
      ? await startVerifierServer({
          socketPath: config.verifierSocket,
          logger,
          answerTimeoutMs: 2 * config.registry.readTimeoutMs + config.lookaside.budgetMs + 5000,
          judge: verifierJudge({ pulls, index: store.images, inFlight, signal: shutdown.signal }),
        })
      : undefined;
  const server = await startCriServer({
    socketPath: config.socket,
    logger,
    services: [
      { definition: definitions.image, implementation: handlers.image },
      { definition: definitions.runtime, implementation: handlers.runtime },
    ],
    wrapConnection: (socket) => acceptLocalAuthority(socket, { onError: (err) => logger.warn({ err: err.message }, 'closed a malformed HTTP/2 connection') }),
  }).catch(async (err: unknown) => {
    // No CRI socket (say, another server holds it): no verifier answers either, and the process can exit.
    await verifierServer?.close(0);
    throw err;
  });

  process.on('SIGHUP', () => {
    loadTrust(config, registry, lookasideDispatcher, logger, onLookasideEvent).then(
      (next) => {
        trust.replace(next);
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
      Promise.all([server.close(config.shutdownGraceMs + 1000), verifierServer?.close(config.shutdownGraceMs)])
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
