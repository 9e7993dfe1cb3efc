/**
 * Runs the real containerd (Debian's 1.6, `/usr/bin/containerd`, or 2.x built by .ci/build-peers, as root) with root, state and
 * sockets in a temp dir, the CRI plugin enabled and its registry hosts read from a temp certs.d:
 *
 *   const ctr = await startContainerd({ mirrors: { '127.0.0.1:5000': 'http://127.0.0.1:5050' } });
 *   ctr.endpoint      // 'unix:///tmp/…/containerd.sock'   (CRI + native API, as on a node)
 *   ctr.cri.call('ListImages', {})                          // a CRI client on containerd's own socket
 *   await ctr.stop(); await ctr.start();                    // same state dir: a runtime restart
 *   await ctr.destroy();                                    // stop + remove the temp dir (also on exit)
 *
 * `containerdUnavailableReason()` says why containerd cannot run here (not root, binary missing),
 * or undefined when it can.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createCriImageClient, type CriImageClient } from '../../src/cli/cri-client.js';
import { stopDaemon, waitForCri } from './runtime-daemon.js';
import { peerBinary, peerUnavailableReason } from './peers.js';

export const CONTAINERD_BIN = '/usr/bin/containerd';

export interface StartContainerdOptions {
  /** Debian's 1.6 (default) or 2.x built from its module by .ci/build-peers (test/helpers/peers.ts). */
  readonly release?: '1.6' | '2';
  /** Registry host (`127.0.0.1:5000`) → mirror URL written into certs.d/<host>/hosts.toml. */
  readonly mirrors?: Readonly<Record<string, string>>;
  /** Registry hosts containerd reaches directly over plain HTTP (a hosts.toml without a mirror). */
  readonly plainHttp?: readonly string[];
  /**
   * Registry host → the plain-HTTP server that stands in for it (`server = …` in its hosts.toml, no
   * fallback): `{ 'gcr.io': 'http://127.0.0.1:5000' }` serves gcr.io's paths from the loopback registry.
   */
  readonly servedBy?: Readonly<Record<string, string>>;
  /** 2.x: the image-verifier bin dir (`io.containerd.image-verifier.v1.bindir`); default none (allow all). */
  readonly verifierBinDir?: string;
  /** Default overlayfs; `native` where overlay mounts are not allowed. */
  readonly snapshotter?: 'overlayfs' | 'native';
  /**
   * The pod sandbox (pause) image the CRI plugin runs for every pod (1.6: `sandbox_image`, 2.x:
   * `pinned_images.sandbox`); default: containerd's own default. With it, the CRI plugin also reads
   * CNI configuration from an empty dir of its own, never the host's /etc/cni/net.d.
   */
  readonly sandboxImage?: string;
  /**
   * 2.x: TOML appended to the config as it is, e.g. a sub-table of the CRI images config
   * (`[plugins.'io.containerd.cri.v1.images'.registry.configs.'x.invalid'.tls]`) or settings of the
   * verifier plugin (`per_verifier_timeout`, after its table header, which comes last).
   */
  readonly extraToml?: string;
}

export interface RunningContainerd {
  readonly dir: string;
  readonly socketPath: string;
  readonly endpoint: string;
  /** CRI ImageService client on containerd's own socket. */
  readonly cri: CriImageClient;
  /** The tail of containerd's log (for failure messages). */
  log(): string;
  stop(): Promise<void>;
  start(): Promise<void>;
  destroy(): Promise<void>;
}

const children = new Set<ChildProcess>();
process.once('exit', () => {
  for (const child of children) child.kill('SIGKILL');
});

export function containerdUnavailableReason(release: '1.6' | '2' = '1.6'): string | undefined {
  if (release === '2') {
    const missing = peerUnavailableReason('containerd');
    if (missing !== undefined) return missing;
  } else if (!existsSync(CONTAINERD_BIN)) return `${CONTAINERD_BIN} is not installed`;
  if (process.getuid?.() !== 0) return 'containerd needs root (mounts for unpacking layers)';
  return undefined;
}

function containerdBinary(release: '1.6' | '2'): string {
  if (release === '1.6') return CONTAINERD_BIN;
  const built = peerBinary('containerd');
  if (built === undefined) throw new Error(peerUnavailableReason('containerd'));
  return built;
}

/** Snapshotters this sandbox cannot have; tracing exporters nobody reads. */
const DISABLED_PLUGINS_1_6 = [
  'io.containerd.snapshotter.v1.btrfs',
  'io.containerd.snapshotter.v1.zfs',
  'io.containerd.snapshotter.v1.devmapper',
  'io.containerd.snapshotter.v1.aufs',
  'io.containerd.tracing.processor.v1.otlp',
  'io.containerd.internal.v1.tracing',
];
const DISABLED_PLUGINS_2 = [
  'io.containerd.snapshotter.v1.btrfs',
  'io.containerd.snapshotter.v1.zfs',
  'io.containerd.snapshotter.v1.devmapper',
  'io.containerd.snapshotter.v1.erofs',
  'io.containerd.tracing.processor.v1.otlp',
  'io.containerd.internal.v1.tracing',
];

function configToml(dir: string, socketPath: string, certsDir: string, options: StartContainerdOptions): string {
  const snapshotter = options.snapshotter ?? 'overlayfs';
  if ((options.release ?? '1.6') === '1.6') {
    return [
      'version = 2',
      `root = "${dir}/root"`,
      `state = "${dir}/state"`,
      `disabled_plugins = ${JSON.stringify(DISABLED_PLUGINS_1_6)}`,
      '[grpc]',
      `  address = "${socketPath}"`,
      '[ttrpc]',
      `  address = "${socketPath}.ttrpc"`,
      '[plugins."io.containerd.internal.v1.opt"]',
      `  path = "${dir}/opt"`,
      '[plugins."io.containerd.grpc.v1.cri"]',
      '  disable_tcp_service = true',
      // This machine lacks CAP_SYS_RESOURCE: sandboxes may not lower oom_score_adj.
      '  restrict_oom_score_adj = true',
      ...(options.sandboxImage !== undefined ? [`  sandbox_image = "${options.sandboxImage}"`] : []),
      ...(options.sandboxImage !== undefined
        ? ['  [plugins."io.containerd.grpc.v1.cri".cni]', `    conf_dir = "${dir}/cni"`, `    bin_dir = "${dir}/cni-bin"`]
        : []),
      '  [plugins."io.containerd.grpc.v1.cri".containerd]',
      `    snapshotter = "${snapshotter}"`,
      '  [plugins."io.containerd.grpc.v1.cri".registry]',
      `    config_path = "${certsDir}"`,
      '',
    ].join('\n');
  }
  // Config version 3 (containerd 2.x). Registry hosts through config_path only: CRI `mirrors`,
  // `configs` or `auths` would send 2.1+ back to the local pull path, which skips image verifiers.
  return [
    'version = 3',
    `root = "${dir}/root"`,
    `state = "${dir}/state"`,
    `disabled_plugins = ${JSON.stringify(DISABLED_PLUGINS_2)}`,
    '[grpc]',
    `  address = "${socketPath}"`,
    '[ttrpc]',
    `  address = "${socketPath}.ttrpc"`,
    "[plugins.'io.containerd.internal.v1.opt']",
    `  path = "${dir}/opt"`,
    "[plugins.'io.containerd.cri.v1.images']",
    `  snapshotter = "${snapshotter}"`,
    "[plugins.'io.containerd.cri.v1.images'.registry]",
    `  config_path = "${certsDir}"`,
    ...(options.sandboxImage !== undefined ? ["[plugins.'io.containerd.cri.v1.images'.pinned_images]", `  sandbox = "${options.sandboxImage}"`] : []),
    "[plugins.'io.containerd.cri.v1.runtime']",
    '  restrict_oom_score_adj = true',
    ...(options.sandboxImage !== undefined
      ? ["[plugins.'io.containerd.cri.v1.runtime'.cni]", `  conf_dir = "${dir}/cni"`, `  bin_dirs = ["${dir}/cni-bin"]`]
      : []),
    "[plugins.'io.containerd.transfer.v1.local']",
    `  config_path = "${certsDir}"`,
    "[plugins.'io.containerd.image-verifier.v1.bindir']",
    `  bin_dir = "${options.verifierBinDir ?? join(dir, 'no-verifiers')}"`,
    ...(options.extraToml !== undefined ? [options.extraToml] : []),
    '',
  ].join('\n');
}

export function hostsToml(upstream: string, mirrorUrl: string): string {
  // Pull only (no resolve): tags are never resolved through the mirror; pullguard pulls by digest.
  return `server = "${upstream}"\n\n[host."${mirrorUrl}"]\n  capabilities = ["pull"]\n`;
}

export async function startContainerd(options: StartContainerdOptions = {}): Promise<RunningContainerd> {
  const dir = await mkdtemp(join(tmpdir(), 'pullguard-containerd-'));
  const certsDir = join(dir, 'certs.d');
  await mkdir(certsDir, { recursive: true });
  for (const [host, mirrorUrl] of Object.entries(options.mirrors ?? {})) {
    await mkdir(join(certsDir, host), { recursive: true });
    await writeFile(join(certsDir, host, 'hosts.toml'), hostsToml(`http://${host}`, mirrorUrl));
  }
  for (const host of options.plainHttp ?? []) {
    await mkdir(join(certsDir, host), { recursive: true });
    await writeFile(join(certsDir, host, 'hosts.toml'), `server = "http://${host}"\n`);
  }
  for (const [host, server] of Object.entries(options.servedBy ?? {})) {
    await mkdir(join(certsDir, host), { recursive: true });
    await writeFile(join(certsDir, host, 'hosts.toml'), `server = "${server}"\n`);
  }
  const socketPath = join(dir, 'containerd.sock');
  const configPath = join(dir, 'config.toml');
  await writeFile(configPath, configToml(dir, socketPath, certsDir, options));
  const binary = containerdBinary(options.release ?? '1.6');

  let child: ChildProcess | undefined;
  let logTail = '';
  const cri = createCriImageClient(socketPath, { 'grpc.max_reconnect_backoff_ms': 500 });

  const start = async (): Promise<void> => {
    if (child !== undefined && child.exitCode === null) return;
    const proc = spawn(binary, ['--config', configPath, '--log-level', 'info'], { stdio: ['ignore', 'ignore', 'pipe'] });
    child = proc;
    children.add(proc);
    proc.stderr?.on('data', (chunk: Buffer) => {
      logTail = (logTail + chunk.toString()).slice(-8000);
    });
    await waitForCri('containerd', proc, cri, 20000, () => logTail);
  };

  const stop = async (): Promise<void> => {
    const proc = child;
    await stopDaemon(proc, 5000);
    if (proc !== undefined) children.delete(proc);
  };

  await start();
  return {
    dir,
    socketPath,
    endpoint: `unix://${socketPath}`,
    cri,
    log: () => logTail,
    stop,
    start,
    async destroy() {
      cri.close();
      await stop();
      // Snapshots may still be mounted (overlayfs): unmount before removing, or rm fails with EBUSY.
      await new Promise<void>((resolve) => {
        const umount = spawn('sh', ['-c', `grep -o " ${dir}[^ ]*" /proc/mounts | sort -r | xargs -r -n1 umount -l`], { stdio: 'ignore' });
        umount.once('exit', () => resolve());
        umount.once('error', () => resolve());
      });
      await rm(dir, { recursive: true, force: true });
    },
  };
}
