/**
 * Runs the real containerd (Debian's 1.6, `/usr/bin/containerd`, as root) with root, state and
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

export const CONTAINERD_BIN = '/usr/bin/containerd';

export interface StartContainerdOptions {
  /** Registry host (`127.0.0.1:5000`) → mirror URL written into certs.d/<host>/hosts.toml. */
  readonly mirrors?: Readonly<Record<string, string>>;
  /** Default overlayfs; `native` where overlay mounts are not allowed. */
  readonly snapshotter?: 'overlayfs' | 'native';
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

export function containerdUnavailableReason(): string | undefined {
  if (!existsSync(CONTAINERD_BIN)) return `${CONTAINERD_BIN} is not installed`;
  if (process.getuid?.() !== 0) return 'containerd needs root (mounts for unpacking layers)';
  return undefined;
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
  const socketPath = join(dir, 'containerd.sock');
  const configPath = join(dir, 'config.toml');
  await writeFile(
    configPath,
    [
      'version = 2',
      `root = "${dir}/root"`,
      `state = "${dir}/state"`,
      // Snapshotters this sandbox cannot have; the CRI plugin's CNI may stay unconfigured (no pods here).
      'disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs", "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]',
      '[grpc]',
      `  address = "${socketPath}"`,
      '[ttrpc]',
      `  address = "${socketPath}.ttrpc"`,
      '[plugins."io.containerd.internal.v1.opt"]',
      `  path = "${dir}/opt"`,
      '[plugins."io.containerd.grpc.v1.cri"]',
      '  disable_tcp_service = true',
      '  [plugins."io.containerd.grpc.v1.cri".containerd]',
      `    snapshotter = "${options.snapshotter ?? 'overlayfs'}"`,
      '  [plugins."io.containerd.grpc.v1.cri".registry]',
      `    config_path = "${certsDir}"`,
      '',
    ].join('\n'),
  );

  let child: ChildProcess | undefined;
  let logTail = '';
  const cri = createCriImageClient(socketPath, { 'grpc.max_reconnect_backoff_ms': 500 });

  const start = async (): Promise<void> => {
    if (child !== undefined && child.exitCode === null) return;
    const proc = spawn(CONTAINERD_BIN, ['--config', configPath, '--log-level', 'info'], { stdio: ['ignore', 'ignore', 'pipe'] });
    child = proc;
    children.add(proc);
    proc.stderr?.on('data', (chunk: Buffer) => {
      logTail = (logTail + chunk.toString()).slice(-8000);
    });
    const deadline = Date.now() + 20_000;
    let lastError = '';
    while (Date.now() < deadline) {
      if (proc.exitCode !== null) throw new Error(`containerd exited with ${proc.exitCode}: ${logTail}`);
      try {
        // The CRI liveness probe kubelet uses; it answers only once the CRI plugin is up.
        await cri.call('ImageFsInfo', {}, { deadlineMs: 1000 });
        return;
      } catch (err) {
        lastError = (err as Error).message;
        await new Promise((r) => setTimeout(r, 100));
      }
    }
    proc.kill('SIGKILL');
    throw new Error(`containerd did not answer CRI ImageFsInfo within 20 s (${lastError}): ${logTail}`);
  };

  const stop = async (): Promise<void> => {
    const proc = child;
    if (proc === undefined || proc.exitCode !== null || proc.signalCode !== null) return;
    const exited = new Promise((r) => proc.once('exit', r));
    proc.kill('SIGTERM');
    await Promise.race([exited, new Promise((r) => setTimeout(r, 5000))]);
    if (proc.exitCode === null && proc.signalCode === null) {
      proc.kill('SIGKILL');
      await exited;
    }
    children.delete(proc);
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
