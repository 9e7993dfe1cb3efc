/**
 * `pullguard doctor`: reads the runtime configuration this node has (containerd's config.toml and
 * its imports, CRI-O's crio.conf and drop-ins and the policies they name) next to pullguard's own
 * (the same flags and --config as serve) and warns where verification would be skipped silently or
 * fail where pullguard allowed (node-checks.ts). Exit 0: nothing found; 1: warnings; 2: usage.
 */
import { execFileSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { isAbsolute, join, resolve } from 'node:path';
import { parseCommandLine, reportErrors } from '../config/command-line.js';
import { resolveDaemonConfig, type Environment } from '../config/daemon-config.js';
import { formatSettingsHelp, parseOptionsFor, SERVE_SETTINGS, type ParseArgsOptions } from '../config/flag-table.js';
import { embeddedDefaultPolicy } from '../config/policy-loader.js';
import { ValidationError } from '../domain/errors.js';
import { parsePolicy } from '../policy/parse-policy.js';
import { loadContainerdConfig } from './containerd-config.js';
import { loadRegistriesD } from '../config/registries-d.js';
import { checkContainerd, checkCrio, checkCrioSignatureReads, loadCrioSettings, type Finding, type PullguardSide } from './node-checks.js';

export interface DoctorIo {
  readonly stdout: NodeJS.WritableStream;
  readonly stderr: NodeJS.WritableStream;
  readonly environment: Environment;
}

export const CONTAINERD_CONFIG = '/etc/containerd/config.toml';
export const CRIO_CONFIG = '/etc/crio/crio.conf';
export const CRIO_CONFIG_DIR = '/etc/crio/crio.conf.d';
/** CRI-O reads containers/image's registries.d (root: this one; it has no setting for another). */
export const CRIO_REGISTRIES_D = '/etc/containers/registries.d';

const SETTINGS = ['config', 'state-dir', 'verifier-socket', 'signature-policy', 'signature-policy-dir', 'signature-budget'];

export const DOCTOR_HELP = `Usage: pullguard doctor [--containerd-config FILE] [--containerd-bin PATH] [--crio-config FILE] [--crio-config-dir DIR] [--crio-registries-d DIR] [--ignore CODE]... [serve flags]

Reads the container runtime's configuration and pullguard's own (the same flags and --config as
\`pullguard serve\`) and warns where image verification would be skipped silently or would fail where
pullguard allowed: containerd settings that run no image verifier, a missing or misconfigured
pullguard verifier, verifier timeouts shorter than pullguard's signature budget, a CRI-O policy that
checks signatures again without partial sufficiency. Exit 0: nothing found; 1: warnings.
${formatSettingsHelp(
  SERVE_SETTINGS.filter((s) => SETTINGS.includes(s.flag)),
  [
    ['--containerd-config FILE', `containerd's config.toml, imports followed (default: ${CONTAINERD_CONFIG} if it exists)`],
    ['--containerd-bin PATH', 'run PATH --version to check containerd is 2.1 or newer (default: not run)'],
    ['--crio-config FILE', `CRI-O's crio.conf (default: ${CRIO_CONFIG} if it exists)`],
    ['--crio-config-dir DIR', `CRI-O's drop-ins, read after crio.conf in name order (default: ${CRIO_CONFIG_DIR} if it exists)`],
    ['--crio-registries-d DIR', `the registries.d CRI-O reads (default: ${CRIO_REGISTRIES_D}; CRI-O has no setting for it)`],
    ['--ignore CODE', 'do not report this finding (e.g. PGD003); repeatable'],
    ['-h, --help', 'this help'],
    ['...', 'every other `pullguard serve` flag is accepted too, so its command line can be reused'],
  ],
)}`;

export async function runDoctor(argv: readonly string[], io: DoctorIo): Promise<number> {
  const env = io.environment;
  return reportErrors('doctor', DOCTOR_HELP, io, async () => {
    const options: ParseArgsOptions = {
      ...parseOptionsFor(),
      'containerd-config': { type: 'string' },
      'containerd-bin': { type: 'string' },
      'crio-config': { type: 'string' },
      'crio-config-dir': { type: 'string' },
      'crio-registries-d': { type: 'string' },
      ignore: { type: 'string', multiple: true },
    };
    const { values } = parseCommandLine({ args: [...argv], options });
    if (values['help'] === true) {
      io.stdout.write(`${DOCTOR_HELP}\n`);
      return 0;
    }
    const abs = (p: string): string => (isAbsolute(p) ? p : resolve(env.cwd, p));
    /** A path the operator named must exist; a default that does not is simply not there. */
    const named = (flag: string, fallback: string): string | undefined => {
      const given = values[flag];
      if (typeof given === 'string') {
        if (!env.exists(abs(given))) throw new ValidationError('INVALID_ARGUMENT', `--${flag} ${abs(given)} does not exist`, []);
        return abs(given);
      }
      return env.exists(fallback) ? fallback : undefined;
    };
    const containerdConfig = named('containerd-config', CONTAINERD_CONFIG);
    const crioConfig = named('crio-config', CRIO_CONFIG);
    const crioConfigDir = named('crio-config-dir', CRIO_CONFIG_DIR);
    const containerdBin = typeof values['containerd-bin'] === 'string' ? values['containerd-bin'] : undefined;
    const ignored = new Set((Array.isArray(values['ignore']) ? values['ignore'] : []).map((c) => String(c).toUpperCase()));

    const config = resolveDaemonConfig(values, env);
    const pullguard: PullguardSide = {
      signatureBudgetMs: config.lookaside.budgetMs,
      verifierSocket: config.verifierSocket,
      policy:
        config.signaturePolicy !== undefined
          ? parsePolicy(env.readFile(config.signaturePolicy), { source: config.signaturePolicy })
          : embeddedDefaultPolicy().policy,
      ...(config.signaturePolicyDir !== undefined ? { policyDir: config.signaturePolicyDir } : {}),
    };

    const lines: string[] = [];
    const findings: Finding[] = [];
    if (containerdConfig !== undefined) {
      const loaded = loadContainerdConfig(containerdConfig, env.readFile);
      lines.push(`containerd: ${loaded.files.join(', ')} (config version ${loaded.version})`);
      let versionOutput: string | undefined;
      if (containerdBin !== undefined) {
        try {
          versionOutput = execFileSync(containerdBin, ['--version'], { encoding: 'utf8', timeout: 10_000, stdio: ['ignore', 'pipe', 'pipe'] });
          lines.push(`containerd: ${versionOutput.trim()}`);
        } catch (err) {
          versionOutput = `(${containerdBin} --version failed: ${(err as Error).message.split('\n')[0]})`;
        }
      }
      findings.push(...checkContainerd({ config: loaded, pullguard, ...(versionOutput !== undefined ? { versionOutput } : {}) }));
    } else {
      lines.push(`containerd: no config.toml (${CONTAINERD_CONFIG} does not exist; name one with --containerd-config)`);
    }
    if (crioConfig !== undefined || crioConfigDir !== undefined) {
      const dropIns = crioConfigDir !== undefined ? dropInFiles(crioConfigDir) : [];
      const settings = loadCrioSettings([...(crioConfig !== undefined ? [crioConfig] : []), ...dropIns]);
      lines.push(
        `CRI-O: ${settings.files.join(', ') || '(no files)'}; signature policy ${settings.signaturePolicy}, per-namespace policies in ${settings.signaturePolicyDir}`,
      );
      findings.push(...checkCrio(settings, pullguard));
      const crioRegistriesD = named('crio-registries-d', CRIO_REGISTRIES_D);
      if (crioRegistriesD !== undefined) {
        lines.push(`CRI-O: registries.d ${crioRegistriesD}`);
        findings.push(...checkCrioSignatureReads(await loadRegistriesD(crioRegistriesD), crioRegistriesD, pullguard.policy));
      }
    } else {
      lines.push(`CRI-O: no crio.conf (${CRIO_CONFIG} does not exist; name one with --crio-config)`);
    }
    lines.push(
      `pullguard: signature policy ${pullguard.policy.source}, signature budget ${pullguard.signatureBudgetMs / 1000} s, verifier socket ${pullguard.verifierSocket ?? 'off'}`,
    );

    const reported = findings.filter((f) => !ignored.has(f.code));
    for (const finding of reported) lines.push(`warning ${finding.code}: ${finding.message}`);
    const skipped = findings.length - reported.length;
    lines.push(
      reported.length === 0
        ? `no problems found${skipped > 0 ? ` (${skipped} ignored)` : ''}`
        : `${reported.length} warning${reported.length === 1 ? '' : 's'}${skipped > 0 ? ` (${skipped} ignored)` : ''}`,
    );
    io.stdout.write(`${lines.join('\n')}\n`);
    return reported.length === 0 ? 0 : 1;
  });
}

function dropInFiles(dir: string): string[] {
  try {
    return readdirSync(dir)
      .filter((f) => f.endsWith('.conf'))
      .sort()
      .map((f) => join(dir, f));
  } catch {
    return [];
  }
}
