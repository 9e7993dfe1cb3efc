/**
 * `pullguard doctor`'s checks: where, on this node, image verification would be skipped silently or
 * would fail where pullguard allowed. Each finding has a code (README "Running on a node" lists
 * them) and one line that says what was seen, where, what it causes and what to change.
 *
 * containerd (pullguard as its image verifier): the CRI settings that send 2.1+ back to the local
 * pull path, which runs no verifier (containerd `CheckLocalImagePullConfigs`); a disabled verifier or
 * transfer plugin; a bin dir without pullguard's verifier, or with it past `max_verifiers`; a
 * per-verifier timeout shorter than pullguard's signature budget, or not longer than the verifier's
 * own wait; a verifier script aimed at another socket or at files that are gone; a containerd older
 * than 2.1.
 * CRI-O (pullguard as its imageServiceEndpoint): a CRI-O policy.json that checks signatures again,
 * without partial sufficiency, or refuses, where pullguard's policy allows; a CRI-O registries.d
 * that makes it read the signatures of images pullguard verifies over the network again.
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { parse as parseToml } from 'smol-toml';
import type { Digest } from '../domain/digest.js';
import { parseReference, type ImageReference } from '../domain/reference.js';
import { parsePolicy } from '../policy/parse-policy.js';
import { requirementsFor } from '../policy/scope.js';
import type { Policy, PolicyRequirement } from '../policy/types.js';
import type { RegistriesD } from '../config/registries-d.js';
import { CONTAINERD_DEFAULT_VERIFIER_BIN_DIR, CONTAINERD_DEFAULT_VERIFIER_TIMEOUT_MS, readInstalledVerifier } from '../verifier/install.js';
import { CRI_IMAGES_PLUGIN, parseGoDuration, TRANSFER_PLUGIN, VERIFIER_PLUGIN, type ContainerdConfig } from './containerd-config.js';

export type FindingCode = 'PGD001' | 'PGD002' | 'PGD003' | 'PGD004' | 'PGD005' | 'PGD006' | 'PGD007' | 'PGD008' | 'PGD010' | 'PGD011' | 'PGD012';

export interface Finding {
  readonly code: FindingCode;
  readonly message: string;
}

/** What doctor knows of the pullguard daemon's configuration (the same flags and --config as serve). */
export interface PullguardSide {
  readonly signatureBudgetMs: number;
  /** undefined: the verifier endpoint is off. */
  readonly verifierSocket: string | undefined;
  /** pullguard's global policy, to compare CRI-O's with (the embedded default when no file exists). */
  readonly policy: Policy;
  /** pullguard's per-namespace policy directory, if any. */
  readonly policyDir?: string;
}

const isTable = (value: unknown): value is Record<string, unknown> => typeof value === 'object' && value !== null && !Array.isArray(value);
const nonEmptyTable = (value: unknown): boolean => isTable(value) && Object.keys(value).length > 0;

/** The settings of containerd's CRI images config that make 2.1+ pull without the transfer service (so without verifiers). */
export function localPullSettings(images: Readonly<Record<string, unknown>>): { readonly setting: string; readonly remedy: string }[] {
  const registry = isTable(images['registry']) ? images['registry'] : {};
  const out: { setting: string; remedy: string }[] = [];
  if (images['use_local_image_pull'] === true) out.push({ setting: 'use_local_image_pull = true', remedy: 'remove it' });
  if (nonEmptyTable(registry['mirrors'])) out.push({ setting: 'registry.mirrors', remedy: 'move the mirrors to config_path + hosts.toml' });
  if (nonEmptyTable(registry['configs']))
    out.push({ setting: 'registry.configs', remedy: 'move TLS and auth settings to config_path + hosts.toml and image pull secrets' });
  if (nonEmptyTable(registry['auths'])) out.push({ setting: 'registry.auths', remedy: 'use image pull secrets instead' });
  if (images['discard_unpacked_layers'] === true) out.push({ setting: 'discard_unpacked_layers = true', remedy: 'remove it' });
  if (images['max_concurrent_downloads'] !== undefined && images['max_concurrent_downloads'] !== 3) {
    out.push({
      setting: `max_concurrent_downloads = ${String(images['max_concurrent_downloads'])}`,
      remedy: `set it in [plugins."${TRANSFER_PLUGIN}"] instead`,
    });
  }
  if (images['image_pull_with_sync_fs'] === true) out.push({ setting: 'image_pull_with_sync_fs = true', remedy: 'remove it' });
  if (images['disable_snapshot_annotations'] === false)
    out.push({
      setting: 'disable_snapshot_annotations = false',
      remedy: 'remove it (snapshot annotations are set in the snapshotter plugin with the transfer service)',
    });
  return out;
}

export interface ContainerdCheckInput {
  readonly config: ContainerdConfig;
  readonly pullguard: PullguardSide;
  /** `containerd --version` output, when doctor was told the binary. */
  readonly versionOutput?: string;
}

export function checkContainerd({ config, pullguard, versionOutput }: ContainerdCheckInput): Finding[] {
  const findings: Finding[] = [];
  const where = (plugin: string): string => config.pluginSource[plugin] ?? config.files[0] ?? 'config.toml';

  const images = config.plugins[CRI_IMAGES_PLUGIN] ?? {};
  for (const { setting, remedy } of localPullSettings(images)) {
    findings.push({
      code: 'PGD001',
      message: `containerd: ${setting} in the CRI images config (${where(CRI_IMAGES_PLUGIN)}) sends containerd 2.1+ back to its local pull path, which runs no image verifier: kubelet's pulls are not checked by pullguard; ${remedy}`,
    });
  }
  for (const plugin of [VERIFIER_PLUGIN, TRANSFER_PLUGIN]) {
    if (config.disabledPlugins.includes(plugin)) {
      findings.push({
        code: 'PGD002',
        message: `containerd: ${plugin} is in disabled_plugins (${config.files[0]}): no image verifier runs, every pull is allowed; remove it from disabled_plugins`,
      });
    }
  }

  const verifierTable = config.plugins[VERIFIER_PLUGIN] ?? {};
  const binDir = typeof verifierTable['bin_dir'] === 'string' ? verifierTable['bin_dir'] : CONTAINERD_DEFAULT_VERIFIER_BIN_DIR;
  const maxVerifiers = typeof verifierTable['max_verifiers'] === 'number' ? verifierTable['max_verifiers'] : 10;
  const timeoutText = typeof verifierTable['per_verifier_timeout'] === 'string' ? verifierTable['per_verifier_timeout'] : undefined;
  const timeoutMs = timeoutText === undefined ? CONTAINERD_DEFAULT_VERIFIER_TIMEOUT_MS : parseGoDuration(timeoutText);
  const timeoutShown = timeoutText === undefined ? `per_verifier_timeout (unset: containerd's default, 10s)` : `per_verifier_timeout = "${timeoutText}"`;

  let entries: string[] | undefined;
  try {
    // containerd lists the directory sorted by name and runs every entry in that order.
    entries = readdirSync(binDir).sort();
  } catch {
    entries = undefined;
  }
  const ours = (entries ?? []).flatMap((name, index) => {
    const path = join(binDir, name);
    try {
      if (!statSync(path).isFile()) return [];
      const script = readInstalledVerifier(readFileSync(path, 'utf8').slice(0, 64 * 1024));
      return script === undefined ? [] : [{ name, index, path, script }];
    } catch {
      return [];
    }
  });
  if (ours.length === 0) {
    findings.push({
      code: 'PGD003',
      message: `containerd: no pullguard verifier in its image-verifier bin_dir ${binDir} (${entries === undefined ? 'it does not exist' : entries.length === 0 ? 'it is empty' : `it holds ${entries.length} other entr${entries.length === 1 ? 'y' : 'ies'}`}): images pulled without pullguard's CRI socket (kubelet straight at containerd, ctr, nerdctl) are not verified; run \`pullguard verifier install --bin-dir ${binDir}\``,
    });
  }
  for (const { name, index, path, script } of ours) {
    if (maxVerifiers >= 0 && index + 1 > maxVerifiers) {
      findings.push({
        code: 'PGD004',
        message: `containerd: pullguard's verifier ${path} is entry ${index + 1} of ${binDir}, past max_verifiers = ${maxVerifiers}: containerd skips it and allows the pull; raise max_verifiers or give it a name that sorts earlier`,
      });
    }
    if (timeoutMs === undefined) {
      findings.push({
        code: 'PGD005',
        message: `containerd: per_verifier_timeout = ${JSON.stringify(timeoutText)} (${where(VERIFIER_PLUGIN)}) is not a Go duration; containerd does not start with it`,
      });
    } else {
      if (timeoutMs < pullguard.signatureBudgetMs) {
        findings.push({
          code: 'PGD005',
          message: `containerd: ${timeoutShown} (${where(VERIFIER_PLUGIN)}) is shorter than pullguard's signature budget (${pullguard.signatureBudgetMs / 1000} s): a pull whose signatures take longer is blocked before pullguard decides; set per_verifier_timeout to at least the budget plus a registry read (and reinstall the verifier with the same --per-verifier-timeout)`,
        });
      }
      if (script.timeoutMs >= timeoutMs) {
        findings.push({
          code: 'PGD006',
          message: `containerd: pullguard's verifier ${name} waits ${script.timeoutMs / 1000} s, not less than ${timeoutShown}: containerd kills it before it can say why a pull is blocked; reinstall it with \`pullguard verifier install --per-verifier-timeout ${timeoutMs / 1000}s\``,
        });
      }
    }
    if (pullguard.verifierSocket === undefined) {
      findings.push({
        code: 'PGD007',
        message: `containerd: pullguard's verifier ${path} asks ${script.socket}, but this pullguard configuration has --verifier-socket off: every pull is blocked`,
      });
    } else if (script.socket !== pullguard.verifierSocket) {
      findings.push({
        code: 'PGD007',
        message: `containerd: pullguard's verifier ${path} asks ${script.socket}, but pullguard serve (this configuration) answers on ${pullguard.verifierSocket}: every pull is blocked; reinstall it with the server's --config or --state-dir`,
      });
    }
    for (const file of script.runs) {
      if (!existsSync(file))
        findings.push({
          code: 'PGD007',
          message: `containerd: pullguard's verifier ${path} runs ${file}, which does not exist: every pull is blocked; reinstall it`,
        });
    }
  }

  if (versionOutput !== undefined) {
    const version = /\bv?(\d+)\.(\d+)\.(\d+)/.exec(versionOutput);
    if (version === null) {
      findings.push({ code: 'PGD008', message: `containerd: cannot tell its version from ${JSON.stringify(versionOutput.trim().slice(0, 200))}` });
    } else if (Number(version[1]) < 2 || (Number(version[1]) === 2 && Number(version[2]) < 1)) {
      findings.push({
        code: 'PGD008',
        message: `containerd: ${version[0]} ${Number(version[1]) < 2 ? 'has no image verifiers' : 'pulls CRI images without the transfer service, so without image verifiers'}: kubelet's pulls are not checked by pullguard there; use containerd 2.1 or newer, or pullguard as kubelet's imageServiceEndpoint`,
      });
    }
  }
  return findings;
}

/** CRI-O's image settings that matter here: its signature policy and per-namespace policy directory. */
export interface CrioSettings {
  readonly files: readonly string[];
  readonly signaturePolicy: string;
  readonly signaturePolicyDir: string;
}

export const CRIO_DEFAULT_POLICY = '/etc/containers/policy.json';
export const CRIO_DEFAULT_POLICY_DIR = '/etc/crio/policies';

/** crio.conf, then its drop-ins in name order (later ones win), as CRI-O reads them. */
export function loadCrioSettings(files: readonly string[]): CrioSettings {
  let signaturePolicy = '';
  let signaturePolicyDir = CRIO_DEFAULT_POLICY_DIR;
  for (const file of files) {
    let parsed: unknown;
    try {
      parsed = parseToml(readFileSync(file, 'utf8'));
    } catch (err) {
      throw new Error(`${file}: ${(err as Error).message.split('\n')[0]}`);
    }
    const image = isTable(parsed) && isTable(parsed['crio']) && isTable(parsed['crio']['image']) ? parsed['crio']['image'] : {};
    if (typeof image['signature_policy'] === 'string') signaturePolicy = image['signature_policy'];
    if (typeof image['signature_policy_dir'] === 'string') signaturePolicyDir = image['signature_policy_dir'];
  }
  return { files, signaturePolicy: signaturePolicy === '' ? CRIO_DEFAULT_POLICY : signaturePolicy, signaturePolicyDir };
}

const denies = (r: PolicyRequirement): boolean => r.type === 'reject' || r.type === 'signedBaseLayer';
const checksSignatures = (r: PolicyRequirement): boolean => r.type === 'signedBy' || r.type === 'sigstoreSigned';

/** A reference under `scope`: the scope itself for a repository, a made-up repository under a host or namespace. */
function probeFor(scope: string): ImageReference | undefined {
  const text =
    scope === ''
      ? 'pullguard-doctor.invalid/probe/image:latest'
      : scope.startsWith('*.')
        ? `pullguard-doctor.${scope.slice(2)}/probe/image:latest`
        : !scope.includes('/')
          ? `${scope}/probe/image:latest`
          : scope;
  try {
    return parseReference(text);
  } catch {
    return undefined;
  }
}

const PROBE_DIGEST = `sha256:${'0'.repeat(64)}` as Digest;
const MAX_SCOPES_SHOWN = 6;

function scopeList(scopes: readonly string[]): string {
  const shown = scopes.slice(0, MAX_SCOPES_SHOWN).map((s) => (s === 'default' ? 'default' : JSON.stringify(s)));
  return `${shown.join(', ')}${scopes.length > shown.length ? ` and ${scopes.length - shown.length} more` : ''}`;
}

/**
 * pullguard hands CRI-O `name@<verified digest>`; CRI-O then applies its own policy. Where
 * pullguard's policy may allow an image and CRI-O's requires signatures, CRI-O reads them again with
 * no partial sufficiency (an image pullguard allowed with PGW001 fails there, `…starting with binary
 * 0x3c`); where CRI-O's rejects, every such image fails.
 */
export function compareCrioPolicy(crio: Policy, pullguard: Policy): Finding[] {
  const scopes = new Set<string>(['']);
  for (const policy of [crio, pullguard]) for (const scope of policy.transports.get('docker')?.keys() ?? []) scopes.add(scope);
  const reverifies = new Set<string>();
  const refuses = new Set<string>();
  for (const scope of scopes) {
    const probe = probeFor(scope);
    if (probe === undefined) continue;
    const ours = requirementsFor(pullguard, probe);
    if (ours.requirements.some(denies)) continue;
    // CRI-O sees the digest pullguard pinned, never the tag: tag scopes of its policy do not apply.
    const theirs = requirementsFor(crio, { domain: probe.domain, path: probe.path, name: probe.name, digest: PROBE_DIGEST });
    if (theirs.requirements.some(denies)) refuses.add(theirs.scope.scope);
    else if (theirs.requirements.some(checksSignatures)) reverifies.add(theirs.scope.scope);
  }
  const findings: Finding[] = [];
  if (reverifies.size > 0) {
    findings.push({
      code: 'PGD010',
      message: `CRI-O: its policy ${crio.source} requires signatures for ${scopeList([...reverifies])}, where pullguard's ${pullguard.source} may allow images: CRI-O checks them again for every pull pullguard hands it, without partial sufficiency, so an image pullguard allowed with a warning (a broken signature-N) fails there; for those scopes make CRI-O's policy insecureAcceptAnything (pullguard decided before CRI-O is asked), knowing that pulls made straight at CRI-O then go unchecked`,
    });
  }
  if (refuses.size > 0) {
    findings.push({
      code: 'PGD011',
      message: `CRI-O: its policy ${crio.source} rejects ${scopeList([...refuses])}, where pullguard's ${pullguard.source} may allow images: every such pull pullguard allows fails in CRI-O`,
    });
  }
  return findings;
}

export function checkCrio(settings: CrioSettings, pullguard: PullguardSide): Finding[] {
  const findings: Finding[] = [];
  const policies: { file: string; against: Policy }[] = [];
  if (existsSync(settings.signaturePolicy)) policies.push({ file: settings.signaturePolicy, against: pullguard.policy });
  let perNamespace: string[] = [];
  try {
    perNamespace = readdirSync(settings.signaturePolicyDir)
      .filter((f) => f.endsWith('.json'))
      .sort();
  } catch {
    perNamespace = [];
  }
  for (const file of perNamespace) {
    // The namespace's own pullguard policy when there is one, as pullguard would choose it.
    const ours = pullguard.policyDir !== undefined && existsSync(join(pullguard.policyDir, file)) ? tryParse(join(pullguard.policyDir, file)) : undefined;
    policies.push({ file: join(settings.signaturePolicyDir, file), against: ours instanceof Error || ours === undefined ? pullguard.policy : ours });
  }
  for (const { file, against } of policies) {
    const crio = tryParse(file);
    if (crio instanceof Error) {
      findings.push({ code: 'PGD011', message: `CRI-O: its policy ${file} does not parse (${crio.message.slice(0, 300)}): CRI-O fails every pull with it` });
      continue;
    }
    findings.push(...compareCrioPolicy(crio, against));
  }
  return findings;
}

/**
 * containers/image copies every signature it can read into CRI-O's storage on each pull, whatever
 * the policy says, and fails the pull on one it cannot read (a CDN's HTML page: `…starting with
 * binary 0x3c`). So for the scopes pullguard verifies, CRI-O's registries.d must give no network
 * lookaside and no sigstore attachments, or CRI-O fails exactly as it would without pullguard. A
 * `file://` lookaside reads nothing over the network (a missing file ends the list, as an empty
 * directory does): deploy/crio/registries.d points those scopes at an empty one.
 */
export function checkCrioSignatureReads(crio: RegistriesD, crioRegistriesDir: string, pullguard: Policy): Finding[] {
  const scopes = new Set<string>(['']);
  for (const scope of pullguard.transports.get('docker')?.keys() ?? []) scopes.add(scope);
  const lookaside = new Map<string, string>();
  const attachments = new Set<string>();
  for (const scope of scopes) {
    const probe = probeFor(scope);
    if (probe === undefined) continue;
    const ours = requirementsFor(pullguard, probe);
    if (ours.requirements.some(denies) || !ours.requirements.some(checksSignatures)) continue;
    const where = crio.lookasideFor(probe);
    if (where !== undefined && /^https?:\/\//i.test(where.baseUrl)) lookaside.set(ours.scope.scope, `${where.baseUrl} (${where.file ?? where.scope})`);
    if (crio.useSigstoreAttachmentsFor(probe)) attachments.add(ours.scope.scope);
  }
  const findings: Finding[] = [];
  if (lookaside.size > 0) {
    const shown = [...lookaside].slice(0, MAX_SCOPES_SHOWN).map(([scope, url]) => `${scope === 'default' ? 'default' : JSON.stringify(scope)} → ${url}`);
    findings.push({
      code: 'PGD012',
      message: `CRI-O: its registries.d (${crioRegistriesDir}) gives a network lookaside for images pullguard verifies: ${shown.join(', ')}${lookaside.size > shown.length ? ` and ${lookaside.size - shown.length} more` : ''}; CRI-O reads every signature again on each pull pullguard hands it and fails on one it cannot read (…starting with binary 0x3c), as without pullguard; move pullguard's lookaside files to its own --registries-d and give CRI-O a file:// lookaside for those scopes (deploy/crio/registries.d)`,
    });
  }
  if (attachments.size > 0) {
    findings.push({
      code: 'PGD012',
      message: `CRI-O: its registries.d (${crioRegistriesDir}) turns on use-sigstore-attachments for images pullguard verifies (${scopeList([...attachments])}): CRI-O reads the attachments again on each pull and fails on one it cannot read; turn it off there (pullguard's own --registries-d keeps it)`,
    });
  }
  return findings;
}

function tryParse(file: string): Policy | Error {
  try {
    return parsePolicy(readFileSync(file, 'utf8'), { source: file });
  } catch (err) {
    return err instanceof Error ? err : new Error(String(err));
  }
}
