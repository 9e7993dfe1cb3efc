/**
 * `pullguard doctor` on sample node configurations: containerd config.toml files of every config
 * version (with imports), image-verifier bin dirs, CRI-O crio.conf with drop-ins and policies. Each
 * finding is checked to appear for the setting that causes it and not for the same config without it.
 */
import { existsSync, readFileSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Environment } from '../../../src/config/daemon-config.js';
import { loadContainerdConfig, parseGoDuration } from '../../../src/doctor/containerd-config.js';
import { runDoctor } from '../../../src/doctor/doctor-command.js';
import { parseRegistriesD } from '../../../src/config/registries-d.js';
import { checkContainerd, checkCrio, checkCrioSignatureReads, loadCrioSettings, type Finding, type PullguardSide } from '../../../src/doctor/node-checks.js';
import { parsePolicy } from '../../../src/policy/parse-policy.js';
import { verifierScript } from '../../../src/verifier/install.js';

let dir: string;
let binDir: string;
let socket: string;
let client: string;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'pullguard-doctor-'));
  binDir = join(dir, 'verifiers');
  socket = join(dir, 'state', 'verifier.sock');
  client = join(dir, 'verifier-main.js');
  await writeFile(client, '');
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

const ACCEPT = '{"default":[{"type":"insecureAcceptAnything"}]}';
const pullguardSide = (overrides: Partial<PullguardSide> = {}): PullguardSide => ({
  signatureBudgetMs: 30_000,
  verifierSocket: socket,
  policy: parsePolicy(ACCEPT, { source: '/etc/containers/policy.json' }),
  ...overrides,
});

async function installScript(name = 'pullguard', overrides: Partial<{ socket: string; timeoutMs: number }> = {}): Promise<void> {
  await mkdir(binDir, { recursive: true });
  await writeFile(join(binDir, name), verifierScript({ client: 'node', socket, timeoutMs: 44_000, runs: [process.execPath, client], ...overrides }));
  await chmod(join(binDir, name), 0o755);
}

/** A containerd 2.x config (version 3) whose verifier plugin points at binDir, plus `extra`. */
function v3(extra = '', verifier = 'per_verifier_timeout = "45s"'): string {
  return [
    'version = 3',
    "[plugins.'io.containerd.cri.v1.images']",
    '  snapshotter = "overlayfs"',
    "[plugins.'io.containerd.cri.v1.images'.registry]",
    '  config_path = "/etc/containerd/certs.d"',
    "[plugins.'io.containerd.image-verifier.v1.bindir']",
    `  bin_dir = "${binDir}"`,
    `  ${verifier}`,
    extra,
    '',
  ].join('\n');
}

async function containerdFindings(
  text: string,
  options: { side?: Partial<PullguardSide>; version?: string; files?: Record<string, string> } = {},
): Promise<Finding[]> {
  const path = join(dir, 'config.toml');
  await writeFile(path, text);
  for (const [name, content] of Object.entries(options.files ?? {})) {
    await mkdir(join(dir, name, '..'), { recursive: true });
    await writeFile(join(dir, name), content);
  }
  return checkContainerd({
    config: loadContainerdConfig(path),
    pullguard: pullguardSide(options.side),
    ...(options.version !== undefined ? { versionOutput: options.version } : {}),
  });
}
const codes = (findings: readonly Finding[]): string[] => findings.map((f) => f.code);

describe('pullguard doctor: containerd', () => {
  it("finds nothing on a node where pullguard's verifier runs, with a timeout above the signature budget", async () => {
    await installScript();
    expect(await containerdFindings(v3(), { version: 'containerd github.com/containerd/containerd/v2 v2.4.2 abcdef\n' })).toEqual([]);
  });

  it.each([
    [
      "[plugins.'io.containerd.cri.v1.images'.registry.mirrors.'docker.io']\n  endpoint = ['https://mirror.example']",
      'registry.mirrors',
      'config_path + hosts.toml',
    ],
    ["[plugins.'io.containerd.cri.v1.images'.registry.configs.'registry.example'.auth]\n  username = 'u'", 'registry.configs', 'hosts.toml'],
    ["[plugins.'io.containerd.cri.v1.images'.registry.auths.'https://registry.example']\n  username = 'u'", 'registry.auths', 'image pull secrets'],
  ])('warns PGD001 for CRI registry settings that send 2.1+ back to the local pull path: %s', async (extra, setting, remedy) => {
    await installScript();
    const [finding, ...rest] = await containerdFindings(v3(extra));
    expect(rest).toEqual([]);
    expect(finding?.code).toBe('PGD001');
    expect(finding?.message).toContain(
      `containerd: ${setting} in the CRI images config (${join(dir, 'config.toml')}) sends containerd 2.1+ back to its local pull path, which runs no image verifier`,
    );
    expect(finding?.message).toContain(remedy);
  });

  it.each([
    ['use_local_image_pull = true', 'use_local_image_pull = true'],
    ['discard_unpacked_layers = true', 'discard_unpacked_layers = true'],
    ['max_concurrent_downloads = 5', 'max_concurrent_downloads = 5'],
    ['image_pull_with_sync_fs = true', 'image_pull_with_sync_fs = true'],
    ['disable_snapshot_annotations = false', 'disable_snapshot_annotations = false'],
  ])('warns PGD001 for %s in the CRI images plugin, and not for its harmless value', async (line, setting) => {
    await installScript();
    const text = (value: string): string => v3().replace('  snapshotter = "overlayfs"', `  snapshotter = "overlayfs"\n  ${value}`);
    const findings = await containerdFindings(text(line));
    expect(codes(findings)).toEqual(['PGD001']);
    expect(findings[0]?.message).toContain(`containerd: ${setting} in the CRI images config`);
    const harmless = line
      .replace(/= true$/, '= false')
      .replace(/= false$/, line.endsWith('false') ? '= true' : '= false')
      .replace('= 5', '= 3');
    expect(await containerdFindings(text(harmless))).toEqual([]);
  });

  it('reads version 2 and version 1 configs as containerd 2.x migrates them', async () => {
    await installScript();
    const verifierTable = `[plugins."io.containerd.image-verifier.v1.bindir"]\n  bin_dir = "${binDir}"\n  per_verifier_timeout = "45s"\n`;
    const v2 = `version = 2\n[plugins."io.containerd.grpc.v1.cri".registry.mirrors."docker.io"]\n  endpoint = ["https://mirror.example"]\n[plugins."io.containerd.grpc.v1.cri".containerd]\n  disable_snapshot_annotations = false\n${verifierTable}`;
    const findings = await containerdFindings(v2);
    expect(findings.map((f) => f.message.slice(0, f.message.indexOf(' in the')))).toEqual([
      'containerd: registry.mirrors',
      'containerd: disable_snapshot_annotations = false',
    ]);
    // No version: version 1, plugin names without their type.
    const v1 = `[plugins.cri.registry.auths."https://registry.example"]\n  username = "u"\n${verifierTable}`;
    expect(codes(await containerdFindings(v1))).toEqual(['PGD001']);
    // A clean version 2 config.
    expect(
      await containerdFindings(`version = 2\n[plugins."io.containerd.grpc.v1.cri".registry]\n  config_path = "/etc/containerd/certs.d"\n${verifierTable}`),
    ).toEqual([]);
  });

  it("follows imports (globs, relative to the importing file): a later file's plugin table replaces the whole table", async () => {
    await installScript();
    const main = `version = 3\nimports = ["conf.d/*.toml"]\n[plugins.'io.containerd.image-verifier.v1.bindir']\n  bin_dir = "${binDir}"\n  per_verifier_timeout = "45s"\n`;
    const findings = await containerdFindings(main, {
      files: {
        'conf.d/10-registry.toml': "version = 3\n[plugins.'io.containerd.cri.v1.images'.registry.mirrors.'docker.io']\n  endpoint = ['https://m.example']\n",
        // Replaces the verifier table: bin_dir falls back to containerd's default, which has no pullguard.
        'conf.d/20-verifier.toml': "version = 3\n[plugins.'io.containerd.image-verifier.v1.bindir']\n  max_verifiers = 5\n",
      },
    });
    expect(codes(findings)).toEqual(['PGD001', 'PGD003']);
    expect(findings[0]?.message).toContain(`(${join(dir, 'conf.d/10-registry.toml')})`);
    expect(findings[1]?.message).toContain('/opt/containerd/image-verifier/bin');
  });

  it('warns PGD002 when the verifier or transfer plugin is disabled', async () => {
    await installScript();
    const findings = await containerdFindings(
      v3().replace('version = 3', 'version = 3\ndisabled_plugins = ["io.containerd.image-verifier.v1.bindir", "io.containerd.transfer.v1.local"]'),
    );
    expect(codes(findings)).toEqual(['PGD002', 'PGD002']);
    expect(findings[0]?.message).toContain('no image verifier runs, every pull is allowed');
  });

  it('warns PGD003 without a pullguard verifier in bin_dir, and PGD004 when max_verifiers cuts it off', async () => {
    expect((await containerdFindings(v3()))[0]?.message).toMatch(/no pullguard verifier in its image-verifier bin_dir .* \(it does not exist\)/);
    await mkdir(binDir);
    await writeFile(join(binDir, 'a-notation'), '#!/bin/sh\nexit 0\n');
    expect((await containerdFindings(v3()))[0]?.message).toContain('(it holds 1 other entry)');
    await installScript();
    expect(await containerdFindings(v3())).toEqual([]);
    const cut = await containerdFindings(v3('', 'per_verifier_timeout = "45s"\n  max_verifiers = 1'));
    expect(codes(cut)).toEqual(['PGD004']);
    expect(cut[0]?.message).toContain(`${join(binDir, 'pullguard')} is entry 2 of ${binDir}, past max_verifiers = 1`);
    // A negative max_verifiers: no limit.
    expect(await containerdFindings(v3('', 'per_verifier_timeout = "45s"\n  max_verifiers = -1'))).toEqual([]);
  });

  it('warns PGD005 for a per-verifier timeout shorter than the signature budget, PGD006 when the verifier waits as long as containerd', async () => {
    await installScript('pullguard', { timeoutMs: 9000 });
    const defaults = await containerdFindings(v3('', ''));
    expect(codes(defaults)).toEqual(['PGD005']);
    expect(defaults[0]?.message).toContain("per_verifier_timeout (unset: containerd's default, 10s)");
    expect(defaults[0]?.message).toContain("shorter than pullguard's signature budget (30 s)");
    expect(await containerdFindings(v3('', ''), { side: { signatureBudgetMs: 5000 } })).toEqual([]);
    const killed = await containerdFindings(v3('', 'per_verifier_timeout = "1m"'.replace('1m', '9s')), { side: { signatureBudgetMs: 5000 } });
    expect(codes(killed)).toEqual(['PGD006']);
    expect(killed[0]?.message).toContain('--per-verifier-timeout 9s');
    expect(codes(await containerdFindings(v3('', 'per_verifier_timeout = "soon"')))).toEqual(['PGD005']);
  });

  it('warns PGD007 when the verifier asks another socket, the endpoint is off, or its files are gone', async () => {
    await installScript('pullguard', { socket: '/run/elsewhere/verifier.sock' });
    const other = await containerdFindings(v3());
    expect(codes(other)).toEqual(['PGD007']);
    expect(other[0]?.message).toContain(`asks /run/elsewhere/verifier.sock, but pullguard serve (this configuration) answers on ${socket}`);
    await installScript();
    expect(codes(await containerdFindings(v3(), { side: { verifierSocket: undefined } }))).toEqual(['PGD007']);
    await rm(client);
    expect((await containerdFindings(v3()))[0]?.message).toContain(`runs ${client}, which does not exist`);
  });

  it('warns PGD008 for a containerd older than 2.1', async () => {
    await installScript();
    const old = await containerdFindings(v3(), { version: 'containerd github.com/containerd/containerd/v2 v2.0.5 fb4c30d\n' });
    expect(old.map((f) => f.message)).toEqual([expect.stringContaining('v2.0.5 pulls CRI images without the transfer service')]);
    expect((await containerdFindings(v3(), { version: 'containerd containerd.io 1.7.27 05044ec\n' }))[0]?.message).toContain('1.7.27 has no image verifiers');
    expect(await containerdFindings(v3(), { version: 'containerd github.com/containerd/containerd/v2 v2.1.0 x\n' })).toEqual([]);
  });

  it('reads Go durations as containerd does', () => {
    expect(parseGoDuration('10s')).toBe(10_000);
    expect(parseGoDuration('1m30s')).toBe(90_000);
    expect(parseGoDuration('1.5s')).toBe(1500);
    expect(parseGoDuration('500ms')).toBe(500);
    expect(parseGoDuration('0')).toBe(0);
    expect(parseGoDuration('10')).toBeUndefined();
    expect(parseGoDuration('ten seconds')).toBeUndefined();
  });
});

describe('pullguard doctor: CRI-O', () => {
  const signedTeam = {
    default: [{ type: 'reject' }],
    transports: { docker: { 'registry.example/team': [{ type: 'signedBy', keyType: 'GPGKeys', keyPath: '/etc/pki/team.gpg' }] } },
  };
  const pullguardPolicy = () => parsePolicy(JSON.stringify(signedTeam), { source: '/etc/pullguard/policy.json' });

  async function crio(policy: unknown, options: { dropIn?: string; namespaces?: Record<string, unknown> } = {}): Promise<Finding[]> {
    const policyPath = join(dir, 'crio-policy.json');
    await writeFile(policyPath, typeof policy === 'string' ? policy : JSON.stringify(policy));
    const policyDir = join(dir, 'crio-policies');
    await mkdir(policyDir, { recursive: true });
    for (const [ns, p] of Object.entries(options.namespaces ?? {})) await writeFile(join(policyDir, `${ns}.json`), JSON.stringify(p));
    await writeFile(join(dir, 'crio.conf'), `[crio.image]\nsignature_policy = "${policyPath}"\nsignature_policy_dir = "${policyDir}"\n`);
    const files = [join(dir, 'crio.conf')];
    if (options.dropIn !== undefined) {
      await mkdir(join(dir, 'crio.conf.d'), { recursive: true });
      await writeFile(join(dir, 'crio.conf.d', '10-policy.conf'), options.dropIn);
      files.push(join(dir, 'crio.conf.d', '10-policy.conf'));
    }
    return checkCrio(loadCrioSettings(files), pullguardSide({ policy: pullguardPolicy() }));
  }

  it("warns PGD010 when CRI-O's policy checks signatures again where pullguard allows", async () => {
    const findings = await crio(signedTeam);
    expect(codes(findings)).toEqual(['PGD010']);
    expect(findings[0]?.message).toContain(
      `CRI-O: its policy ${join(dir, 'crio-policy.json')} requires signatures for "registry.example/team", where pullguard's /etc/pullguard/policy.json may allow images`,
    );
    expect(findings[0]?.message).toContain('without partial sufficiency');
  });

  it('finds nothing when CRI-O accepts what pullguard hands it, or rejects only what pullguard rejects too', async () => {
    expect(await crio({ default: [{ type: 'insecureAcceptAnything' }] })).toEqual([]);
    expect(await crio({ default: [{ type: 'reject' }], transports: { docker: { 'registry.example': [{ type: 'insecureAcceptAnything' }] } } })).toEqual([]);
  });

  it('warns PGD011 when CRI-O rejects what pullguard allows, or its policy does not parse', async () => {
    const rejects = await crio({ default: [{ type: 'reject' }] });
    expect(codes(rejects)).toEqual(['PGD011']);
    expect(rejects[0]?.message).toContain('rejects default, where pullguard');
    expect((await crio('{"default": []}'))[0]?.message).toMatch(/does not parse .*: CRI-O fails every pull with it/);
  });

  it('reads drop-ins after crio.conf and the per-namespace policies of signature_policy_dir', async () => {
    const accept = join(dir, 'accept.json');
    await writeFile(accept, ACCEPT);
    expect(await crio(signedTeam, { dropIn: `[crio.image]\nsignature_policy = "${accept}"\n` })).toEqual([]);
    const perNamespace = await crio({ default: [{ type: 'insecureAcceptAnything' }] }, { namespaces: { prod: signedTeam } });
    expect(codes(perNamespace)).toEqual(['PGD010']);
    expect(perNamespace[0]?.message).toContain(join(dir, 'crio-policies', 'prod.json'));
  });
});

describe("pullguard doctor: CRI-O's registries.d", () => {
  const policy = parsePolicy(
    JSON.stringify({
      default: [{ type: 'reject' }],
      transports: {
        docker: {
          'registry.example/team': [{ type: 'signedBy', keyType: 'GPGKeys', keyPath: '/k.gpg' }],
          'open.example': [{ type: 'insecureAcceptAnything' }],
        },
      },
    }),
    { source: '/etc/pullguard/policy.json' },
  );
  const findingsFor = (yaml: string) =>
    checkCrioSignatureReads(parseRegistriesD([{ path: '/etc/containers/registries.d/a.yaml', text: yaml }]), '/etc/containers/registries.d', policy);

  it('warns PGD012 when CRI-O would read the signatures of images pullguard verifies from a network lookaside', () => {
    const findings = findingsFor('docker:\n  registry.example:\n    lookaside: https://sigs.example/sigstore\n');
    expect(codes(findings)).toEqual(['PGD012']);
    expect(findings[0]?.message).toContain('"registry.example/team" → https://sigs.example/sigstore (/etc/containers/registries.d/a.yaml)');
    expect(findings[0]?.message).toContain('deploy/crio/registries.d');
    // default-docker reaches them too.
    expect(codes(findingsFor('default-docker:\n  lookaside: http://sigs.example/\n'))).toEqual(['PGD012']);
  });

  it('warns PGD012 for sigstore attachments on those scopes', () => {
    const findings = findingsFor('docker:\n  registry.example/team:\n    use-sigstore-attachments: true\n');
    expect(codes(findings)).toEqual(['PGD012']);
    expect(findings[0]?.message).toContain('use-sigstore-attachments');
  });

  it('finds nothing for a file:// lookaside (deploy/crio), the built-in default, or scopes pullguard does not verify', () => {
    expect(findingsFor('docker:\n  registry.example:\n    lookaside: file:///var/lib/pullguard/crio-lookaside-empty\n')).toEqual([]);
    expect(findingsFor('')).toEqual([]);
    expect(findingsFor('docker:\n  open.example:\n    lookaside: https://sigs.example/\n')).toEqual([]);
  });

  it('the shipped deploy/crio/registries.d passes', async () => {
    const { loadRegistriesD } = await import('../../../src/config/registries-d.js');
    const shipped = join(import.meta.dirname, '../../../deploy/crio/registries.d');
    const redHat = parsePolicy(
      JSON.stringify({
        default: [{ type: 'reject' }],
        transports: { docker: { 'registry.redhat.io': [{ type: 'signedBy', keyType: 'GPGKeys', keyPath: '/k.gpg' }] } },
      }),
      { source: '/p.json' },
    );
    expect(checkCrioSignatureReads(await loadRegistriesD(shipped), shipped, redHat)).toEqual([]);
  });
});

describe('pullguard doctor: the command', () => {
  const environment = (): Environment => ({
    cwd: dir,
    env: {},
    // This machine's own /etc is not the sample node's.
    exists: (p) => !p.startsWith('/etc/') && existsSync(p),
    isDirectory: () => true,
    readFile: (p) => readFileSync(p, 'utf8'),
    hostArch: 'x64',
    hostname: 'node-1',
  });
  async function doctor(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
    const stdout = new PassThrough();
    const stderr = new PassThrough();
    let out = '';
    let err = '';
    stdout.on('data', (c: Buffer) => (out += c.toString()));
    stderr.on('data', (c: Buffer) => (err += c.toString()));
    const code = await runDoctor(args, { stdout, stderr, environment: environment() });
    return { code, stdout: out, stderr: err };
  }

  it('exits 1 with one line per warning, 0 when nothing is found or what was found is ignored', async () => {
    await installScript();
    await writeFile(join(dir, 'config.toml'), v3("[plugins.'io.containerd.cri.v1.images'.registry.configs.'r.example'.tls]\n  insecure_skip_verify = true"));
    const found = await doctor(['--containerd-config', 'config.toml', '--state-dir', join(dir, 'state')]);
    expect(found.code).toBe(1);
    const lines = found.stdout.trimEnd().split('\n');
    expect(lines[0]).toBe(`containerd: ${join(dir, 'config.toml')} (config version 3)`);
    expect(lines).toContain(`pullguard: signature policy <embedded>, signature budget 30 s, verifier socket ${socket}`);
    expect(lines.filter((l) => l.startsWith('warning '))).toEqual([expect.stringMatching(/^warning PGD001: containerd: registry\.configs/)]);
    expect(lines.at(-1)).toBe('1 warning');
    const ignored = await doctor(['--containerd-config', 'config.toml', '--state-dir', join(dir, 'state'), '--ignore', 'pgd001']);
    expect(ignored.code).toBe(0);
    expect(ignored.stdout.trimEnd().split('\n').at(-1)).toBe('no problems found (1 ignored)');
  });

  it('says what it did not find, and refuses a named file that does not exist', async () => {
    const none = await doctor(['--state-dir', join(dir, 'state')]);
    expect(none.code).toBe(0);
    expect(none.stdout).toContain('containerd: no config.toml (/etc/containerd/config.toml does not exist; name one with --containerd-config)');
    expect(none.stdout).toContain('CRI-O: no crio.conf');
    const missing = await doctor(['--containerd-config', 'nope.toml']);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain(`--containerd-config ${join(dir, 'nope.toml')} does not exist`);
    const usage = await doctor(['--bogus']);
    expect(usage.code).toBe(2);
    expect(usage.stderr).toMatch(/^pullguard doctor: unknown option --bogus\n\nUsage: pullguard doctor/);
  });

  it('reports a config.toml that does not parse, naming the file', async () => {
    await writeFile(join(dir, 'config.toml'), 'version = 3\n[plugins\n');
    const broken = await doctor(['--containerd-config', 'config.toml']);
    expect(broken.code).toBe(1);
    expect(broken.stderr).toContain(`pullguard doctor: ${join(dir, 'config.toml')}: `);
  });
});
