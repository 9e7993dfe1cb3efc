#!/usr/bin/env -S node --max-semi-space-size=2
/**
 * The composition root: the only module that reads the environment and wires adapters to use cases.
 * `pullguard serve` builds config → logger → store → registry client → lookaside → policy →
 * pull service → CRI server; the other commands are clients of a running server (or, for fsck,
 * of the store on disk).
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Agent } from 'undici';
import { runClientCommand, CLIENT_HELP } from './cli/commands.js';
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
import { loadDaemonConfig, processEnvironment, SERVE_FLAGS, type DaemonConfig } from './config/daemon-config.js';
import { describeEmbeddedDefault, PolicySelector } from './config/policy-loader.js';
import { loadRegistriesD, parseRegistriesD, UPSTREAM_DEFAULT_LOOKASIDE, type RegistriesD } from './config/registries-d.js';
import { isPullguardError, ValidationError } from './domain/errors.js';
import { ImageCatalog } from './images/image-catalog.js';
import { createLookasideSource, type LookasideEvent } from './lookaside/lookaside-source.js';
import { createLogger, type Logger } from './log/logger.js';
import { PullService } from './pull/pull-service.js';
import type { RegistryCredentials, SignatureSource } from './pull/ports.js';
import { reverifyStoredImage } from './pull/reverify.js';
import { runSignaturePhaseWithSignatures } from './pull/signature-phase.js';
import { loadAuthFile, lookupCredentials } from './registry/auth-file.js';
import { createRegistryClient, type ImageArtifactReader } from './registry/client.js';
import { createSigstoreAttachmentSource } from './sigstore/attachment-source.js';
import { EMPTY_REGISTRIES_CONFIG, parseRegistriesConf } from './registry/registries-conf.js';
import { fsck } from './store/fsck.js';
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

const SERVE_HELP = `Usage: pullguard serve [options]

Runs the CRI ImageService (kubelet imageServiceEndpoint / crictl --image-endpoint).
${Object.keys(SERVE_FLAGS)
  .map((flag) => `  --${flag}`)
  .join('\n')}
See README.md "Configuration" for each option and its default.`;

async function main(argv: readonly string[]): Promise<number> {
  const [command, ...rest] = argv;
  const environment = processEnvironment();
  const defaultSocket = environment.env['PULLGUARD_SOCKET'] ?? join(environment.cwd, '.pullguard', 'pullguard.sock');
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
      return serve(rest);
    case 'fsck':
      return runFsck(rest);
    case 'verify':
      return runVerify(rest);
    default:
      if (command in CLIENT_HELP) return runClientCommand(command, rest, { stdout: process.stdout, stderr: process.stderr, defaultSocket });
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
  const policies = new PolicySelector({
    globalPath: config.signaturePolicy ?? '/etc/containers/policy.json',
    ...(config.signaturePolicyDir !== undefined ? { namespaceDir: config.signaturePolicyDir } : {}),
    allowEmbeddedDefault: config.signaturePolicy === undefined,
    reload: 'explicit',
  });
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

async function serve(argv: readonly string[]): Promise<number> {
  const config = loadDaemonConfig(argv);
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
      return runSignaturePhaseWithSignatures({
        policy,
        image,
        sources: current.signatureSources,
        ...(signal !== undefined ? { signal } : {}),
        ...(credentials !== undefined ? { credentials } : {}),
      });
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
  if (metricsServer !== undefined) logger.info({ url: metricsServer.url }, 'metrics listening');

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
      (err: unknown) => logger.error({ err: describe(err) }, 'configuration reload failed; keeping the previous configuration'),
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
          logger.error({ err: describe(err) }, 'shutdown failed');
          resolve(1);
        });
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
  });
}

async function runFsck(argv: readonly string[]): Promise<number> {
  const { parseArgs } = await import('node:util');
  const { values } = parseArgs({ args: [...argv], options: { 'state-dir': { type: 'string' }, repair: { type: 'boolean' }, json: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } } });
  if (values.help) {
    process.stdout.write('Usage: pullguard fsck [--state-dir DIR] [--repair] [--json]\n\nChecks every blob digest and size, the image index against the blobs, and stale temp files.\nRun it while the server is stopped; --repair removes only what is corrupt or unreachable.\n');
    return 0;
  }
  const stateDir = values['state-dir'] ?? join(process.cwd(), '.pullguard');
  const store = await openStore(join(stateDir, 'store'));
  try {
    const report = await fsck(store.blobs, store.images, { repair: values.repair === true });
    if (values.json) process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
    else {
      process.stdout.write(
        `blobs checked: ${report.blobsChecked}\nimages checked: ${report.recordsChecked}\ncorrupt blobs: ${report.corruptBlobs.length}\nbroken images: ${report.brokenRecords.length}\nstale temp files: ${report.staleIngests.length}\nunreachable blobs: ${report.unreachableBlobs.length}\n${report.ok ? 'store is consistent' : values.repair ? 'problems repaired' : 'problems found (run with --repair to fix)'}\n`,
      );
    }
    return report.ok || values.repair === true ? 0 : 1;
  } finally {
    await store.close();
  }
}

async function runVerify(argv: readonly string[]): Promise<number> {
  const { parseArgs } = await import('node:util');
  const { values, positionals } = parseArgs({
    args: [...argv],
    allowPositionals: true,
    options: { 'state-dir': { type: 'string' }, 'signature-policy': { type: 'string' }, 'signature-policy-dir': { type: 'string' }, namespace: { type: 'string' }, help: { type: 'boolean', short: 'h' } },
  });
  if (values.help || positionals.length !== 1) {
    (values.help ? process.stdout : process.stderr).write(
      'Usage: pullguard verify IMAGE [--state-dir DIR] [--signature-policy FILE] [--signature-policy-dir DIR --namespace NS]\n\n' +
        'Re-evaluates the policy against the signatures stored with IMAGE alone (no network), as CRI-O\n' +
        're-checks at container creation. Exit 0: still satisfied; 1: not satisfied or not found.\n',
    );
    return values.help ? 0 : 2;
  }
  const stateDir = values['state-dir'] ?? join(process.cwd(), '.pullguard');
  const policyPath = values['signature-policy'] ?? '/etc/containers/policy.json';
  const policies = new PolicySelector({
    globalPath: policyPath,
    ...(values['signature-policy-dir'] !== undefined ? { namespaceDir: values['signature-policy-dir'] } : {}),
    allowEmbeddedDefault: values['signature-policy'] === undefined,
  });
  const store = await openStore(join(stateDir, 'store'));
  try {
    const name = positionals[0]!;
    const catalog = new ImageCatalog(store.images, { collectGarbage: async () => undefined, fsInfo: async () => store.blobs.fsInfo() });
    const record = await catalog.find(name);
    if (record === undefined) {
      process.stderr.write(`pullguard verify: no such image: ${name}\n`);
      return 1;
    }
    const verdict = await reverifyStoredImage({ record, name, content: store.blobs, policy: await policies.policyForNamespace(values.namespace) });
    if (verdict.allowed) {
      const by = verdict.requirements.flatMap((r) => (r.satisfiedBy ? [`${r.type}: signature-${r.satisfiedBy.location.index} by ${r.satisfiedBy.signer.primaryKeyFingerprint}`] : [`${r.type}: satisfied`]));
      process.stdout.write(`OK: ${name} (${record.id}) still satisfies ${verdict.scope.policyFile} [${verdict.scope.scope}]\n${by.map((l) => `  ${l}\n`).join('')}`);
      return 0;
    }
    process.stdout.write(`NOT SATISFIED: ${name} (${record.id}) under ${verdict.scope.policyFile} [${verdict.scope.scope}]: ${verdict.denial ?? 'denied'}\n`);
    return 1;
  } finally {
    await store.close();
  }
}

function describe(err: unknown): string {
  if (err instanceof ValidationError) return `${err.message}`;
  if (isPullguardError(err)) return err.message;
  return err instanceof Error ? err.message : String(err);
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`pullguard: ${describe(err)}\n`);
    process.exitCode = 1;
  },
);
