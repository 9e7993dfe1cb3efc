/**
 * A real Kubernetes node on this machine, for the node scenarios (test/node/*.test.ts): etcd,
 * kube-apiserver, a container runtime (containerd 2.x, or CRI-O), pullguard (`serve --backend` in
 * front of the runtime) and kubelet (containerRuntimeEndpoint = the runtime's socket,
 * imageServiceEndpoint = pullguard's socket; or, with `deployment: 'verifier'`, both containerd's,
 * pullguard its image verifier — see below), all as root under one temp dir, every server on
 * 127.0.0.1; plus two loopback registries (anonymous, htpasswd), a lookaside server and two GPG
 * signers. No scheduler, no controller manager, no CNI: pods name their node and use
 * `hostNetwork: true`; service-account tokens are off.
 *
 *   const node = await startNode({ runtime: 'crio' }); // default containerd; ~10 s; binaries from .ci/build-peers
 *   await node.pushApp('signed', { signers: [node.signer] });
 *   const pod = await node.createPod({ name: 'pg-signed', image: node.image('signed') });
 *   await node.waitForRunning('default', 'pg-signed');
 *   await node.restartPullguard(); await node.restartKubelet(); await node.runtime.stop(); …
 *   await node.stop();                                  // every process by PID, temp dirs removed
 *
 * The runtimes:
 * - `containerd`: containerd 2.x (test/helpers/containerd.ts), its sandbox image the harness's
 *   pause image, both registries mirrored to pullguard's mirror address in its certs.d.
 * - `crio`: CRI-O (test/helpers/crio.ts; overlay storage, since image volumes of OCI images need
 *   it — with vfs CRI-O fails them with "mount storage: vfs driver does not support mount options";
 *   Debian conmon + runc; cgroupfs with `conmon_cgroup = "pod"`; `_CRIO_ROOTLESS=1` because this
 *   machine has no CAP_SYS_RESOURCE), configured by deploy/crio/ verbatim but for the addresses
 *   (test/integration/crio/deploy-config.ts: its own policy.json accepting both registries, no
 *   lookaside for them, an empty signature_policy_dir); `pause_image` the harness's pause image
 *   (`pause_command` /pause, its entrypoint), which CRI-O pulls itself over plain HTTP. kubelet
 *   1.37 has no --pod-infra-container-image: the sandbox image is the runtime's.
 * pullguard runs in its default `--runtime-fetch runtime` mode with both.
 *
 * The deployments (README "Two deployments"):
 * - `image-service` (default, deployment A): kubelet's imageServiceEndpoint is pullguard's socket,
 *   pullguard `serve --backend` in front of the runtime (through a PullImage-recording pass-through).
 * - `verifier` (deployment B, containerd only): kubelet's imageServiceEndpoint and
 *   containerRuntimeEndpoint are both containerd's socket; containerd runs pullguard as its image
 *   verifier (the script `pullguard verifier install --per-verifier-timeout 60s` writes into its
 *   image-verifier bin dir, `per_verifier_timeout = "60s"`), reaches both registries itself over
 *   plain HTTP (hosts.toml, no mirror), and `pullguard serve` runs without --backend, answering the
 *   verifier socket (`<state-dir>/verifier.sock`) under the same policy, registries.d and lookaside,
 *   with its own `--auth-file` for the htpasswd registry (containerd gives verifiers no credentials).
 *   The sandbox image is verified too, so the pause image is signed by the trusted key.
 *
 * `nodeUnavailableReason(runtime)` says why the node cannot run here (not root, a peer not built, a
 * program missing), or undefined.
 */
import { execFile } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { request as httpsRequest } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import * as k8s from '@kubernetes/client-node';
import { parseAllDocuments, stringify } from 'yaml';
import { packageRoot } from '../../src/util/package-root.js';
import { containerdUnavailableReason, startContainerd, type RunningContainerd } from '../helpers/containerd.js';
import { crioUnavailableReason, startCrio, type RunningCrio } from '../helpers/crio.js';
import { deployedCrioConfig } from '../integration/crio/deploy-config.js';
import { startLookasideServer, type LookasideServer } from '../helpers/lookaside-server.js';
import { peerBinary, peerUnavailableReason, PEERS } from '../helpers/peers.js';
import { MAIN, startPullguard, type RunningPullguard } from '../helpers/pullguard-server.js';
import { freePort, pushImage, startRegistry, type StartedRegistry } from '../helpers/registry.js';
import { createGpgSigner, pushSignedImage, type GpgSigner } from '../helpers/signed-images.js';
import { kubeconfigYaml, makeNodePki, type NodePki } from './certs.js';
import { startCriRecordingProxy, type RecordedPull } from './cri-recording-proxy.js';
import { buildExecImage, type ExecImage } from './exec-image.js';
import { spawnLogged, waitFor, type LoggedProcess } from './processes.js';

const execFileAsync = promisify(execFile);

export const NODE_NAME = 'pullguard-node';
/** The htpasswd registry's user; its password is random per run (`node.registryPassword`). */
export const REGISTRY_USER = 'puller';

export type NodeRuntimeName = 'containerd' | 'crio';
/** `image-service`: kubelet → pullguard → runtime (A); `verifier`: kubelet → containerd, pullguard its image verifier (B). */
export type NodeDeployment = 'image-service' | 'verifier';

/** The node's container runtime, whichever it is: what the scenarios stop, start and read. */
export interface NodeRuntime {
  readonly name: NodeRuntimeName;
  /** `containerd v2.4.2`, `CRI-O v1.36.3` */
  readonly display: string;
  /** `unix://…` (kubelet's containerRuntimeEndpoint, pullguard's backend behind the recording proxy) */
  readonly endpoint: string;
  readonly socketPath: string;
  /** The image id this runtime reports for an image with this config digest: containerd `sha256:<hex>`, CRI-O bare `<hex>`. */
  imageId(configDigest: string): string;
  /** Stops the runtime (SIGTERM; its pods' processes keep running), state kept. */
  stop(): Promise<void>;
  /** Starts it again on the same socket and state. */
  start(): Promise<void>;
  /** What the runtime logged (containerd: the tail; CRI-O: everything, all starts). */
  log(): string;
}

export function nodeUnavailableReason(runtime: NodeRuntimeName = 'containerd'): string | undefined {
  if (process.getuid?.() !== 0) return `a node needs root (kubelet, ${runtime}, runc)`;
  const peers =
    runtime === 'containerd'
      ? (['kubernetes', 'etcd', 'nodebins', 'containerd', 'containerd-shim', 'crictl'] as const)
      : (['kubernetes', 'etcd', 'nodebins', 'crictl'] as const);
  for (const peer of peers) {
    const missing = peerUnavailableReason(peer);
    if (missing !== undefined) return missing;
  }
  const runtimeMissing = runtime === 'containerd' ? containerdUnavailableReason('2') : crioUnavailableReason();
  if (runtimeMissing !== undefined) return runtimeMissing;
  for (const program of ['/usr/bin/docker-registry', '/usr/bin/skopeo', '/usr/bin/gpg', '/usr/bin/openssl', '/usr/bin/htpasswd', '/usr/bin/unshare']) {
    if (!existsSync(program)) return `${program} is not installed (bash .ci/install-deps)`;
  }
  if (!existsSync('/usr/sbin/runc') && !existsSync('/usr/bin/runc')) return 'runc is not installed (bash .ci/install-deps)';
  if (!existsSync(MAIN)) return `${MAIN} is not built (npm run build)`;
  return undefined;
}

export interface PodSpecInput {
  readonly namespace?: string;
  readonly name: string;
  readonly image: string;
  readonly pullPolicy?: 'Always' | 'IfNotPresent' | 'Never';
  readonly pullSecrets?: readonly string[];
  /** Image volumes (KEP-4639): an OCI image or artifact mounted read-only into the container. */
  readonly imageVolumes?: readonly { readonly name: string; readonly reference: string; readonly mountPath: string }[];
}

export interface NodeHarness {
  readonly dir: string;
  readonly nodeName: string;
  readonly kubeConfig: k8s.KubeConfig;
  readonly core: k8s.CoreV1Api;
  readonly registry: StartedRegistry;
  /** htpasswd-protected: user REGISTRY_USER, password `registryPassword`. */
  readonly authRegistry: StartedRegistry;
  readonly registryPassword: string;
  readonly lookaside: LookasideServer;
  /** Trusted by the global policy for `registry`. */
  readonly signer: GpgSigner;
  /** A key no policy trusts. */
  readonly untrustedSigner: GpgSigner;
  /** The container runtime (kubelet's containerRuntimeEndpoint, pullguard's backend). */
  readonly runtime: NodeRuntime;
  readonly deployment: NodeDeployment;
  readonly pullguard: RunningPullguard;
  /** The PullImage requests pullguard forwarded to the runtime (AuthConfig user, sha256 of the password); always empty with `verifier`. */
  readonly backendPulls: readonly RecordedPull[];
  /** `verifier`: the verdicts pullguard's verifier endpoint logged so far (every pullguard process). */
  verifierAnswers(): readonly VerifierAnswer[];
  /** Every log line of every pullguard process so far (restarts included). */
  pullguardLogs(): string[];
  kubeletLog(): string;
  apiserverLog(): string;
  runtimeLog(): string;
  /** Seconds each start-up step took (for the report). */
  readonly timings: Readonly<Record<string, number>>;
  /** What kubelet reported for the node: its Ready condition's reason and message. */
  nodeReadiness(): Promise<string>;
  /** `<registry>/<name>:v1` */
  image(name: string, registry?: StartedRegistry): string;
  /** Builds an app image named `name` (its own config), pushes it as `<name>:v1`: signed by `signers` in order, or with `creds`. */
  pushApp(
    name: string,
    options?: { signers?: readonly GpgSigner[]; registry?: StartedRegistry; creds?: { username: string; password: string } },
  ): Promise<ExecImage & { signatures: Uint8Array[]; repoPath: string }>;
  createNamespace(name: string): Promise<void>;
  createPod(input: PodSpecInput): Promise<k8s.V1Pod>;
  readPod(namespace: string, name: string): Promise<k8s.V1Pod>;
  waitForRunning(namespace: string, name: string, timeoutMs?: number): Promise<k8s.V1Pod>;
  /** Until the container waits with one of `reasons` (and, with `message`, a message matching it). */
  waitForWaiting(namespace: string, name: string, reasons: readonly string[], timeoutMs?: number, message?: RegExp): Promise<k8s.V1Pod>;
  /** Events whose involvedObject is the pod (by uid). */
  podEvents(pod: k8s.V1Pod): Promise<k8s.CoreV1Event[]>;
  waitForEvent(pod: k8s.V1Pod, match: (e: k8s.CoreV1Event) => boolean, what: string, timeoutMs?: number): Promise<k8s.CoreV1Event>;
  /** A `kubectl describe pod`-like text: status, container state and the Events table. */
  describePod(namespace: string, name: string): Promise<string>;
  deletePod(namespace: string, name: string): Promise<void>;
  /**
   * A file as the pod's running container sees it: the container's PID from the runtime
   * (`crictl inspect` on the runtime's socket), then /proc/<pid>/root/<path>.
   */
  readContainerFile(namespace: string, name: string, path: string): Promise<string>;
  /** SIGTERM pullguard (state kept) and start it again on the same socket and store. */
  restartPullguard(options?: { signal?: NodeJS.Signals; beforeStart?: () => Promise<void> }): Promise<void>;
  restartKubelet(options?: { signal?: NodeJS.Signals }): Promise<void>;
  stop(): Promise<void>;
}

/** One `image verifier: allowed|blocked` line of pullguard's log. */
export interface VerifierAnswer {
  /** The name containerd gave (`-name`), tag included. */
  readonly name: string;
  readonly digest: string;
  readonly allowed: boolean;
  readonly cached: boolean;
  readonly reason?: string;
}

interface Step {
  name: string;
  seconds: number;
}

async function timed<T>(steps: Step[], name: string, run: () => Promise<T>): Promise<T> {
  const start = Date.now();
  try {
    return await run();
  } finally {
    steps.push({ name, seconds: (Date.now() - start) / 1000 });
  }
}

/** GET a URL on kube-apiserver with the admin client certificate; resolves with the status and body. */
function apiGet(url: string, pki: NodePki): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    Promise.all([readFile(pki.caCert), readFile(pki.adminCert), readFile(pki.adminKey)])
      .then(([ca, cert, key]) => {
        const req = httpsRequest(url, { ca, cert, key, timeout: 5000 }, (res) => {
          let body = '';
          res.on('data', (c: Buffer) => (body += c.toString()));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
        });
        req.on('error', reject);
        req.on('timeout', () => req.destroy(new Error('timeout')));
        req.end();
      })
      .catch(reject);
  });
}

/**
 * kubelet sets six kernel tunables at start (vm.overcommit_memory=1, kernel.panic=10,
 * kernel.panic_on_oops=1, …) on the whole machine unless they already have its values; with
 * protectKernelDefaults it refuses to start instead. On a shared test machine neither will do, so
 * kubelet runs in a mount namespace of its own (unshare -m; this machine's mounts are private,
 * nothing kubelet mounts would reach the runtime anyway, and the pods here have no volumes) where
 * those /proc/sys files are bind-mounted read-only copies holding the values it wants.
 */
const KUBELET_TUNABLES: Readonly<Record<string, string>> = {
  'vm/overcommit_memory': '1',
  'vm/panic_on_oom': '0',
  'kernel/panic': '10',
  'kernel/panic_on_oops': '1',
  'kernel/keys/root_maxkeys': '1000000',
  'kernel/keys/root_maxbytes': '25000000',
};

async function kubeletWrapper(dir: string): Promise<string> {
  const tunables = join(dir, 'sysctl');
  await mkdir(tunables, { recursive: true });
  const lines = ['#!/bin/sh', 'set -e'];
  for (const [key, value] of Object.entries(KUBELET_TUNABLES)) {
    const file = join(tunables, key.replace(/\//g, '.'));
    await writeFile(file, `${value}\n`);
    lines.push(`mount --bind ${file} /proc/sys/${key}`, `mount -o remount,bind,ro /proc/sys/${key}`);
  }
  lines.push('exec "$@"', '');
  const wrapper = join(dir, 'kubelet-namespace.sh');
  await writeFile(wrapper, lines.join('\n'), { mode: 0o755 });
  return wrapper;
}

export async function startNode(
  options: {
    runtime?: NodeRuntimeName;
    /** Default `image-service`; `verifier` needs containerd. */
    deployment?: NodeDeployment;
    namespacePolicies?: (ctx: { registryHost: string; authRegistryHost: string; keyPath: string }) => Readonly<Record<string, unknown>>;
  } = {},
): Promise<NodeHarness> {
  const runtimeName = options.runtime ?? 'containerd';
  const deployment = options.deployment ?? 'image-service';
  if (deployment === 'verifier' && runtimeName !== 'containerd') throw new Error(`deployment 'verifier' needs containerd, not ${runtimeName}`);
  const unavailable = nodeUnavailableReason(runtimeName);
  if (unavailable !== undefined) throw new Error(`the node cannot run here: ${unavailable}`);
  const steps: Step[] = [];
  const startedAt = Date.now();
  const dir = await mkdtemp(join(tmpdir(), 'pullguard-node-'));
  const logDir = join(dir, 'logs');
  await mkdir(logDir, { recursive: true });
  const nodeName = NODE_NAME;
  const registryPassword = `pw-${Math.random().toString(36).slice(2, 12)}`;

  // Everything started so far, stopped in reverse order by stop() — also when start-up fails half-way.
  const cleanups: { name: string; run: () => Promise<unknown> }[] = [];
  let etcd: LoggedProcess | undefined;
  let apiserver: LoggedProcess | undefined;
  let kubelet: LoggedProcess | undefined;
  let runtime: NodeRuntime | undefined;
  let pullguard: RunningPullguard | undefined;
  const pullguardLines: string[] = [];
  let pullguardLinesSeen = 0;
  const collectPullguardLogs = (): void => {
    if (pullguard === undefined) return;
    const lines = pullguard.logs();
    pullguardLines.push(...lines.slice(pullguardLinesSeen));
    pullguardLinesSeen = lines.length;
  };

  const stopAll = async (): Promise<void> => {
    const errors: string[] = [];
    for (const cleanup of cleanups.reverse()) {
      try {
        await cleanup.run();
      } catch (err) {
        errors.push(`${cleanup.name}: ${(err as Error).message}`);
      }
    }
    cleanups.length = 0;
    if (process.env['PULLGUARD_NODE_KEEP'] === '1') console.log(`node harness: kept ${dir}`);
    else await rm(dir, { recursive: true, force: true });
    if (errors.length > 0) throw new Error(`node harness stop: ${errors.join('; ')}`);
  };

  try {
    const bin = (name: 'kubernetes' | 'etcd' | 'nodebins', program: string): string => peerBinary(name, program)!;
    // 1. Registries, lookaside, keys and PKI (independent of each other).
    const [registry, authRegistry, lookaside, signer, untrustedSigner, pki] = await timed(steps, 'registries, lookaside, GPG keys, PKI', () =>
      Promise.all([
        startRegistry(),
        startRegistry({ auth: 'htpasswd', users: { [REGISTRY_USER]: registryPassword } }),
        startLookasideServer(),
        createGpgSigner('Node Trusted Signer'),
        createGpgSigner('Node Untrusted Signer'),
        makeNodePki(join(dir, 'pki'), nodeName),
      ]),
    );
    cleanups.push({
      name: 'registries',
      run: () => Promise.all([registry.stop(), authRegistry.stop(), lookaside.stop(), signer.dispose(), untrustedSigner.dispose()]),
    });

    // 2. etcd.
    const [etcdClientPort, etcdPeerPort, apiserverPort, mirrorPort] = await Promise.all([freePort(), freePort(), freePort(), freePort()]);
    const etcdUrl = `http://127.0.0.1:${etcdClientPort}`;
    await timed(steps, `etcd ${PEERS.etcd}`, async () => {
      const peerUrl = `http://127.0.0.1:${etcdPeerPort}`;
      etcd = spawnLogged(
        'etcd',
        bin('etcd', 'etcd'),
        [
          '--name',
          'node',
          '--data-dir',
          join(dir, 'etcd'),
          '--listen-client-urls',
          etcdUrl,
          '--advertise-client-urls',
          etcdUrl,
          '--listen-peer-urls',
          peerUrl,
          '--initial-advertise-peer-urls',
          peerUrl,
          '--initial-cluster',
          `node=${peerUrl}`,
          '--unsafe-no-fsync',
          '--log-level',
          'warn',
        ],
        logDir,
      );
      const proc = etcd;
      cleanups.push({ name: 'etcd', run: () => proc.stop() });
      await waitFor(
        'etcd /health',
        async () => {
          if (proc.exited()) throw new Error(`etcd exited: ${proc.tail()}`);
          const res = await fetch(`${etcdUrl}/health`);
          const body = (await res.json()) as { health?: string };
          return body.health === 'true' ? true : undefined;
        },
        { timeoutMs: 30_000, describe: () => proc.tail() },
      );
    });

    // 3. kube-apiserver.
    const server = `https://127.0.0.1:${apiserverPort}`;
    await timed(steps, `kube-apiserver ${PEERS.kubernetes}`, async () => {
      apiserver = spawnLogged(
        'kube-apiserver',
        bin('kubernetes', 'kube-apiserver'),
        [
          '--etcd-servers',
          etcdUrl,
          '--bind-address',
          '127.0.0.1',
          '--advertise-address',
          '127.0.0.1',
          '--secure-port',
          String(apiserverPort),
          '--tls-cert-file',
          pki.apiserverCert,
          '--tls-private-key-file',
          pki.apiserverKey,
          '--client-ca-file',
          pki.caCert,
          '--service-account-issuer',
          server,
          '--service-account-key-file',
          pki.serviceAccountPub,
          '--service-account-signing-key-file',
          pki.serviceAccountKey,
          '--authorization-mode',
          'Node,RBAC',
          '--enable-admission-plugins',
          'NodeRestriction',
          // No controller manager makes the `default` ServiceAccounts this plugin would demand.
          '--disable-admission-plugins',
          'ServiceAccount',
          // The `kubernetes` Service's endpoint would be 127.0.0.1, which Endpoints validation refuses.
          '--endpoint-reconciler-type',
          'none',
          // Virtual addresses for Services, allocated in etcd only: nothing routes or sends to them
          // (no kube-proxy, hostNetwork pods). RFC 2544's benchmarking range, so no private range.
          '--service-cluster-ip-range',
          '198.18.0.0/24',
          '--profiling=false',
          '--v',
          '1',
        ],
        logDir,
      );
      const proc = apiserver;
      cleanups.push({ name: 'kube-apiserver', run: () => proc.stop() });
      await waitFor(
        'kube-apiserver /readyz',
        async () => {
          if (proc.exited()) throw new Error(`kube-apiserver exited: ${proc.tail()}`);
          const res = await apiGet(`${server}/readyz`, pki);
          return res.status === 200 ? true : undefined;
        },
        { timeoutMs: 90_000, intervalMs: 500, describe: () => proc.tail() },
      );
    });

    const adminKubeconfig = join(dir, 'admin.kubeconfig');
    await writeFile(adminKubeconfig, kubeconfigYaml(server, pki.caCert, { name: 'admin', certFile: pki.adminCert, keyFile: pki.adminKey }), { mode: 0o600 });
    const kubeConfig = new k8s.KubeConfig();
    kubeConfig.loadFromFile(adminKubeconfig);
    const core = kubeConfig.makeApiClient(k8s.CoreV1Api);

    // 4. deploy/rbac-events.yaml, exactly as shipped, and a token of its ServiceAccount for pullguard.
    const pullguardKubeconfig = join(dir, 'pullguard.kubeconfig');
    await timed(steps, 'RBAC (deploy/rbac-events.yaml) + TokenRequest', async () => {
      const objects = k8s.KubernetesObjectApi.makeApiClient(kubeConfig);
      const docs = parseAllDocuments(await readFile(join(packageRoot(), 'deploy/rbac-events.yaml'), 'utf8'));
      for (const doc of docs) {
        const object = doc.toJS() as k8s.KubernetesObject | null;
        if (object !== null) await objects.create(object);
      }
      const token = await core.createNamespacedServiceAccountToken({
        name: 'pullguard',
        namespace: 'pullguard-system',
        body: { spec: { audiences: [], expirationSeconds: 7200 } },
      });
      if (token.status?.token === undefined) throw new Error('TokenRequest returned no token');
      await writeFile(pullguardKubeconfig, kubeconfigYaml(server, pki.caCert, { name: 'pullguard', token: token.status.token }), { mode: 0o600 });
    });

    // 5. The runtime: the sandbox image from the loopback registry. containerd 2.x: both registries
    // through pullguard's mirror (image-service), or reached directly with pullguard as its image
    // verifier (verifier). CRI-O: deploy/crio/ for both registries, which it reaches itself.
    const pauseImage = `${registry.host}/pause:1`;
    await timed(steps, 'pause image (build + push)', async () => {
      const pause = await buildExecImage(join(dir, 'images', 'pause'), { tag: '1', binary: bin('nodebins', 'pause'), path: 'pause' });
      if (deployment === 'verifier') {
        // containerd's verifier judges the sandbox image too: signed by the trusted key, like any app.
        const pushed = await pushSignedImage(pause.dir, 'pause:1', registry, [signer]);
        await lookaside.writeSignature(pushed.repoPath, pushed.manifestDigest, 1, pushed.signatures[0]!);
      } else await pushImage(pause.dir, 'pause:1', registry);
    });
    const pullguardState = join(dir, 'pullguard');
    await mkdir(pullguardState, { recursive: true });
    if (runtimeName === 'containerd' && deployment === 'verifier') {
      const shimDir = join(peerBinary('containerd-shim', 'containerd-shim-runc-v2')!, '..');
      if (!(process.env['PATH'] ?? '').startsWith(`${shimDir}:`)) process.env['PATH'] = `${shimDir}:${process.env['PATH'] ?? ''}`;
      const verifierBinDir = join(dir, 'image-verifier', 'bin');
      const containerd = await timed(steps, `containerd ${PEERS.containerd} + pullguard verifier install`, async () => {
        // The script containerd runs for every pull: asks pullguard on <state>/verifier.sock, waits 59 s.
        await execFileAsync(process.execPath, [
          MAIN,
          'verifier',
          'install',
          '--bin-dir',
          verifierBinDir,
          '--state-dir',
          pullguardState,
          '--per-verifier-timeout',
          '60s',
        ]);
        return startContainerd({
          release: '2',
          sandboxImage: pauseImage,
          // containerd fetches everything itself, over plain HTTP, once the verifier allowed the digest.
          plainHttp: [registry.host, authRegistry.host],
          verifierBinDir,
          // Appended to the verifier plugin's table (README: the default 10 s is shorter than pullguard's budget).
          extraToml: '  per_verifier_timeout = "60s"',
        });
      });
      cleanups.push({ name: 'containerd', run: () => stopContainerdAndPods(containerd) });
      runtime = containerdRuntime(containerd);
    } else if (runtimeName === 'containerd') {
      const mirror = `http://127.0.0.1:${mirrorPort}`;
      // containerd finds its shim on PATH (it spawns with this process's environment): 2.x's own, not
      // Debian's 1.6 one in /usr/bin.
      const shimDir = join(peerBinary('containerd-shim', 'containerd-shim-runc-v2')!, '..');
      if (!(process.env['PATH'] ?? '').startsWith(`${shimDir}:`)) process.env['PATH'] = `${shimDir}:${process.env['PATH'] ?? ''}`;
      const containerd = await timed(steps, `containerd ${PEERS.containerd}`, () =>
        startContainerd({ release: '2', sandboxImage: pauseImage, mirrors: { [registry.host]: mirror, [authRegistry.host]: mirror } }),
      );
      cleanups.push({ name: 'containerd', run: () => stopContainerdAndPods(containerd) });
      runtime = containerdRuntime(containerd);
    } else {
      const crioLog = join(logDir, 'crio.log');
      const crio = await timed(steps, `CRI-O ${PEERS.crio}`, async () => {
        const deployed = await deployedCrioConfig(join(dir, 'crio-config'), { registry: registry.host, secondRegistry: authRegistry.host });
        return startCrio({
          ...deployed.options,
          // Runtime-fetch mode: CRI-O pulls name@<verified digest> from the (plain HTTP) registries itself.
          insecureRegistries: [registry.host, authRegistry.host],
          pauseImage,
          // buildExecImage puts the pause program at /pause (its Entrypoint).
          pauseCommand: '/pause',
          rootlessOom: true,
          // overlay: image volumes of OCI images need it (vfs refuses CRI-O's read-only image mount).
          storageDriver: 'overlay',
          logFile: crioLog,
        });
      });
      // Pods (crictl rmp on CRI-O's socket), crio by PID, conmon leftovers, mounts, its dir.
      cleanups.push({ name: 'CRI-O', run: () => crio.destroy() });
      runtime = crioRuntime(crio, crioLog);
    }
    const nodeRuntime = runtime;

    // 6. pullguard: in front of the runtime (through a pass-through that records the PullImage
    // calls), or without a backend, answering containerd's verifier on its verifier socket.
    const backendProxy = deployment === 'image-service' ? await startCriRecordingProxy(join(dir, 'backend.sock'), nodeRuntime.socketPath) : undefined;
    if (backendProxy !== undefined) cleanups.push({ name: 'backend proxy', run: () => backendProxy.close() });
    const policyDir = join(dir, 'policy');
    const namespacePolicyDir = join(policyDir, 'namespaces');
    const registriesD = join(policyDir, 'registries.d');
    await mkdir(namespacePolicyDir, { recursive: true });
    await mkdir(registriesD, { recursive: true });
    const signedBy = [{ type: 'signedBy', keyType: 'GPGKeys', keyPath: signer.publicKeyPath }];
    await writeFile(
      join(policyDir, 'policy.json'),
      JSON.stringify(
        { default: [{ type: 'reject' }], transports: { docker: { [registry.host]: signedBy, [authRegistry.host]: [{ type: 'insecureAcceptAnything' }] } } },
        null,
        2,
      ),
    );
    await writeFile(join(registriesD, 'node.yaml'), `docker:\n  ${registry.host}:\n    lookaside: ${lookaside.url}\n`);
    for (const [namespace, policy] of Object.entries(
      options.namespacePolicies?.({ registryHost: registry.host, authRegistryHost: authRegistry.host, keyPath: signer.publicKeyPath }) ?? {},
    )) {
      await writeFile(join(namespacePolicyDir, `${namespace}.json`), JSON.stringify(policy, null, 2));
    }
    // A verifier learns no credentials: pullguard reads the htpasswd registry with its own auth file.
    const authFile = join(policyDir, 'auth.json');
    if (deployment === 'verifier') {
      await writeFile(
        authFile,
        JSON.stringify({ auths: { [authRegistry.host]: { auth: Buffer.from(`${REGISTRY_USER}:${registryPassword}`).toString('base64') } } }),
        { mode: 0o600 },
      );
    }
    const pullguardArgs = [
      ...(backendProxy !== undefined
        ? ['--backend', `unix://${backendProxy.socketPath}`, '--mirror-address', `127.0.0.1:${mirrorPort}`]
        : ['--auth-file', authFile]),
      '--signature-policy',
      join(policyDir, 'policy.json'),
      '--signature-policy-dir',
      namespacePolicyDir,
      '--registries-d',
      registriesD,
      '--insecure-registry',
      registry.host,
      '--insecure-registry',
      authRegistry.host,
      '--kubeconfig',
      pullguardKubeconfig,
      '--node-name',
      nodeName,
      '--lookaside-timeout',
      '5s',
    ];
    const launchPullguard = (): Promise<RunningPullguard> => startPullguard({ stateDir: pullguardState, args: pullguardArgs });
    pullguard = await timed(steps, deployment === 'verifier' ? 'pullguard serve (verifier endpoint)' : 'pullguard serve --backend', launchPullguard);
    cleanups.push({
      name: 'pullguard',
      run: async () => {
        await pullguard?.stop({ keepState: true });
        collectPullguardLogs();
        await writeFile(join(logDir, 'pullguard.log'), `${pullguardLines.join('\n')}\n`).catch(() => undefined);
      },
    });
    const pullguardSocket = pullguard.socket;

    // 7. kubelet. Its ports are chosen only now: a free port chosen earlier could meanwhile be taken
    // by a port-0 listener of a process started since (containerd's CRI streaming server).
    const [kubeletPort, kubeletHealthzPort] = await Promise.all([freePort(), freePort()]);
    const kubeletDir = join(dir, 'kubelet');
    await mkdir(join(kubeletDir, 'pki'), { recursive: true });
    const kubeletKubeconfig = join(dir, 'kubelet.kubeconfig');
    await writeFile(
      kubeletKubeconfig,
      kubeconfigYaml(server, pki.caCert, { name: `system:node:${nodeName}`, certFile: pki.kubeletCert, keyFile: pki.kubeletKey }),
      { mode: 0o600 },
    );
    const kubeletConfig = join(dir, 'kubelet-config.yaml');
    await writeFile(
      kubeletConfig,
      stringify({
        apiVersion: 'kubelet.config.k8s.io/v1beta1',
        kind: 'KubeletConfiguration',
        address: '127.0.0.1',
        port: kubeletPort,
        readOnlyPort: 0,
        healthzBindAddress: '127.0.0.1',
        healthzPort: kubeletHealthzPort,
        authentication: { anonymous: { enabled: false }, webhook: { enabled: false }, x509: { clientCAFile: pki.caCert } },
        authorization: { mode: 'AlwaysAllow' },
        // This machine: cgroup v1 (with a separate unified mount), which 1.35+ refuse by default.
        failCgroupV1: false,
        cgroupDriver: 'cgroupfs',
        cgroupsPerQOS: false,
        enforceNodeAllocatable: [],
        failSwapOn: false,
        // Lowering oom_score_adj needs CAP_SYS_RESOURCE, which this machine lacks.
        oomScoreAdj: 0,
        containerRuntimeEndpoint: nodeRuntime.endpoint,
        imageServiceEndpoint: deployment === 'verifier' ? nodeRuntime.endpoint : `unix://${pullguardSocket}`,
        podLogsDir: join(dir, 'pod-logs'),
        volumePluginDir: join(kubeletDir, 'volume-plugins'),
        makeIPTablesUtilChains: false,
        serializeImagePulls: false,
        maxParallelImagePulls: 5,
        evictionHard: { 'memory.available': '10Mi', 'nodefs.available': '1%', 'nodefs.inodesFree': '1%', 'imagefs.available': '1%' },
        imageGCHighThresholdPercent: 100,
        imageGCLowThresholdPercent: 99,
        resolvConf: '/etc/resolv.conf',
        syncFrequency: '10s',
        nodeStatusUpdateFrequency: '5s',
        fileCheckFrequency: '20s',
        registerNode: true,
      }),
    );
    const wrapper = await kubeletWrapper(dir);
    const kubeletArgs = [
      '--mount',
      '--propagation',
      'private',
      '--',
      wrapper,
      bin('kubernetes', 'kubelet'),
      '--config',
      kubeletConfig,
      '--kubeconfig',
      kubeletKubeconfig,
      '--root-dir',
      kubeletDir,
      '--cert-dir',
      join(kubeletDir, 'pki'),
      '--hostname-override',
      nodeName,
      '--v',
      '2',
    ];
    const launchKubelet = async (): Promise<void> => {
      kubelet = spawnLogged('kubelet', '/usr/bin/unshare', kubeletArgs, logDir);
      const proc = kubelet;
      await waitFor(
        'kubelet /healthz',
        async () => {
          if (proc.exited()) throw new Error(`kubelet exited: ${proc.tail()}`);
          const res = await fetch(`http://127.0.0.1:${kubeletHealthzPort}/healthz`);
          return res.status === 200 ? true : undefined;
        },
        { timeoutMs: 60_000, intervalMs: 500, describe: () => proc.tail() },
      );
    };
    await timed(steps, `kubelet ${PEERS.kubernetes}`, async () => {
      cleanups.push({ name: 'kubelet', run: () => kubelet?.stop() ?? Promise.resolve() });
      await launchKubelet();
      await waitFor('the Node object', async () => (await core.readNode({ name: nodeName })).metadata?.name, {
        timeoutMs: 60_000,
        describe: () => kubelet?.tail() ?? '',
      });
    });
    steps.push({ name: 'total', seconds: (Date.now() - startedAt) / 1000 });

    const readPod = (namespace: string, name: string): Promise<k8s.V1Pod> => core.readNamespacedPod({ namespace, name });
    const podEvents = async (pod: k8s.V1Pod): Promise<k8s.CoreV1Event[]> => {
      const list = await core.listNamespacedEvent({ namespace: pod.metadata!.namespace!, fieldSelector: `involvedObject.uid=${pod.metadata!.uid!}` });
      return list.items.sort((a, b) => eventTime(a) - eventTime(b));
    };
    const describeState = async (namespace: string, name: string): Promise<string> => {
      try {
        const pod = await readPod(namespace, name);
        return `pod ${namespace}/${name}: ${JSON.stringify(pod.status?.containerStatuses?.map((c) => c.state) ?? pod.status?.phase)}\nkubelet log tail:\n${kubelet?.tail(3000) ?? ''}`;
      } catch (err) {
        return `pod ${namespace}/${name}: ${(err as Error).message}`;
      }
    };

    const harness: NodeHarness = {
      dir,
      nodeName,
      kubeConfig,
      core,
      registry,
      authRegistry,
      registryPassword,
      lookaside,
      signer,
      untrustedSigner,
      runtime: nodeRuntime,
      deployment,
      backendPulls: backendProxy?.pulls ?? [],
      get pullguard() {
        return pullguard!;
      },
      pullguardLogs() {
        collectPullguardLogs();
        return [...pullguardLines];
      },
      verifierAnswers() {
        collectPullguardLogs();
        return pullguardLines.flatMap((line): VerifierAnswer[] => {
          if (!line.includes('image verifier: ')) return [];
          try {
            const r = JSON.parse(line) as { verifier?: { name?: string; digest?: string }; allowed?: unknown; cached?: unknown; reason?: unknown };
            if (r.verifier?.name === undefined || typeof r.allowed !== 'boolean') return [];
            return [
              {
                name: r.verifier.name,
                digest: r.verifier.digest ?? '',
                allowed: r.allowed,
                cached: r.cached === true,
                ...(typeof r.reason === 'string' ? { reason: r.reason } : {}),
              },
            ];
          } catch {
            return [];
          }
        });
      },
      kubeletLog: () => kubelet?.log() ?? '',
      apiserverLog: () => apiserver?.log() ?? '',
      runtimeLog: () => nodeRuntime.log(),
      timings: Object.fromEntries(steps.map((s) => [s.name, s.seconds])),
      async nodeReadiness() {
        const node = await core.readNode({ name: nodeName });
        const ready = node.status?.conditions?.find((c) => c.type === 'Ready');
        return `Ready=${ready?.status} ${ready?.reason ?? ''}: ${ready?.message ?? ''}`;
      },
      image: (name, reg = registry) => `${reg.host}/${name}:v1`,
      async pushApp(name, { signers = [], registry: reg = registry, creds } = {}) {
        const built = await buildExecImage(join(dir, 'images', name), {
          tag: 'v1',
          binary: bin('nodebins', 'app'),
          path: 'app',
          env: [`PULLGUARD_APP_MESSAGE=${name}`],
          args: [name],
        });
        if (signers.length > 0) {
          const pushed = await pushSignedImage(built.dir, `${name}:v1`, reg, signers);
          return { ...built, manifestDigest: pushed.manifestDigest, signatures: pushed.signatures, repoPath: pushed.repoPath };
        }
        await pushImage(built.dir, `${name}:v1`, reg, creds !== undefined ? { creds } : {});
        return { ...built, signatures: [], repoPath: name };
      },
      async createNamespace(name) {
        await core.createNamespace({ body: { metadata: { name } } });
      },
      createPod({ namespace = 'default', name, image, pullPolicy = 'IfNotPresent', pullSecrets = [], imageVolumes = [] }) {
        return core.createNamespacedPod({
          namespace,
          body: {
            metadata: { name, namespace },
            spec: {
              nodeName,
              hostNetwork: true,
              dnsPolicy: 'Default',
              automountServiceAccountToken: false,
              enableServiceLinks: false,
              terminationGracePeriodSeconds: 2,
              ...(pullSecrets.length > 0 ? { imagePullSecrets: pullSecrets.map((s) => ({ name: s })) } : {}),
              ...(imageVolumes.length > 0 ? { volumes: imageVolumes.map((v) => ({ name: v.name, image: { reference: v.reference, pullPolicy } })) } : {}),
              containers: [
                {
                  name: 'app',
                  image,
                  imagePullPolicy: pullPolicy,
                  ...(imageVolumes.length > 0 ? { volumeMounts: imageVolumes.map((v) => ({ name: v.name, mountPath: v.mountPath, readOnly: true })) } : {}),
                },
              ],
            },
          },
        });
      },
      readPod,
      waitForRunning(namespace, name, timeoutMs = 90_000) {
        return waitFor(
          `pod ${namespace}/${name} Running`,
          async () => {
            const pod = await readPod(namespace, name);
            return pod.status?.phase === 'Running' && pod.status.containerStatuses?.every((c) => c.state?.running !== undefined) === true ? pod : undefined;
          },
          { timeoutMs, intervalMs: 500, describe: () => `(see kubelet log ${kubelet?.logPath})` },
        ).catch(async (err: Error) => {
          throw new Error(`${err.message}\n${await describeState(namespace, name)}`);
        });
      },
      waitForWaiting(namespace, name, reasons, timeoutMs = 90_000, message) {
        return waitFor(
          `pod ${namespace}/${name} waiting with ${reasons.join('|')}`,
          async () => {
            const pod = await readPod(namespace, name);
            const waiting = pod.status?.containerStatuses?.[0]?.state?.waiting;
            return waiting?.reason !== undefined && reasons.includes(waiting.reason) && (message === undefined || message.test(waiting.message ?? ''))
              ? pod
              : undefined;
          },
          { timeoutMs, intervalMs: 500 },
        ).catch(async (err: Error) => {
          throw new Error(`${err.message}\n${await describeState(namespace, name)}`);
        });
      },
      podEvents,
      waitForEvent(pod, match, what, timeoutMs = 60_000) {
        return waitFor(what, async () => (await podEvents(pod)).find(match), { timeoutMs, intervalMs: 500 }).catch(async (err: Error) => {
          const seen = (await podEvents(pod)).map((e) => `${e.type} ${e.reason}: ${e.message}`).join('\n');
          throw new Error(`${err.message}\nevents on ${pod.metadata?.name}:\n${seen}`);
        });
      },
      async describePod(namespace, name) {
        const pod = await readPod(namespace, name);
        return describePodText(pod, await podEvents(pod));
      },
      async deletePod(namespace, name) {
        await core.deleteNamespacedPod({ namespace, name, gracePeriodSeconds: 0 }).catch(() => undefined);
        await waitFor(
          `pod ${namespace}/${name} gone`,
          async () => {
            try {
              await readPod(namespace, name);
              return undefined;
            } catch {
              return true;
            }
          },
          { timeoutMs: 60_000, intervalMs: 500 },
        );
      },
      async readContainerFile(namespace, name, path) {
        const pod = await readPod(namespace, name);
        const containerId = pod.status?.containerStatuses?.[0]?.containerID?.replace(/^[a-z-]+:\/\//, '');
        if (containerId === undefined || containerId === '') throw new Error(`pod ${namespace}/${name} has no container yet`);
        const { stdout } = await execFileAsync(
          peerBinary('crictl')!,
          ['--runtime-endpoint', nodeRuntime.endpoint, '--timeout', '20s', 'inspect', containerId],
          { timeout: 60_000, maxBuffer: 16 * 1024 * 1024 },
        );
        const pid = (JSON.parse(stdout) as { info?: { pid?: number } }).info?.pid;
        if (pid === undefined || pid <= 0) throw new Error(`crictl inspect ${containerId}: no pid`);
        return readFile(`/proc/${pid}/root/${path.replace(/^\/+/, '')}`, 'utf8');
      },
      async restartPullguard({ signal = 'SIGTERM', beforeStart } = {}) {
        await pullguard?.stop({ keepState: true, signal });
        collectPullguardLogs();
        // No pullguard until the next one is up: beforeStart may read the logs (collected once only).
        pullguard = undefined;
        pullguardLinesSeen = 0;
        await beforeStart?.();
        pullguard = await launchPullguard();
      },
      async restartKubelet({ signal = 'SIGTERM' } = {}) {
        await kubelet?.stop({ signal });
        await launchKubelet();
      },
      stop: stopAll,
    };
    return harness;
  } catch (err) {
    const tails = [etcd, apiserver, kubelet].filter((p): p is LoggedProcess => p !== undefined).map((p) => `--- ${p.name} (pid ${p.pid}):\n${p.tail(3000)}`);
    if (runtime !== undefined) tails.push(`--- ${runtime.display}:\n${runtime.log().slice(-3000)}`);
    await stopAll().catch(() => undefined);
    throw new Error(`${(err as Error).message}\n${tails.join('\n')}`);
  }
}

function containerdRuntime(containerd: RunningContainerd): NodeRuntime {
  return {
    name: 'containerd',
    display: `containerd ${PEERS.containerd}`,
    endpoint: containerd.endpoint,
    socketPath: containerd.socketPath,
    imageId: (configDigest) => configDigest,
    stop: () => containerd.stop(),
    start: () => containerd.start(),
    log: () => containerd.log(),
  };
}

function crioRuntime(crio: RunningCrio, logFile: string): NodeRuntime {
  return {
    name: 'crio',
    display: `CRI-O ${PEERS.crio}`,
    endpoint: crio.endpoint,
    socketPath: crio.socketPath,
    imageId: (configDigest) => configDigest.replace(/^sha256:/, ''),
    stop: () => crio.stop(),
    start: () => crio.start(),
    log: () => {
      try {
        return readFileSync(logFile, 'utf8');
      } catch {
        return crio.log();
      }
    },
  };
}

/**
 * Stops every pod sandbox through containerd's CRI (so the shims and pod processes exit), stops
 * containerd and removes its dir; then SIGKILLs, by PID, any shim still serving that containerd.
 */
async function stopContainerdAndPods(containerd: RunningContainerd): Promise<void> {
  const crictl = peerBinary('crictl');
  if (crictl !== undefined) {
    await execFileAsync(crictl, ['--runtime-endpoint', containerd.endpoint, '--timeout', '20s', 'rmp', '--all', '--force'], { timeout: 60_000 }).catch(
      () => undefined,
    );
  }
  const shims = await shimPids(containerd.socketPath);
  await containerd.destroy();
  for (const pid of [...shims, ...(await shimPids(containerd.socketPath))]) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // gone
    }
  }
}

/** PIDs of containerd shims started by the containerd on `socketPath` (their -address names it). */
async function shimPids(socketPath: string): Promise<number[]> {
  const pids: number[] = [];
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const argv = (await readFile(`/proc/${entry}/cmdline`, 'utf8')).split('\0');
      if (argv[0]?.endsWith('containerd-shim-runc-v2') === true && argv.includes(socketPath)) pids.push(Number(entry));
    } catch {
      // exited meanwhile
    }
  }
  return pids;
}

function eventTime(e: k8s.CoreV1Event): number {
  const t = e.lastTimestamp ?? e.eventTime ?? e.firstTimestamp ?? e.metadata?.creationTimestamp;
  return t === undefined ? 0 : new Date(t as unknown as string).getTime();
}

function age(e: k8s.CoreV1Event, now: number): string {
  const seconds = Math.max(0, Math.round((now - eventTime(e)) / 1000));
  return seconds < 120 ? `${seconds}s` : `${Math.floor(seconds / 60)}m`;
}

/** The parts of `kubectl describe pod` a reader needs here: where, state, and the Events table. */
export function describePodText(pod: k8s.V1Pod, events: readonly k8s.CoreV1Event[], now = Date.now()): string {
  const lines = [
    `Name:         ${pod.metadata?.name}`,
    `Namespace:    ${pod.metadata?.namespace}`,
    `Node:         ${pod.spec?.nodeName}`,
    `Status:       ${pod.status?.phase}`,
    'Containers:',
  ];
  for (const container of pod.spec?.containers ?? []) {
    const status = pod.status?.containerStatuses?.find((c) => c.name === container.name);
    lines.push(`  ${container.name}:`, `    Image:          ${container.image}`);
    if (status?.imageID !== undefined && status.imageID !== '') lines.push(`    Image ID:       ${status.imageID}`);
    const state = status?.state;
    if (state?.running !== undefined)
      lines.push('    State:          Running', `      Started:      ${new Date(state.running.startedAt as unknown as string).toUTCString()}`);
    else if (state?.waiting !== undefined) {
      lines.push('    State:          Waiting', `      Reason:       ${state.waiting.reason}`);
      if (state.waiting.message !== undefined) lines.push(`      Message:      ${state.waiting.message}`);
    } else if (state?.terminated !== undefined) lines.push('    State:          Terminated', `      Reason:       ${state.terminated.reason}`);
    lines.push(`    Ready:          ${status?.ready === true ? 'True' : 'False'}`);
    const mounts = container.volumeMounts ?? [];
    if (mounts.length > 0) lines.push('    Mounts:', ...mounts.map((m) => `      ${m.mountPath} from ${m.name} (${m.readOnly === true ? 'ro' : 'rw'})`));
  }
  const imageVolumes = (pod.spec?.volumes ?? []).filter((v) => v.image !== undefined);
  if (imageVolumes.length > 0) {
    lines.push('Volumes:');
    for (const volume of imageVolumes) {
      lines.push(
        `  ${volume.name}:`,
        '    Type:        Image (a container image or OCI artifact)',
        `    Reference:   ${volume.image?.reference}`,
        `    PullPolicy:  ${volume.image?.pullPolicy}`,
      );
    }
  }
  lines.push('Events:');
  const rows = events.map((e) => [
    e.type ?? '',
    e.reason ?? '',
    e.count !== undefined && e.count > 1 ? `${age(e, now)} (x${e.count})` : age(e, now),
    e.source?.component ?? e.reportingComponent ?? '',
    e.message ?? '',
  ]);
  const header = ['Type', 'Reason', 'Age', 'From', 'Message'];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const format = (r: readonly string[]): string => `  ${r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]! + 2))).join('')}`.trimEnd();
  lines.push(format(header), format(header.map((h) => '-'.repeat(h.length))), ...rows.map(format));
  return lines.join('\n');
}
