/**
 * pullguard's own configuration: command-line flags over an optional JSON config file over embedded
 * defaults. Validated once, all problems at once, then frozen. Only this module and src/main.ts read
 * the environment.
 */
import { existsSync, readFileSync } from 'node:fs';
import { arch, hostname } from 'node:os';
import { isAbsolute, join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { ValidationError } from '../domain/errors.js';

export interface DaemonConfig {
  readonly stateDir: string;
  readonly socket: string;
  readonly storeDir: string;
  readonly logLevel: string;
  /** undefined = no policy file exists anywhere: the embedded default applies (and says so loudly). */
  readonly signaturePolicy: string | undefined;
  readonly signaturePolicyDir: string | undefined;
  readonly registriesD: string | undefined;
  readonly registriesConf: string | undefined;
  readonly insecureRegistries: readonly string[];
  readonly authFile: string | undefined;
  /** certs.d-style CA directory: `<dir>/<host[:port]>/*.crt` are trusted for that registry. */
  readonly certsDir: string | undefined;
  readonly platform: { readonly os: string; readonly architecture: string; readonly variant?: string };
  readonly lookaside: { readonly requestTimeoutMs: number; readonly budgetMs: number };
  readonly registry: { readonly connectTimeoutMs: number; readonly requestTimeoutMs: number; readonly layerConcurrency: number };
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
}

/** Flags understood by `pullguard serve` (each also a key of the config file, in camelCase). */
export const SERVE_FLAGS = {
  config: { type: 'string' },
  'state-dir': { type: 'string' },
  socket: { type: 'string' },
  'log-level': { type: 'string' },
  'signature-policy': { type: 'string' },
  'signature-policy-dir': { type: 'string' },
  'registries-d': { type: 'string' },
  'registries-conf': { type: 'string' },
  'insecure-registry': { type: 'string', multiple: true },
  'auth-file': { type: 'string' },
  'certs-dir': { type: 'string' },
  platform: { type: 'string' },
  'lookaside-timeout': { type: 'string' },
  'signature-budget': { type: 'string' },
  'layer-concurrency': { type: 'string' },
  'shutdown-grace': { type: 'string' },
  'metrics-address': { type: 'string' },
  kubeconfig: { type: 'string' },
  'in-cluster': { type: 'boolean' },
  'node-name': { type: 'string' },
  backend: { type: 'string' },
  'mirror-address': { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const;

const CONFIG_FILE_KEYS: Record<string, 'string' | 'string[]' | 'number' | 'boolean'> = {
  stateDir: 'string',
  socket: 'string',
  logLevel: 'string',
  signaturePolicy: 'string',
  signaturePolicyDir: 'string',
  registriesD: 'string',
  registriesConf: 'string',
  insecureRegistries: 'string[]',
  authFile: 'string',
  certsDir: 'string',
  platform: 'string',
  lookasideTimeoutMs: 'number',
  signatureBudgetMs: 'number',
  layerConcurrency: 'number',
  shutdownGraceMs: 'number',
  metricsAddress: 'string',
  kubeconfig: 'string',
  inCluster: 'boolean',
  nodeName: 'string',
  backend: 'string',
  mirrorAddress: 'string',
};

const GO_ARCH: Record<string, string> = { x64: 'amd64', arm64: 'arm64', arm: 'arm', ia32: '386', ppc64: 'ppc64le', s390x: 's390x', riscv64: 'riscv64' };

export interface Environment {
  readonly cwd: string;
  readonly env: Readonly<Record<string, string | undefined>>;
  readonly exists: (path: string) => boolean;
  readonly readFile: (path: string) => string;
  readonly hostArch: string;
  readonly hostname: string;
}

export function processEnvironment(): Environment {
  return { cwd: process.cwd(), env: process.env, exists: existsSync, readFile: (p) => readFileSync(p, 'utf8'), hostArch: arch(), hostname: hostname() };
}

/** Parses `pullguard serve` arguments into a frozen DaemonConfig, or throws listing every problem. */
export function loadDaemonConfig(argv: readonly string[], environment: Environment = processEnvironment()): DaemonConfig {
  const { values } = parseArgs({ args: [...argv], options: SERVE_FLAGS, allowPositionals: false, strict: true });
  const problems: string[] = [];
  const file = values.config !== undefined ? readConfigFile(values.config, environment, problems) : {};
  const pick = <T>(flag: T | undefined, key: string): T | undefined => (flag !== undefined ? flag : (file[key] as T | undefined));
  const abs = (p: string | undefined): string | undefined => (p === undefined ? undefined : isAbsolute(p) ? p : resolve(environment.cwd, p));

  const stateDir = abs(pick(values['state-dir'], 'stateDir') ?? environment.env['PULLGUARD_STATE_DIR'] ?? '.pullguard')!;
  const socket = abs(pick(values.socket, 'socket') ?? join(stateDir, 'pullguard.sock'))!;
  const explicitPolicy = abs(pick(values['signature-policy'], 'signaturePolicy'));
  if (explicitPolicy !== undefined && !environment.exists(explicitPolicy)) problems.push(`signature policy ${explicitPolicy} does not exist`);
  const signaturePolicy = explicitPolicy ?? (environment.exists('/etc/containers/policy.json') ? '/etc/containers/policy.json' : undefined);
  const registriesD = abs(pick(values['registries-d'], 'registriesD')) ?? (environment.exists('/etc/containers/registries.d') ? '/etc/containers/registries.d' : undefined);
  const explicitConf = abs(pick(values['registries-conf'], 'registriesConf'));
  if (explicitConf !== undefined && !environment.exists(explicitConf)) problems.push(`registries.conf ${explicitConf} does not exist`);
  const registriesConf = explicitConf ?? (environment.exists('/etc/containers/registries.conf') ? '/etc/containers/registries.conf' : undefined);
  const authFile = abs(pick(values['auth-file'], 'authFile'));
  if (authFile !== undefined && !environment.exists(authFile)) problems.push(`auth file ${authFile} does not exist`);

  const explicitCerts = abs(pick(values['certs-dir'], 'certsDir'));
  if (explicitCerts !== undefined && !environment.exists(explicitCerts)) problems.push(`certs directory ${explicitCerts} does not exist`);
  const certsDir = explicitCerts ?? (environment.exists('/etc/containers/certs.d') ? '/etc/containers/certs.d' : undefined);

  const insecureRegistries = [...(values['insecure-registry'] ?? []), ...((file.insecureRegistries as string[] | undefined) ?? [])];
  for (const host of insecureRegistries) {
    if (!/^[A-Za-z0-9.-]+(?::\d{1,5})?$|^\[[0-9a-fA-F:.]+\](?::\d{1,5})?$/.test(host)) problems.push(`--insecure-registry ${JSON.stringify(host)} is not HOST[:PORT]`);
  }

  const platformText = pick(values.platform, 'platform') ?? `linux/${GO_ARCH[environment.hostArch] ?? environment.hostArch}`;
  const [os, architecture, variant, ...extra] = platformText.split('/');
  if (!os || !architecture || extra.length > 0) problems.push(`--platform ${JSON.stringify(platformText)} is not OS/ARCH[/VARIANT]`);

  const duration = (flag: string | undefined, key: string, fallback: number, name: string): number => {
    const raw = flag !== undefined ? flag : file[key];
    if (raw === undefined) return fallback;
    const ms = typeof raw === 'number' ? raw : parseDuration(raw as string);
    if (ms === undefined || ms <= 0) {
      problems.push(`${name} ${JSON.stringify(raw)} is not a positive duration (e.g. 10s, 500ms)`);
      return fallback;
    }
    return ms;
  };
  const count = (flag: string | undefined, key: string, fallback: number, name: string): number => {
    const raw = flag !== undefined ? Number(flag) : (file[key] as number | undefined);
    if (raw === undefined) return fallback;
    if (!Number.isInteger(raw) || raw < 1 || raw > 64) {
      problems.push(`${name} must be an integer from 1 to 64`);
      return fallback;
    }
    return raw;
  };

  const config: DaemonConfig = {
    stateDir,
    socket,
    storeDir: join(stateDir, 'store'),
    logLevel: pick(values['log-level'], 'logLevel') ?? 'info',
    signaturePolicy,
    signaturePolicyDir: abs(pick(values['signature-policy-dir'], 'signaturePolicyDir')),
    registriesD,
    registriesConf,
    insecureRegistries,
    authFile,
    certsDir,
    platform: { os: os ?? 'linux', architecture: architecture ?? 'amd64', ...(variant ? { variant } : {}) },
    lookaside: {
      requestTimeoutMs: duration(values['lookaside-timeout'], 'lookasideTimeoutMs', 10_000, '--lookaside-timeout'),
      budgetMs: duration(values['signature-budget'], 'signatureBudgetMs', 30_000, '--signature-budget'),
    },
    registry: { connectTimeoutMs: 10_000, requestTimeoutMs: 30_000, layerConcurrency: count(values['layer-concurrency'], 'layerConcurrency', 4, '--layer-concurrency') },
    shutdownGraceMs: duration(values['shutdown-grace'], 'shutdownGraceMs', 10_000, '--shutdown-grace'),
    metricsAddress: pick(values['metrics-address'], 'metricsAddress'),
    kubeconfig: abs(pick(values.kubeconfig, 'kubeconfig')),
    inCluster: pick(values['in-cluster'], 'inCluster') === true,
    // kubelet registers the node under its lower-cased hostname unless told otherwise.
    nodeName: pick(values['node-name'], 'nodeName') ?? environment.env['NODE_NAME'] ?? environment.hostname.toLowerCase(),
    backend: pick(values.backend, 'backend'),
    mirrorAddress: pick(values['mirror-address'], 'mirrorAddress') ?? '127.0.0.1:5050',
  };
  if (config.backend !== undefined && !/^unix:\/\/\/./.test(config.backend)) problems.push(`--backend ${JSON.stringify(config.backend)} is not unix:///PATH`);
  if (config.kubeconfig !== undefined && config.inCluster) problems.push('--kubeconfig and --in-cluster are mutually exclusive');
  if (config.kubeconfig !== undefined && !environment.exists(config.kubeconfig)) problems.push(`kubeconfig ${config.kubeconfig} does not exist`);
  if (!['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'].includes(config.logLevel)) problems.push(`--log-level ${JSON.stringify(config.logLevel)} is not one of fatal, error, warn, info, debug, trace, silent`);
  if (problems.length > 0) throw new ValidationError('INVALID_CONFIG', 'invalid configuration', problems);
  return deepFreeze(config);
}

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
  for (const [key, value] of Object.entries(parsed)) {
    const type = CONFIG_FILE_KEYS[key];
    if (type === undefined) problems.push(`config file ${path}: unknown key ${JSON.stringify(key)}`);
    else if (type === 'string[]' ? !Array.isArray(value) || value.some((v) => typeof v !== 'string') : typeof value !== type) {
      problems.push(`config file ${path}: ${key} must be ${type === 'string[]' ? 'an array of strings' : `a ${type}`}`);
    }
  }
  return parsed as Record<string, unknown>;
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
