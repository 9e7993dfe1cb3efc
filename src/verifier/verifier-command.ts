/**
 * `pullguard verifier install`: puts pullguard's image verifier into containerd 2.x's image-verifier
 * bin dir, pointed at the verifier socket `pullguard serve` uses under the same configuration.
 */
import { isAbsolute, resolve } from 'node:path';
import { parseCommandLine, reportErrors } from '../config/command-line.js';
import { parseDuration, resolveDaemonConfig, type Environment } from '../config/daemon-config.js';
import { formatSettingsHelp, parseOptionsFor, SERVE_SETTINGS, type ParseArgsOptions } from '../config/flag-table.js';
import { PullguardError } from '../domain/errors.js';
import {
  CONTAINERD_DEFAULT_VERIFIER_BIN_DIR,
  CONTAINERD_DEFAULT_VERIFIER_TIMEOUT_MS,
  findPerl,
  installVerifier,
  VERIFIER_TIMEOUT_MARGIN_MS,
  verifierClientPath,
  type InstalledVerifier,
} from './install.js';

export interface VerifierCommandIo {
  readonly stdout: NodeJS.WritableStream;
  readonly stderr: NodeJS.WritableStream;
  readonly environment: Environment;
  /** The node binary a node client runs (default: this one). */
  readonly nodePath?: string;
  /** The perl a perl client runs (default: the first on PATH); null: as if none were installed. */
  readonly perlPath?: string | null;
}

const SETTINGS = ['config', 'state-dir', 'verifier-socket'];

export const VERIFIER_HELP = `Usage: pullguard verifier install [--bin-dir DIR] [--name NAME] [--per-verifier-timeout DUR] [--client perl|node] [--config FILE] [--state-dir DIR] [--verifier-socket PATH]

Installs pullguard as an image verifier of containerd 2.1+ (plugin io.containerd.image-verifier.v1.bindir):
writes the executable DIR/NAME, which asks \`pullguard serve\` (the same --config, --state-dir or
--verifier-socket) for the verdict on every image containerd pulls, and blocks the pull unless
pullguard allows it or when no daemon answers. It waits for a verdict 1 s less than containerd's
per-verifier timeout, so its reason reaches containerd.
${formatSettingsHelp(
  SERVE_SETTINGS.filter((s) => SETTINGS.includes(s.flag)),
  [
    ['--bin-dir DIR', `containerd's bin_dir (default: ${CONTAINERD_DEFAULT_VERIFIER_BIN_DIR}, containerd's default)`],
    ['--name NAME', 'the file name, which containerd names in its messages (default: pullguard)'],
    ['--per-verifier-timeout DUR', "containerd's per_verifier_timeout (default: 10s, containerd's default)"],
    [
      '--client perl|node',
      "what the executable is: a perl script (default where perl is installed; starts in ~3 ms) or node running pullguard's client (~100 ms more on every pull)",
    ],
    ['-h, --help', 'this help'],
    ['...', 'every other `pullguard serve` flag is accepted too, so its command line can be reused'],
  ],
)}`;

export async function runVerifierCommand(argv: readonly string[], io: VerifierCommandIo): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub === undefined || sub === '--help' || sub === '-h' || sub === 'help') {
    (sub === undefined ? io.stderr : io.stdout).write(`${VERIFIER_HELP}\n`);
    return sub === undefined ? 2 : 0;
  }
  if (sub !== 'install') {
    io.stderr.write(`pullguard verifier: unknown subcommand ${JSON.stringify(sub)}\n\n${VERIFIER_HELP}\n`);
    return 2;
  }
  return reportErrors('verifier', VERIFIER_HELP, io, async () => {
    const options: ParseArgsOptions = {
      ...parseOptionsFor(),
      'bin-dir': { type: 'string' },
      name: { type: 'string' },
      'per-verifier-timeout': { type: 'string' },
      client: { type: 'string' },
    };
    const { values } = parseCommandLine({ args: [...rest], options });
    if (values['help'] === true) {
      io.stdout.write(`${VERIFIER_HELP}\n`);
      return 0;
    }
    const config = resolveDaemonConfig(values, io.environment);
    if (config.verifierSocket === undefined)
      throw new PullguardError(
        'INVALID_CONFIG',
        'the verifier socket is off in this configuration (--verifier-socket off): pullguard serve would answer no verifier',
      );
    const timeoutText = typeof values['per-verifier-timeout'] === 'string' ? values['per-verifier-timeout'] : undefined;
    const containerdTimeoutMs = timeoutText === undefined ? CONTAINERD_DEFAULT_VERIFIER_TIMEOUT_MS : parseDuration(timeoutText);
    if (containerdTimeoutMs === undefined || containerdTimeoutMs <= VERIFIER_TIMEOUT_MARGIN_MS) {
      throw new PullguardError('INVALID_ARGUMENT', `--per-verifier-timeout ${JSON.stringify(timeoutText)} is not a duration above 1s (e.g. 45s)`);
    }
    const binDir = resolvePath(io.environment.cwd, typeof values['bin-dir'] === 'string' ? values['bin-dir'] : CONTAINERD_DEFAULT_VERIFIER_BIN_DIR);
    const name = typeof values['name'] === 'string' ? values['name'] : 'pullguard';
    const wanted = values['client'];
    if (wanted !== undefined && wanted !== 'perl' && wanted !== 'node')
      throw new PullguardError('INVALID_ARGUMENT', `--client ${JSON.stringify(wanted)}: perl or node`);
    const perl = io.perlPath === null ? undefined : (io.perlPath ?? (await findPerl(io.environment.env['PATH'])));
    if (wanted === 'perl' && perl === undefined) throw new PullguardError('INVALID_ARGUMENT', '--client perl: no perl on PATH');
    const timeoutMs = containerdTimeoutMs - VERIFIER_TIMEOUT_MARGIN_MS;
    const verifier: InstalledVerifier =
      wanted !== 'node' && perl !== undefined
        ? { client: 'perl', socket: config.verifierSocket, timeoutMs, runs: [perl] }
        : { client: 'node', socket: config.verifierSocket, timeoutMs, runs: [io.nodePath ?? process.execPath, verifierClientPath()] };
    const path = await installVerifier({ binDir, name, verifier });
    const budgetSeconds = Math.ceil(config.lookaside.budgetMs / 1000);
    io.stdout.write(
      [
        `installed ${path} (${verifier.client === 'perl' ? `perl, ${verifier.runs[0]}` : 'node: no perl on PATH; a pull takes ~100 ms longer than with perl'}): asks pullguard on ${verifier.socket}, waits ${verifier.timeoutMs / 1000} s for a verdict`,
        'containerd 2.1+ runs it with (config version 3, then restart containerd):',
        '  [plugins."io.containerd.image-verifier.v1.bindir"]',
        `    bin_dir = "${binDir}"`,
        `    per_verifier_timeout = "${containerdTimeoutMs / 1000}s"`,
        ...(containerdTimeoutMs < config.lookaside.budgetMs
          ? [
              `note: that is shorter than pullguard's signature budget (${budgetSeconds} s): give both a longer --per-verifier-timeout here and per_verifier_timeout there`,
            ]
          : []),
        'then check the node with `pullguard doctor`.',
        '',
      ].join('\n'),
    );
    return 0;
  });
}

function resolvePath(cwd: string, path: string): string {
  return isAbsolute(path) ? path : resolve(cwd, path);
}
