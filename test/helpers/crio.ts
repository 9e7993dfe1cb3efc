/**
 * Runs the real CRI-O (built by .ci/build-peers, as root) with everything under one temp dir: its
 * own storage root and runroot (storage driver `vfs`, or `overlay`), listen socket, crio.conf plus
 * `--config-dir` drop-ins, policy.json, registries.conf and registries.d; Debian's conmon and runc,
 * the built pinns; cgroupfs; no CNI (an empty network dir and plugin dir: CRI-O 1.36 starts without
 * a CNI configuration and runs hostNetwork pods, never a pod network).
 *
 *   const crio = await startCrio({
 *     policy: { default: [{ type: 'reject' }], transports: { docker: { '127.0.0.1:5000': [...] } } },
 *     registriesD: { 'lookaside.yaml': 'docker:\n  127.0.0.1:5000:\n    lookaside: http://127.0.0.1:4000\n' },
 *     insecureRegistries: ['127.0.0.1:5000'],
 *   });
 *   crio.endpoint                         // 'unix:///tmp/…/crio.sock'
 *   crio.cri.call('PullImage', { image: { image: '127.0.0.1:5000/app:v1' } })
 *   await crio.crictl(['runp', podJson])  // crictl on CRI-O's socket (runtime and image service)
 *   await crio.stop(); await crio.start();  // same dirs: a runtime restart
 *   await crio.destroy();                 // pods removed, crio stopped by PID, mounts undone, dir removed
 *
 * CRI-O has no setting for the registries.d directory (containers/image's SystemContext field
 * `RegistriesDirPath` is not exposed by its config or flags): containers/image uses
 * `$HOME/.config/containers/registries.d` when that exists, before /etc/containers/registries.d, so
 * crio runs with HOME=<dir>/home and the test's registries.d is written there.
 *
 * This machine lacks CAP_SYS_RESOURCE: CRI-O sets oom_score_adj -998 on every pod's infra process
 * (server.PodInfraOOMAdj; no option turns it off), which runc cannot apply here. `rootlessOom: true`
 * starts crio with `_CRIO_ROOTLESS=1`, CRI-O's rootless mode, which drops that setting (and cgroup
 * limits no controller is delegated for) from every spec; it is only needed to run pods.
 *
 * `crioUnavailableReason()` says why CRI-O cannot run here (not root, peer not built, conmon/runc
 * missing), or undefined when it can.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { appendFileSync, existsSync, readFileSync, readdirSync, readlinkSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { createCriImageClient, type CriImageClient } from '../../src/cli/cri-client.js';
import { stopDaemon, waitForCri } from './runtime-daemon.js';
import { peerBinary, peerUnavailableReason } from './peers.js';

const execFileAsync = promisify(execFile);

export const CONMON_BIN = '/usr/bin/conmon';
export const RUNC_BIN = '/usr/bin/runc';

export interface StartCrioOptions {
  /** CRI-O's policy.json (`signature_policy`): an object (written as JSON) or the file's text; default insecureAcceptAnything. */
  readonly policy?: unknown;
  /** Per-namespace policies (`signature_policy_dir`/<namespace>.json): namespace → object or text. */
  readonly namespacePolicies?: Readonly<Record<string, unknown>>;
  /** registries.d files (file name → YAML text), read by containers/image for lookaside URLs. */
  readonly registriesD?: Readonly<Record<string, string>>;
  /** registries.conf text (`--registries-conf`); the insecure registries below are appended to it. */
  readonly registriesConf?: string;
  /** Files for registries.conf.d (`--registries-conf-dir`): file name → TOML text. */
  readonly registriesConfD?: Readonly<Record<string, string>>;
  /** Registries CRI-O reaches over plain HTTP (`[[registry]] location = … insecure = true`). */
  readonly insecureRegistries?: readonly string[];
  /** `--config-dir` drop-ins: file name → TOML text, applied in name order after crio.conf. */
  readonly dropIns?: Readonly<Record<string, string>>;
  /** The pod sandbox image (`pause_image`); default an address nothing listens on (pods need one). */
  readonly pauseImage?: string;
  /** `pause_command`, the program in the pause image; default `/pause`. */
  readonly pauseCommand?: string;
  /** Run pods on a machine without CAP_SYS_RESOURCE (see above); default false. */
  readonly rootlessOom?: boolean;
  /** crio's --log-level; default info. */
  readonly logLevel?: 'error' | 'warn' | 'info' | 'debug' | 'trace';
  /**
   * containers/storage's driver; default `vfs` (no mounts, enough for the image service and pods).
   * Image volumes of OCI images (KEP-4639) need `overlay`: CRI-O mounts the image read-only
   * (MountImage with `ro,noexec,nosuid,nodev`, which vfs refuses: "vfs driver does not support
   * mount options") and gives the container an overlay of it.
   */
  readonly storageDriver?: 'vfs' | 'overlay';
  /** Also append everything crio logs (every start) to this file; `log()` keeps only the tail. */
  readonly logFile?: string;
}

export interface RunningCrio {
  readonly dir: string;
  readonly socketPath: string;
  readonly endpoint: string;
  /** CRI ImageService client on CRI-O's own socket. */
  readonly cri: CriImageClient;
  /** Paths of the files written for CRI-O (for tests that show or change them). */
  readonly files: {
    readonly config: string;
    readonly configDir: string;
    readonly policy: string;
    readonly policyDir: string;
    readonly registriesConf: string;
    readonly registriesConfD: string;
    readonly registriesD: string;
  };
  /** crictl on CRI-O's socket: stdout; rejects with crictl's stderr on a non-zero exit. */
  crictl(args: readonly string[], options?: { timeoutMs?: number }): Promise<string>;
  /** The tail of CRI-O's log (for failure messages). */
  log(): string;
  stop(): Promise<void>;
  start(): Promise<void>;
  destroy(): Promise<void>;
}

const children = new Set<ChildProcess>();
process.once('exit', () => {
  for (const child of children) child.kill('SIGKILL');
});

export function crioUnavailableReason(): string | undefined {
  const missing = peerUnavailableReason('crio') ?? peerUnavailableReason('crictl');
  if (missing !== undefined) return missing;
  if (!existsSync(CONMON_BIN)) return `${CONMON_BIN} is not installed (apt install conmon; .ci/install-deps)`;
  if (!existsSync(RUNC_BIN)) return `${RUNC_BIN} is not installed`;
  if (process.getuid?.() !== 0) return 'CRI-O needs root (storage, mounts, namespaces)';
  return undefined;
}

function toml(value: string): string {
  return JSON.stringify(value); // a TOML basic string: same escapes as JSON for paths
}

function crioConf(dir: string, socketPath: string, options: StartCrioOptions): string {
  const p = (sub: string): string => toml(join(dir, sub));
  return [
    '[crio]',
    `root = ${p('storage')}`,
    `runroot = ${p('run/storage')}`,
    `storage_driver = ${toml(options.storageDriver ?? 'vfs')}`,
    `log_dir = ${p('pod-logs')}`,
    `version_file = ${p('run/version')}`,
    `version_file_persist = ${p('lib/version')}`,
    `clean_shutdown_file = ${p('lib/clean.shutdown')}`,
    '',
    '[crio.api]',
    `listen = ${toml(socketPath)}`,
    'stream_address = "127.0.0.1"',
    'stream_port = "0"',
    '',
    '[crio.runtime]',
    'cgroup_manager = "cgroupfs"',
    `conmon = ${toml(CONMON_BIN)}`,
    'conmon_cgroup = "pod"',
    'default_runtime = "runc"',
    `pinns_path = ${toml(peerBinary('crio', 'pinns')!)}`,
    `container_exits_dir = ${p('run/exits')}`,
    `container_attach_socket_dir = ${p('run/attach')}`,
    `namespaces_dir = ${p('run/ns')}`,
    `decryption_keys_path = ${p('keys')}`,
    `irqbalance_config_file = ${p('irqbalance')}`,
    'irqbalance_config_restore_file = "disable"',
    `hooks_dir = [${p('hooks')}]`,
    `cdi_spec_dirs = [${p('cdi')}]`,
    'enable_criu_support = false',
    '',
    '[crio.runtime.runtimes.runc]',
    `runtime_path = ${toml(RUNC_BIN)}`,
    'runtime_type = "oci"',
    `runtime_root = ${p('run/runc')}`,
    `monitor_path = ${toml(CONMON_BIN)}`,
    'monitor_cgroup = "pod"',
    '',
    '[crio.image]',
    `signature_policy = ${p('policy.json')}`,
    `signature_policy_dir = ${p('policies')}`,
    `namespaced_auth_dir = ${p('auth')}`,
    `pause_image = ${toml(options.pauseImage ?? '127.0.0.1:9/pause:none')}`,
    `pause_command = ${toml(options.pauseCommand ?? '/pause')}`,
    '',
    '[crio.network]',
    `network_dir = ${p('cni')}`,
    `plugin_dirs = [${p('cni-bin')}]`,
    '',
    '[crio.nri]',
    'enable_nri = false',
    '',
    '[crio.metrics]',
    'enable_metrics = false',
    '',
  ].join('\n');
}

function asFileText(value: unknown): string {
  return typeof value === 'string' ? value : `${JSON.stringify(value, null, 2)}\n`;
}

export function insecureRegistriesToml(hosts: readonly string[]): string {
  return hosts.map((host) => `[[registry]]\nlocation = ${toml(host)}\ninsecure = true\n`).join('\n');
}

/** Processes whose command line mentions `dir` (conmon and the containers' runc leftovers), by PID. */
function processesUnder(dir: string): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    try {
      const cmdline = readFileSync(`/proc/${entry}/cmdline`, 'utf8');
      if (cmdline.includes(dir)) pids.push(Number(entry));
      else if (readlinkSync(`/proc/${entry}/cwd`).startsWith(dir)) pids.push(Number(entry));
    } catch {
      // gone, or a kernel thread
    }
  }
  return pids;
}

async function unmountUnder(dir: string): Promise<void> {
  // Mount points under the dir, deepest first: pods' shm, pinns' namespace bind mounts, overlay and vfs leftovers.
  const mounts = (await readFile('/proc/self/mounts', 'utf8'))
    .split('\n')
    .map((line) => line.split(' ')[1]?.replace(/\\040/g, ' '))
    .filter((m): m is string => m !== undefined && (m === dir || m.startsWith(`${dir}/`)))
    .sort((a, b) => b.length - a.length);
  for (const mount of mounts) await execFileAsync('umount', ['-l', mount]).catch(() => undefined);
}

export async function startCrio(options: StartCrioOptions = {}): Promise<RunningCrio> {
  const reason = crioUnavailableReason();
  if (reason !== undefined) throw new Error(`CRI-O cannot run: ${reason}`);
  const binary = peerBinary('crio')!;
  const crictlBinary = peerBinary('crictl')!;
  const dir = await mkdtemp(join(tmpdir(), 'pullguard-crio-'));
  const files = {
    config: join(dir, 'crio.conf'),
    configDir: join(dir, 'crio.conf.d'),
    policy: join(dir, 'policy.json'),
    policyDir: join(dir, 'policies'),
    registriesConf: join(dir, 'registries.conf'),
    registriesConfD: join(dir, 'registries.conf.d'),
    // containers/image reads $HOME/.config/containers/registries.d first when it exists.
    registriesD: join(dir, 'home/.config/containers/registries.d'),
  };
  for (const sub of [
    'storage',
    'run',
    'lib',
    'pod-logs',
    'keys',
    'hooks',
    'cdi',
    'cni',
    'cni-bin',
    'auth',
    'crio.conf.d',
    'policies',
    'registries.conf.d',
    'home/.config/containers/registries.d',
  ]) {
    await mkdir(join(dir, sub), { recursive: true });
  }
  const socketPath = join(dir, 'crio.sock');
  await writeFile(files.config, crioConf(dir, socketPath, options));
  for (const [name, text] of Object.entries(options.dropIns ?? {})) await writeFile(join(files.configDir, name), text);
  await writeFile(files.policy, asFileText(options.policy ?? { default: [{ type: 'insecureAcceptAnything' }] }));
  for (const [namespace, policy] of Object.entries(options.namespacePolicies ?? {}))
    await writeFile(join(files.policyDir, `${namespace}.json`), asFileText(policy));
  await writeFile(
    files.registriesConf,
    [options.registriesConf ?? 'unqualified-search-registries = []\n', insecureRegistriesToml(options.insecureRegistries ?? [])].join('\n'),
  );
  for (const [name, text] of Object.entries(options.registriesConfD ?? {})) await writeFile(join(files.registriesConfD, name), text);
  for (const [name, text] of Object.entries(options.registriesD ?? {})) await writeFile(join(files.registriesD, name), text);
  const crictlConfig = join(dir, 'crictl.yaml');
  await writeFile(crictlConfig, `runtime-endpoint: unix://${socketPath}\nimage-endpoint: unix://${socketPath}\ntimeout: 60\n`);

  let child: ChildProcess | undefined;
  let logTail = '';
  const cri = createCriImageClient(socketPath, { 'grpc.max_reconnect_backoff_ms': 500 });
  const args = [
    '--config',
    files.config,
    '--config-dir',
    files.configDir,
    '--registries-conf',
    files.registriesConf,
    '--registries-conf-dir',
    files.registriesConfD,
    '--log-level',
    options.logLevel ?? 'info',
  ];
  // No proxy variables: everything the tests reach is on loopback.
  const env: Record<string, string> = {
    PATH: process.env['PATH'] ?? '/usr/sbin:/usr/bin:/sbin:/bin',
    HOME: join(dir, 'home'),
    ...(options.rootlessOom === true ? { _CRIO_ROOTLESS: '1' } : {}),
  };

  const start = async (): Promise<void> => {
    if (child !== undefined && child.exitCode === null && child.signalCode === null) return;
    const proc = spawn(binary, args, { stdio: ['ignore', 'ignore', 'pipe'], env });
    child = proc;
    children.add(proc);
    if (options.logFile !== undefined) appendFileSync(options.logFile, `=== ${binary} ${args.join(' ')}\n`);
    proc.stderr?.on('data', (chunk: Buffer) => {
      logTail = (logTail + chunk.toString()).slice(-16_000);
      if (options.logFile !== undefined) appendFileSync(options.logFile, chunk);
    });
    proc.once('exit', () => children.delete(proc));
    await waitForCri('crio', proc, cri, 30000, () => logTail);
  };

  const stop = (): Promise<void> => stopDaemon(child, 10000);

  const crictl = async (crictlArgs: readonly string[], callOptions: { timeoutMs?: number } = {}): Promise<string> => {
    try {
      const { stdout } = await execFileAsync(crictlBinary, ['--config', crictlConfig, ...crictlArgs], {
        timeout: callOptions.timeoutMs ?? 120_000,
        maxBuffer: 16 * 1024 * 1024,
      });
      return stdout;
    } catch (err) {
      const e = err as { stderr?: string; message: string };
      throw new Error(`crictl ${crictlArgs.join(' ')}: ${e.stderr?.trim() || e.message}`);
    }
  };

  await start();
  return {
    dir,
    socketPath,
    endpoint: `unix://${socketPath}`,
    cri,
    files,
    crictl,
    log: () => logTail,
    stop,
    start,
    async destroy() {
      cri.close();
      const proc = child;
      if (proc !== undefined && proc.exitCode === null && proc.signalCode === null) {
        // Pods first, while CRI-O still runs: their conmon and runc processes outlive crio otherwise.
        await crictl(['rmp', '--all', '--force'], { timeoutMs: 60_000 }).catch(() => undefined);
      }
      await stop();
      for (const pid of processesUnder(dir)) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // already gone
        }
      }
      await unmountUnder(dir);
      await rm(dir, { recursive: true, force: true, maxRetries: 3 });
    },
  };
}
