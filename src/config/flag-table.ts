/**
 * The one list of `pullguard serve` settings: flag, config-file key, default and meaning. The flag
 * parser, the config-file key check and `serve --help` are built from it, and
 * test/unit/config/flag-table.test.ts checks README "Configuration" against it row by row, so the
 * documentation, the help and the parser cannot drift apart.
 */

export type ConfigKeyType = 'string' | 'string[]' | 'number' | 'boolean';

export interface ServeSetting {
  /** The flag without its dashes, as node:util parseArgs knows it. */
  readonly flag: string;
  /** What follows the flag in usage (`DIR`); absent for a switch. */
  readonly value?: string;
  /** The flag may be given more than once. */
  readonly multiple?: boolean;
  /** The config-file key (camelCase) and its JSON type; absent for `--config` itself. */
  readonly key?: string;
  readonly keyType?: ConfigKeyType;
  /** Markdown, exactly as in the README table. */
  readonly default: string;
  /** Markdown, exactly as in the README table: one line. */
  readonly meaning: string;
}

export const SERVE_SETTINGS: readonly ServeSetting[] = [
  { flag: 'config', value: 'FILE', default: 'none', meaning: 'a JSON file of the serve settings, by config key; flags win over it' },
  {
    flag: 'state-dir',
    value: 'DIR',
    key: 'stateDir',
    keyType: 'string',
    default: '`$PULLGUARD_STATE_DIR` or `./.pullguard`',
    meaning: 'store and socket live here',
  },
  {
    flag: 'socket',
    value: 'PATH',
    key: 'socket',
    keyType: 'string',
    default: '`$PULLGUARD_SOCKET` or `<state-dir>/pullguard.sock`',
    meaning: 'the CRI socket, mode 0660',
  },
  {
    flag: 'signature-policy',
    value: 'FILE',
    key: 'signaturePolicy',
    keyType: 'string',
    default: '`/etc/containers/policy.json` if it exists',
    meaning: 'containers-policy.json(5)',
  },
  {
    flag: 'signature-policy-dir',
    value: 'DIR',
    key: 'signaturePolicyDir',
    keyType: 'string',
    default: 'none',
    meaning: 'per-namespace policies `<dir>/<namespace>.json`, as CRI-O',
  },
  {
    flag: 'require-signature-verification',
    key: 'requireSignatureVerification',
    keyType: 'boolean',
    default: 'off',
    meaning: 'deny an image the policy would accept without verifying any signature (e.g. `insecureAcceptAnything`)',
  },
  {
    flag: 'registries-d',
    value: 'DIR',
    key: 'registriesD',
    keyType: 'string',
    default: '`/etc/containers/registries.d` if it exists',
    meaning: 'lookaside configuration',
  },
  {
    flag: 'registries-conf',
    value: 'FILE',
    key: 'registriesConf',
    keyType: 'string',
    default: '`/etc/containers/registries.conf` if it exists',
    meaning: 'mirrors, insecure registries',
  },
  {
    flag: 'insecure-registry',
    value: 'HOST[:PORT]',
    multiple: true,
    key: 'insecureRegistries',
    keyType: 'string[]',
    default: 'none',
    meaning: 'plain HTTP for that registry; repeatable',
  },
  { flag: 'auth-file', value: 'FILE', key: 'authFile', keyType: 'string', default: 'none', meaning: 'docker-style `auth.json` / `config.json`' },
  {
    flag: 'certs-dir',
    value: 'DIR',
    key: 'certsDir',
    keyType: 'string',
    default: '`/etc/containers/certs.d` if it exists',
    meaning: 'extra CAs per registry: `<dir>/<host[:port]>/*.crt`',
  },
  {
    flag: 'backend',
    value: 'unix:///PATH',
    key: 'backend',
    keyType: 'string',
    default: 'none',
    meaning: 'run in front of a container runtime, see *Running on a node*',
  },
  {
    flag: 'runtime-fetch',
    value: 'MODE',
    key: 'runtimeFetch',
    keyType: 'string',
    default: '`runtime`',
    meaning:
      'backend mode: who fetches the layers, `runtime` (the runtime itself, pinned to the verified digest) or `mirror` (pullguard, serving them from its loopback mirror)',
  },
  {
    flag: 'mirror-address',
    value: 'HOST:PORT',
    key: 'mirrorAddress',
    keyType: 'string',
    default: '`127.0.0.1:5050`',
    meaning: 'backend mode with `--runtime-fetch mirror`: the loopback mirror the runtime fetches verified blobs from',
  },
  {
    flag: 'verifier-socket',
    value: 'PATH',
    key: 'verifierSocket',
    keyType: 'string',
    default: '`<state-dir>/verifier.sock`',
    meaning: "where containerd 2.x's image verifier (`pullguard verifier install`) asks for verdicts, mode 0600; `off` for none, see *Running on a node*",
  },
  { flag: 'kubeconfig', value: 'FILE', key: 'kubeconfig', keyType: 'string', default: 'none', meaning: 'post pod Events for warnings, with this kubeconfig' },
  { flag: 'in-cluster', key: 'inCluster', keyType: 'boolean', default: 'off', meaning: 'post pod Events for warnings, with the in-cluster service account' },
  { flag: 'node-name', value: 'NAME', key: 'nodeName', keyType: 'string', default: '`$NODE_NAME` or the host name', meaning: '`source.host` of those Events' },
  { flag: 'metrics-address', value: 'HOST:PORT', key: 'metricsAddress', keyType: 'string', default: 'off', meaning: 'Prometheus text endpoint, loopback only' },
  {
    flag: 'platform',
    value: 'OS/ARCH[/VARIANT]',
    key: 'platform',
    keyType: 'string',
    default: '`linux/<host arch>`',
    meaning: 'which instance of a multi-platform image',
  },
  { flag: 'lookaside-timeout', value: 'DUR', key: 'lookasideTimeoutMs', keyType: 'number', default: '`10s`', meaning: 'per signature request' },
  { flag: 'signature-budget', value: 'DUR', key: 'signatureBudgetMs', keyType: 'number', default: '`30s`', meaning: 'whole signature phase of one pull' },
  {
    flag: 'verdict-cache-ttl',
    value: 'DUR',
    key: 'verdictCacheTtlMs',
    keyType: 'number',
    default: '`10m`',
    meaning:
      "a re-pull of a verified digest under the same policy revision is answered without fetching signatures again (the registry is still asked with the pull's credentials); denials at most `--signature-budget`; `0` turns it off",
  },
  {
    flag: 'registry-read-timeout',
    value: 'DUR',
    key: 'registryReadTimeoutMs',
    keyType: 'number',
    default: '`30s`',
    meaning: "a whole registry read (manifest, token, ping; retries included), and a blob's allowance before the minimum rate applies",
  },
  {
    flag: 'min-blob-rate',
    value: 'KIB/S',
    key: 'minBlobRateKiBps',
    keyType: 'number',
    default: '`64`',
    meaning: 'a blob slower than this on average, after the allowance, fails `RegistryUnavailable`',
  },
  { flag: 'layer-concurrency', value: 'N', key: 'layerConcurrency', keyType: 'number', default: '`4`', meaning: 'layers fetched at once per pull' },
  {
    flag: 'shutdown-grace',
    value: 'DUR',
    key: 'shutdownGraceMs',
    keyType: 'number',
    default: '`10s`',
    meaning: 'SIGTERM: time in-flight pulls get before they are cancelled',
  },
  { flag: 'log-level', value: 'LEVEL', key: 'logLevel', keyType: 'string', default: '`info`', meaning: 'pino level; logs are JSON lines on stderr' },
];

/** `--state-dir DIR` */
export function flagUsage(setting: ServeSetting): string {
  return `--${setting.flag}${setting.value !== undefined ? ` ${setting.value}` : ''}`;
}

/** The README table's cells for one setting (flag, config key, default, meaning), in Markdown. */
export function readmeCells(setting: ServeSetting): readonly [string, string, string, string] {
  return [`\`${flagUsage(setting)}\``, setting.key !== undefined ? `\`${setting.key}\`` : '—', setting.default, setting.meaning];
}

/** The config-file keys and their JSON types. */
export function configFileKeys(): ReadonlyMap<string, ConfigKeyType> {
  return new Map(SERVE_SETTINGS.flatMap((s) => (s.key !== undefined && s.keyType !== undefined ? [[s.key, s.keyType] as const] : [])));
}

export type ParseArgsOptions = Record<string, { type: 'string' | 'boolean'; multiple?: boolean; short?: string }>;

/** node:util parseArgs options for the settings named (all of them by default), plus --help. */
export function parseOptionsFor(flags: readonly string[] = SERVE_SETTINGS.map((s) => s.flag)): ParseArgsOptions {
  const options: ParseArgsOptions = {};
  for (const flag of flags) {
    const setting = SERVE_SETTINGS.find((s) => s.flag === flag);
    if (setting === undefined) throw new Error(`no serve setting --${flag}`);
    options[flag] = { type: setting.value !== undefined ? 'string' : 'boolean', ...(setting.multiple === true ? { multiple: true } : {}) };
  }
  options['help'] = { type: 'boolean', short: 'h' };
  return options;
}

const plain = (markdown: string): string => markdown.replace(/`/g, '').replace(/\*([^*]+)\*/g, '$1');

/**
 * One line per flag: usage, meaning, default (`serve --help`; fsck and verify for the settings they
 * share with serve). `extra` are a command's own flags, as [usage, meaning], aligned with the rest.
 */
export function formatSettingsHelp(settings: readonly ServeSetting[] = SERVE_SETTINGS, extra: readonly (readonly [string, string])[] = []): string {
  const rows = [
    ...settings.map((s) => [flagUsage(s), `${plain(s.meaning)} (default: ${plain(s.default)}${s.key !== undefined ? `; config key ${s.key}` : ''})`] as const),
    ...extra,
  ];
  const width = Math.max(...rows.map(([usage]) => usage.length)) + 2;
  return rows.map(([usage, text]) => `  ${usage.padEnd(width)}${text}`).join('\n');
}
