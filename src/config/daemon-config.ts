/**
 * pullguard's own configuration: command-line flags over an optional JSON config file over the
 * environment (PULLGUARD_STATE_DIR, PULLGUARD_SOCKET, NODE_NAME) over embedded defaults. Validated
 * once, all problems at once, then frozen. `serve`, `verify` and `fsck` all resolve it here, so the
 * offline commands see the store and policy the server used. Only this module and src/main.ts read
 * the environment.
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import { arch, hostname } from 'node:os';
import { isAbsolute, join, resolve } from 'node:path';
import { ValidationError } from '../domain/errors.js';
import { parseCommandLine } from './command-line.js';
import { configFileKeys, parseOptionsFor, SERVE_SETTINGS, type ConfigKeyType } from './flag-table.js';
import type { PolicySelectorOptions } from './policy-loader.js';

export interface DaemonConfig {
  readonly stateDir: string;
  readonly socket: string;
  readonly storeDir: string;
  readonly logLevel: string;
  /** undefined = no policy file exists anywhere: the embedded default applies (and says so loudly). */
  readonly signaturePolicy: string | undefined;
  readonly signaturePolicyDir: string | undefined;
  /** Deny images the policy would accept without verifying any signature (upstream's RequireSignatureVerification). */
  readonly requireSignatureVerification: boolean;
  readonly registriesD: string | undefined;
  readonly registriesConf: string | undefined;
  readonly insecureRegistries: readonly string[];
  readonly authFile: string | undefined;
  /** certs.d-style CA directory: `<dir>/<host[:port]>/*.crt` are trusted for that registry. */
  readonly certsDir: string | undefined;
  readonly platform: { readonly os: string; readonly architecture: string; readonly variant?: string };
  readonly lookaside: { readonly requestTimeoutMs: number; readonly budgetMs: number };
  readonly registry: {
    readonly connectTimeoutMs: number;
    /** Whole manifest/token/ping read, retries included; a blob's allowance before the rate applies. */
    readonly readTimeoutMs: number;
    /** Average rate below which a blob read fails, after the allowance. */
    readonly minBlobRateKiBps: number;
    readonly layerConcurrency: number;
  };
  readonly shutdownGraceMs: number;
  readonly metricsAddress: string | undefined;
  /** Pod Events: a kubeconfig file, or the in-cluster service account; neither = no Events. */
  readonly kubeconfig: string | undefined;
  readonly inCluster: boolean;
  readonly nodeName: string;
  /** Backend mode: the runtime's CRI socket (`unix:///run/containerd/containerd.sock`). */
  readonly backend: string | undefined;
  /** Backend mode: where the read-only verified-content mirror listens (loopback only). */
  readonly mirrorAddress: string;
  /** Backend mode: the runtime fetches the layers itself, or pullguard does and serves them from its mirror. */
  readonly runtimeFetch: 'runtime' | 'mirror';
  /** The socket containerd 2.x's image verifier asks (src/verifier/); undefined = off. */
  readonly verifierSocket: string | undefined;
  /** How long a verdict answers re-pulls of the same digest under the same policy; 0 = no verdict cache. */
  readonly verdictCacheTtlMs: number;
}

const GO_ARCH: Record<string, string> = { x64: 'amd64', arm64: 'arm64', arm: 'arm', ia32: '386', ppc64: 'ppc64le', s390x: 's390x', riscv64: 'riscv64' };

/** The global policy file containers/image reads when none is configured. */
export const SYSTEM_POLICY = '/etc/containers/policy.json';

export interface Environment {
  readonly cwd: string;
  readonly env: Readonly<Record<string, string | undefined>>;
  readonly exists: (path: string) => boolean;
  readonly isDirectory: (path: string) => boolean;
  readonly readFile: (path: string) => string;
  readonly hostArch: string;
  readonly hostname: string;
}

export function processEnvironment(): Environment {
  return {
    cwd: process.cwd(),
    env: process.env,
    exists: existsSync,
    isDirectory: (p) => statSync(p, { throwIfNoEntry: false })?.isDirectory() === true,
    readFile: (p) => readFileSync(p, 'utf8'),
    hostArch: arch(),
    hostname: hostname(),
  };
}

/** Parsed flag values by flag name (`state-dir`), as node:util parseArgs returns them. */
export type DaemonFlagValues = Readonly<Record<string, string | boolean | readonly (string | boolean)[] | undefined>>;

/** Parses `pullguard serve` arguments into a frozen DaemonConfig, or throws listing every problem. */
export function loadDaemonConfig(argv: readonly string[], environment: Environment = processEnvironment()): DaemonConfig {
  const { values } = parseCommandLine({ args: [...argv], options: parseOptionsFor(), allowPositionals: false, strict: true });
  return resolveDaemonConfig(values, environment);
}

/**
 * The one resolution of the daemon configuration, for `serve` and for the offline commands (which
 * pass only the flags they take): each setting from its flag, else the --config file, else the
 * environment, else the default. Throws INVALID_CONFIG listing every problem.
 */
export function resolveDaemonConfig(values: DaemonFlagValues, environment: Environment = processEnvironment()): DaemonConfig {
  const problems: string[] = [];
  const abs = (p: string | undefined): string | undefined => (p === undefined ? undefined : isAbsolute(p) ? p : resolve(environment.cwd, p));
  const configPath = abs(typeof values['config'] === 'string' ? values['config'] : undefined);
  const file = configPath !== undefined ? readConfigFile(configPath, environment, problems) : {};
  const keyOf = new Map(SERVE_SETTINGS.map((s) => [s.flag, s.key]));
  const setting = (flag: string): unknown => {
    if (values[flag] !== undefined) return values[flag];
    const key = keyOf.get(flag);
    return key !== undefined ? file[key] : undefined;
  };
  /** Where a setting came from, for messages: `--registries-d` or `registriesD in /etc/pullguard.json`. */
  const origin = (flag: string): string =>
    values[flag] !== undefined || configPath === undefined ? `--${flag}` : `${keyOf.get(flag) ?? flag} in ${configPath}`;
  const text = (flag: string): string | undefined => {
    const value = setting(flag);
    return typeof value === 'string' ? value : undefined;
  };
  /** A file or directory the operator named: it must be there (defaults that are absent are just off). */
  const given = (flag: string, what: string, kind: 'file' | 'directory'): string | undefined => {
    const path = abs(text(flag));
    if (path === undefined) return undefined;
    if (!environment.exists(path)) problems.push(`${what} ${path} does not exist (${origin(flag)})`);
    else if (kind === 'directory' && !environment.isDirectory(path)) problems.push(`${what} ${path} is not a directory (${origin(flag)})`);
    return path;
  };
  const systemDefault = (path: string): string | undefined => (environment.exists(path) ? path : undefined);

  const stateDir = abs(text('state-dir') ?? environment.env['PULLGUARD_STATE_DIR'] ?? '.pullguard')!;
  const socket = abs(text('socket') ?? environment.env['PULLGUARD_SOCKET'] ?? join(stateDir, 'pullguard.sock'))!;
  const verifierSocketText = text('verifier-socket');
  const verifierSocket = verifierSocketText === 'off' ? undefined : abs(verifierSocketText ?? join(stateDir, 'verifier.sock'));
  const signaturePolicy = given('signature-policy', 'signature policy', 'file') ?? systemDefault(SYSTEM_POLICY);
  const signaturePolicyDir = given('signature-policy-dir', 'signature policy directory', 'directory');
  const registriesD = given('registries-d', 'registries.d directory', 'directory') ?? systemDefault('/etc/containers/registries.d');
  const registriesConf = given('registries-conf', 'registries.conf', 'file') ?? systemDefault('/etc/containers/registries.conf');
  const authFile = given('auth-file', 'auth file', 'file');
  const certsDir = given('certs-dir', 'certs directory', 'directory') ?? systemDefault('/etc/containers/certs.d');
  const kubeconfig = given('kubeconfig', 'kubeconfig', 'file');

  const flagHosts = values['insecure-registry'];
  const insecureRegistries = [...(Array.isArray(flagHosts) ? flagHosts.map(String) : []), ...((file['insecureRegistries'] as string[] | undefined) ?? [])];
  for (const host of insecureRegistries) {
    if (!/^[A-Za-z0-9.-]+(?::\d{1,5})?$|^\[[0-9a-fA-F:.]+\](?::\d{1,5})?$/.test(host))
      problems.push(`--insecure-registry ${JSON.stringify(host)} is not HOST[:PORT]`);
  }

  const platformText = text('platform') ?? `linux/${GO_ARCH[environment.hostArch] ?? environment.hostArch}`;
  const [os, architecture, variant, ...extra] = platformText.split('/');
  if (!os || !architecture || extra.length > 0) problems.push(`--platform ${JSON.stringify(platformText)} is not OS/ARCH[/VARIANT]`);

  // Flags take `10s`; the config file takes milliseconds (its keys end in Ms).
  const duration = (flag: string, fallback: number): number => {
    const raw = setting(flag);
    if (raw === undefined) return fallback;
    const ms = typeof raw === 'number' ? raw : parseDuration(String(raw));
    if (ms === undefined || ms <= 0) {
      problems.push(`--${flag} ${JSON.stringify(raw)} is not a positive duration (e.g. 10s, 500ms)`);
      return fallback;
    }
    return ms;
  };
  /** A duration where 0 means off. */
  const durationOrOff = (flag: string, fallback: number): number => {
    const raw = setting(flag);
    if (raw === undefined) return fallback;
    const ms = typeof raw === 'number' ? raw : parseDuration(String(raw));
    if (ms === undefined || !Number.isFinite(ms) || ms < 0) {
      problems.push(`--${flag} ${JSON.stringify(raw)} is not a duration (e.g. 10m, 30s; 0 for off)`);
      return fallback;
    }
    return ms;
  };
  /** A whole number in [min, max], in `unit` (for the message). */
  const integer = (flag: string, fallback: number, max: number, unit = ''): number => {
    const raw = setting(flag);
    if (raw === undefined) return fallback;
    const n = Number(raw);
    if (!Number.isInteger(n) || n < 1 || n > max) {
      problems.push(`--${flag} must be an integer${unit} from 1 to ${max}`);
      return fallback;
    }
    return n;
  };
  const count = (flag: string, fallback: number): number => integer(flag, fallback, 64);
  const rate = (flag: string, fallback: number): number => integer(flag, fallback, 1_048_576, ' number of KiB/s');

  /** One of `values`; anything else is a problem (and the fallback stands in). */
  const choice = <T extends string>(flag: string, values: readonly T[], fallback: T): T => {
    const raw = text(flag);
    if (raw === undefined) return fallback;
    if ((values as readonly string[]).includes(raw)) return raw as T;
    problems.push(`--${flag} ${JSON.stringify(raw)} is not one of ${values.join(', ')}`);
    return fallback;
  };

  const inCluster = setting('in-cluster') === true;
  const config: DaemonConfig = {
    stateDir,
    socket,
    storeDir: join(stateDir, 'store'),
    logLevel: choice('log-level', ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'], 'info'),
    signaturePolicy,
    signaturePolicyDir,
    requireSignatureVerification: setting('require-signature-verification') === true,
    registriesD,
    registriesConf,
    insecureRegistries,
    authFile,
    certsDir,
    platform: { os: os ?? 'linux', architecture: architecture ?? 'amd64', ...(variant ? { variant } : {}) },
    lookaside: { requestTimeoutMs: duration('lookaside-timeout', 10_000), budgetMs: duration('signature-budget', 30_000) },
    registry: {
      connectTimeoutMs: 10_000,
      readTimeoutMs: duration('registry-read-timeout', 30_000),
      minBlobRateKiBps: rate('min-blob-rate', 64),
      layerConcurrency: count('layer-concurrency', 4),
    },
    shutdownGraceMs: duration('shutdown-grace', 10_000),
    metricsAddress: text('metrics-address'),
    kubeconfig,
    inCluster,
    // kubelet registers the node under its lower-cased hostname unless told otherwise.
    nodeName: text('node-name') ?? environment.env['NODE_NAME'] ?? environment.hostname.toLowerCase(),
    backend: text('backend'),
    mirrorAddress: text('mirror-address') ?? '127.0.0.1:5050',
    runtimeFetch: choice('runtime-fetch', ['runtime', 'mirror'], 'runtime'),
    verifierSocket,
    verdictCacheTtlMs: durationOrOff('verdict-cache-ttl', 10 * 60_000),
  };
  if (config.backend !== undefined && !/^unix:\/\/\/./.test(config.backend)) problems.push(`--backend ${JSON.stringify(config.backend)} is not unix:///PATH`);
  if (config.kubeconfig !== undefined && config.inCluster) problems.push('--kubeconfig and --in-cluster are mutually exclusive');
  if (problems.length > 0) throw new ValidationError('INVALID_CONFIG', 'invalid configuration', problems);
  return deepFreeze(config);
}

/** The policy files the configuration names, in the form PolicySelector takes (serve and verify alike). */
export function policySelection(config: DaemonConfig): Pick<PolicySelectorOptions, 'globalPath' | 'namespaceDir' | 'allowEmbeddedDefault'> {
  return {
    globalPath: config.signaturePolicy ?? SYSTEM_POLICY,
    ...(config.signaturePolicyDir !== undefined ? { namespaceDir: config.signaturePolicyDir } : {}),
    allowEmbeddedDefault: config.signaturePolicy === undefined,
  };
}

/** The socket client commands use without --socket: the one `serve` listens on with the same environment. */
export function defaultClientSocket(environment: Environment = processEnvironment()): string {
  const socket = environment.env['PULLGUARD_SOCKET'] ?? join(environment.env['PULLGUARD_STATE_DIR'] ?? '.pullguard', 'pullguard.sock');
  return isAbsolute(socket) ? socket : resolve(environment.cwd, socket);
}

const CONFIG_FILE_KEYS = configFileKeys();

/** The config file's object; a key that is unknown or of the wrong type is reported and left out. */
function readConfigFile(path: string, environment: Environment, problems: string[]): Record<string, unknown> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(environment.readFile(path));
  } catch (err) {
    problems.push(`config file ${path}: ${(err as Error).message}`);
    return {};
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    problems.push(`config file ${path}: a JSON object expected`);
    return {};
  }
  const accepted: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(parsed)) {
    const type: ConfigKeyType | undefined = CONFIG_FILE_KEYS.get(key);
    if (type === undefined) problems.push(`config file ${path}: unknown key ${JSON.stringify(key)}`);
    else if (type === 'string[]' ? !Array.isArray(value) || value.some((v) => typeof v !== 'string') : typeof value !== type) {
      problems.push(`config file ${path}: ${key} must be ${type === 'string[]' ? 'an array of strings' : `a ${type}`}`);
    } else accepted[key] = value;
  }
  return accepted;
}

/** `10s`, `500ms`, `2m`, or a bare number of milliseconds. */
export function parseDuration(text: string): number | undefined {
  const match = /^(\d+(?:\.\d+)?)(ms|s|m)?$/.exec(text.trim());
  if (!match) return undefined;
  const n = Number(match[1]);
  return match[2] === 's' ? n * 1000 : match[2] === 'm' ? n * 60_000 : n;
}

function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null) {
    for (const inner of Object.values(value)) deepFreeze(inner);
    Object.freeze(value);
  }
  return value;
}
