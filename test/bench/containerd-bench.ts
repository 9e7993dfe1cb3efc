/**
 * Issue 6, pullguard in front of containerd: a 4 × 64 MiB image (random, incompressible layers) in
 * the local docker-registry, pulled
 *   (a) through pullguard — PullImage on pullguard's socket in backend mode: pullguard verifies, asks
 *       containerd for the pinned digest as soon as the verdict allows, and fetches into its store
 *       while containerd downloads each blob from pullguard's mirror once it is verified;
 *   (b) by containerd directly — PullImage of the same tag reference on containerd's own CRI socket.
 * Both use the real containerd 1.6 with a fresh temp root per run (nothing already present), five
 * runs each alternating, medians and the ratio (a)/(b). Two floors run in the same loop: (c) is (b)
 * while a bare verifier downloads and checks the same blobs beside it, (d) containerd through a
 * proxy that only hashes each blob on its way. Policy insecureAcceptAnything, so only the
 * transport is compared; one more (a) run with a signedBy policy and the real skopeo signature on a
 * lookaside server shows the signature phase's share. CPU per process is recorded as well: on a
 * 2-core runner both paths are CPU-bound, and the extra work of a verifying copy shows there.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdir, writeFile } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { containerdUnavailableReason, startContainerd, type RunningContainerd } from '../helpers/containerd.js';
import { startLookasideServer } from '../helpers/lookaside-server.js';
import { freePort, startRegistry, type StartedRegistry } from '../helpers/registry.js';
import { createGpgSigner, pushSignedImage } from '../helpers/signed-images.js';
import { acceptAnythingConfig, log, makeWorkDir, pullImage, removeDir, startBenchServer, touchFreeMemory, type BenchServer } from './bench-env.js';
import { cpuDuring, pidsMatching } from './cpu-time.js';
import { buildLargeOciImage, type LargeImage } from './large-image.js';
import { printTable, type Figure, type PartResult } from './report.js';
import { median, MiB, msSince, round, timed } from './stats.js';

const RUNS = 5;
/** Touched right before each timed run: what one via-pullguard run writes (store, content, snapshots) with room to spare. */
const TOUCH_BYTES = 1536 * MiB;
const LAYERS = 4;
const LAYER_SIZE = 64 * MiB;
const REPO = 'bench/ctr4:v1';
const PULL_DEADLINE_MS = 600_000;

interface PolicyConfig {
  readonly policy: string;
  readonly registriesD: string;
}

/** One pull through pullguard, split by the server's own log timestamps. */
interface ThroughPullguard {
  readonly ms: number;
  /**
   * PullImage received → pullguard's last blob verified (resolve, signature phase, fetch). containerd
   * is already downloading from the mirror during this time: it is asked once the verdict allows.
   */
  readonly pullguardMs: number;
  /** Then → containerd's PullImage returned (the rest of its download from the mirror, unpack). */
  readonly runtimeMs: number;
  readonly mirrorBlobBytes: number;
  /** CPU used during the pull, per process (containerd, pullguard, registry). */
  readonly cpuMs: Record<string, number>;
}

interface LogRecord {
  readonly time?: string;
  readonly msg?: string;
  readonly rpc?: string;
  readonly durationMs?: number;
  readonly kind?: string;
  readonly method?: string;
  readonly bytes?: number;
}

function splitByLogs(server: BenchServer, ms: number): Omit<ThroughPullguard, 'cpuMs'> {
  const records = server.logRecords() as LogRecord[];
  const at = (r: LogRecord | undefined): number => (r?.time !== undefined ? Date.parse(r.time) : Number.NaN);
  const done = records.find((r) => r.msg === 'PullImage ok');
  const lastBlob = records.filter((r) => r.msg === 'pull blob-done').at(-1);
  const runtimeDone = records.find((r) => r.msg === 'runtime pulled the verified digest');
  const handlerMs = done?.durationMs ?? Number.NaN;
  // The handler started durationMs before its "ok" line; its end is the runtime's answer.
  const start = at(done) - handlerMs;
  const mirrorBlobBytes = records.filter((r) => r.msg === 'mirror served' && r.kind === 'blob' && r.method === 'GET').reduce((n, r) => n + (r.bytes ?? 0), 0);
  return { ms, pullguardMs: at(lastBlob) - start, runtimeMs: at(runtimeDone) - at(lastBlob), mirrorBlobBytes };
}

interface Direct {
  readonly ms: number;
  readonly cpuMs: Record<string, number>;
}

async function throughPullguard(
  registry: StartedRegistry,
  reference: string,
  image: LargeImage,
  config: PolicyConfig,
  expectedId: string,
): Promise<ThroughPullguard> {
  const mirrorPort = await freePort();
  let containerd: RunningContainerd | undefined;
  let server: BenchServer | undefined;
  try {
    containerd = await startContainerd({ mirrors: { [registry.host]: `http://127.0.0.1:${mirrorPort}` } });
    server = await startBenchServer({
      registryHost: registry.host,
      ...config,
      // debug adds one line per blob and mirror request (about a dozen per pull): the phase split below.
      extraArgs: ['--log-level', 'debug', '--backend', containerd.endpoint, '--mirror-address', `127.0.0.1:${mirrorPort}`],
    });
    const s = server;
    const pids = { containerd: pidsMatching(`--config ${containerd.dir}/`), pullguard: [s.process.pid ?? 0], registry: pidsMatching('docker-registry serve') };
    const {
      value: { ms, value },
      cpuMs,
    } = await cpuDuring(pids, () => timed(() => pullImage(s, reference, PULL_DEADLINE_MS)));
    if (value !== expectedId) throw new Error(`PullImage through pullguard returned ${value}, expected ${expectedId}`);
    await new Promise((r) => setTimeout(r, 100)); // the last log lines
    const split = { ...splitByLogs(s, ms), cpuMs };
    // hosts.toml lists the registry as server too: prove containerd really read the layers from the mirror.
    if (split.mirrorBlobBytes < image.totalBytes) {
      throw new Error(`containerd fetched only ${split.mirrorBlobBytes} of ${image.totalBytes} layer bytes from pullguard's mirror`);
    }
    return split;
  } finally {
    await server?.stop();
    await containerd?.destroy();
  }
}

/** containerd's own PullImage of `reference`, timed; throws unless it reports `expectedId`. */
async function timedContainerdPull(containerd: RunningContainerd, reference: string, expectedId: string): Promise<number> {
  const { ms, value } = await timed(() =>
    containerd.cri.call<{ image_ref: string }>('PullImage', { image: { image: reference } }, { deadlineMs: PULL_DEADLINE_MS }),
  );
  if (value.image_ref !== expectedId) throw new Error(`containerd PullImage returned ${value.image_ref}, expected ${expectedId}`);
  return ms;
}

/** Starts a helper script of this folder (compiled beside this file) and reads its stdout by line. */
function startBenchScript(script: string, args: readonly string[]): { child: ChildProcess; lines: AsyncIterator<string> } {
  const child = spawn(process.execPath, [join(dirname(fileURLToPath(import.meta.url)), script), ...args], { stdio: ['pipe', 'pipe', 'inherit'] });
  return { child, lines: createInterface({ input: child.stdout! })[Symbol.asyncIterator]() };
}

interface BesideVerifier extends Direct {
  /** The bare verifier's own time for all blobs. */
  readonly verifierMs: number;
}

/**
 * The floor for any verifying hop on this machine: containerd pulls directly from the registry
 * while bare-verifier.ts downloads and sha256-checks the same blobs at the same time (nothing
 * stored, nothing forwarded). A verifying front does at least this much work beside the runtime's.
 */
async function containerdBesideBareVerifier(registry: StartedRegistry, reference: string, image: LargeImage, expectedId: string): Promise<BesideVerifier> {
  const repository = REPO.slice(0, REPO.indexOf(':'));
  const blobs = [image.configDigest, ...image.layerDigests].map((digest) => `${digest}=${registry.url}/v2/${repository}/blobs/${digest}`);
  const containerd = await startContainerd({ mirrors: { [registry.host]: registry.url } });
  const { child: verifier, lines } = startBenchScript('bare-verifier.js', blobs);
  const exited = once(verifier, 'exit') as Promise<[number | null]>;
  try {
    if ((await lines.next()).value !== 'ready') throw new Error('bare verifier did not start');
    const pids = { containerd: pidsMatching(`--config ${containerd.dir}/`), registry: pidsMatching('docker-registry serve') };
    const { value, cpuMs } = await cpuDuring(pids, async () => {
      verifier.stdin!.write('go\n');
      const ms = await timedContainerdPull(containerd, reference, expectedId);
      // The verifier measures its own CPU: it may have exited before /proc could be read.
      const verified = JSON.parse(String((await lines.next()).value)) as { ms: number; cpuMs: number };
      return { ms, verified };
    });
    const [code] = await exited;
    if (code !== 0) throw new Error(`bare verifier exited with ${code}`);
    return { ms: value.ms, verifierMs: value.verified.ms, cpuMs: { ...cpuMs, verifier: value.verified.cpuMs } };
  } finally {
    verifier.kill();
    await containerd.destroy();
  }
}

/**
 * The floor for a verifying *mirror*: containerd pulls with hashing-proxy.ts as its mirror, which
 * hashes each blob on its way through and stores nothing (it even forwards bytes before checking
 * them, which pullguard does not).
 */
async function containerdThroughHashingProxy(registry: StartedRegistry, reference: string, image: LargeImage, expectedId: string): Promise<Direct> {
  const { child: proxy, lines } = startBenchScript('hashing-proxy.js', [registry.host]);
  let containerd: RunningContainerd | undefined;
  try {
    const port = Number((await lines.next()).value);
    if (!Number.isInteger(port) || port <= 0) throw new Error('hashing proxy did not start');
    let forwarded = 0;
    const counted = (async () => {
      for (let line = await lines.next(); line.done !== true; line = await lines.next()) forwarded += Number(line.value.split(' ')[2] ?? 0);
    })();
    containerd = await startContainerd({ mirrors: { [registry.host]: `http://127.0.0.1:${port}` } });
    const c = containerd;
    const pids = { containerd: pidsMatching(`--config ${c.dir}/`), registry: pidsMatching('docker-registry serve'), proxy: [proxy.pid ?? 0] };
    const { value: ms, cpuMs } = await cpuDuring(pids, () => timedContainerdPull(c, reference, expectedId));
    proxy.kill();
    await counted;
    if (forwarded < image.totalBytes) throw new Error(`containerd fetched only ${forwarded} of ${image.totalBytes} layer bytes through the hashing proxy`);
    return { ms, cpuMs };
  } finally {
    proxy.kill();
    await containerd?.destroy();
  }
}

async function containerdDirect(registry: StartedRegistry, reference: string, expectedId: string): Promise<Direct> {
  // The registry itself as the only host (plain HTTP): containerd resolves and fetches from it directly.
  const containerd = await startContainerd({ mirrors: { [registry.host]: registry.url } });
  try {
    const pids = { containerd: pidsMatching(`--config ${containerd.dir}/`), registry: pidsMatching('docker-registry serve') };
    const { value: ms, cpuMs } = await cpuDuring(pids, () => timedContainerdPull(containerd, reference, expectedId));
    return { ms, cpuMs };
  } finally {
    await containerd.destroy();
  }
}

export async function runContainerdBench(): Promise<PartResult> {
  const unavailable = containerdUnavailableReason();
  if (unavailable !== undefined) throw new Error(`containerd cannot run here: ${unavailable}`);
  const started = process.hrtime.bigint();
  const work = await makeWorkDir('containerd');
  const [registry, lookaside, signer] = await Promise.all([startRegistry(), startLookasideServer(), createGpgSigner('Bench Containerd')]);
  try {
    log(`containerd: building ${LAYERS} x ${LAYER_SIZE / MiB} MiB random layers; pushing signed`);
    const image = await buildLargeOciImage(join(work, 'layout'), { tag: 'v1', layerSizes: Array.from({ length: LAYERS }, () => LAYER_SIZE) });
    const signed = await pushSignedImage(image.dir, REPO, registry, signer);
    if (signed.manifestDigest !== image.manifestDigest) throw new Error(`skopeo pushed ${signed.manifestDigest}, the layout holds ${image.manifestDigest}`);
    await lookaside.writeSignature(signed.repoPath, signed.manifestDigest, 1, signed.signatures[0]!);
    await removeDir(image.dir);
    const reference = `${registry.host}/${REPO}`;
    const expectedId = image.configDigest;

    const acceptAnything = await acceptAnythingConfig(work);
    const signedBy = await signedByConfig(work, registry.host, signer.publicKeyPath, lookaside.url);

    const viaPullguard: ThroughPullguard[] = [];
    const directRuns: Direct[] = [];
    const floorRuns: BesideVerifier[] = [];
    const proxyRuns: Direct[] = [];
    for (let run = 1; run <= RUNS; run++) {
      await touchFreeMemory(TOUCH_BYTES);
      viaPullguard.push(await throughPullguard(registry, reference, image, acceptAnything, expectedId));
      await touchFreeMemory(TOUCH_BYTES);
      directRuns.push(await containerdDirect(registry, reference, expectedId));
      await touchFreeMemory(TOUCH_BYTES);
      floorRuns.push(await containerdBesideBareVerifier(registry, reference, image, expectedId));
      await touchFreeMemory(TOUCH_BYTES);
      proxyRuns.push(await containerdThroughHashingProxy(registry, reference, image, expectedId));
      const a = viaPullguard.at(-1)!;
      log(
        `containerd: run ${run}: through pullguard ${round(a.ms)} ms (pullguard's last blob at ${round(a.pullguardMs)}, containerd done ${round(a.runtimeMs)} later), ` +
          `containerd direct ${round(directRuns.at(-1)!.ms)} ms, beside a bare verifier ${round(floorRuns.at(-1)!.ms)} ms, through a hashing proxy ${round(proxyRuns.at(-1)!.ms)} ms`,
      );
    }
    log('containerd: one run through pullguard with a signedBy policy');
    await touchFreeMemory(TOUCH_BYTES);
    const signedRun = await throughPullguard(registry, reference, image, signedBy, expectedId);

    const direct = directRuns.map((r) => r.ms);
    const cpu = (runs: readonly { cpuMs: Record<string, number> }[], name: string): number => median(runs.map((r) => r.cpuMs[name] ?? 0));
    const cpuVia = { containerd: cpu(viaPullguard, 'containerd'), pullguard: cpu(viaPullguard, 'pullguard'), registry: cpu(viaPullguard, 'registry') };
    const cpuDirect = { containerd: cpu(directRuns, 'containerd'), registry: cpu(directRuns, 'registry') };
    const a = median(viaPullguard.map((r) => r.ms));
    const b = median(direct);
    const floor = median(floorRuns.map((r) => r.ms));
    const floorVerifier = median(floorRuns.map((r) => r.verifierMs));
    const throughProxy = median(proxyRuns.map((r) => r.ms));
    const cpuProxy = { containerd: cpu(proxyRuns, 'containerd'), registry: cpu(proxyRuns, 'registry'), proxy: cpu(proxyRuns, 'proxy') };
    const cpuFloor = { containerd: cpu(floorRuns, 'containerd'), registry: cpu(floorRuns, 'registry'), verifier: cpu(floorRuns, 'verifier') };
    const aPullguard = median(viaPullguard.map((r) => r.pullguardMs));
    const aRuntime = median(viaPullguard.map((r) => r.runtimeMs));
    const mib = image.totalBytes / MiB;
    const ms = (v: number): string => String(Math.round(v));
    const blank = Array.from({ length: RUNS - 1 }, () => '');
    console.log(
      `\n=== containerd (issue 6): ${LAYERS} x ${LAYER_SIZE / MiB} MiB into containerd 1.6, through pullguard vs directly; fresh containerd root each run ===`,
    );
    printTable(
      ['path', ...Array.from({ length: RUNS }, (_, i) => `run ${i + 1} ms`), 'median ms', 'MiB/s', 'ratio'],
      [
        [
          '(a) PullImage via pullguard (insecureAcceptAnything)',
          ...viaPullguard.map((r) => ms(r.ms)),
          ms(a),
          String(round(mib / (a / 1000))),
          round(a / b, 2).toFixed(2),
        ],
        ['    until pullguard verified its last blob', ...viaPullguard.map((r) => ms(r.pullguardMs)), ms(aPullguard), '', ''],
        ['    then containerd: rest of its download + unpack', ...viaPullguard.map((r) => ms(r.runtimeMs)), ms(aRuntime), '', ''],
        ['(b) PullImage on containerd directly', ...direct.map(ms), ms(b), String(round(mib / (b / 1000))), '1.00'],
        [
          '(c) (b) while a bare verifier downloads + sha256s the same blobs',
          ...floorRuns.map((r) => ms(r.ms)),
          ms(floor),
          String(round(mib / (floor / 1000))),
          round(floor / b, 2).toFixed(2),
        ],
        ['    the bare verifier itself', ...floorRuns.map((r) => ms(r.verifierMs)), ms(floorVerifier), '', ''],
        [
          '(d) containerd through a hashing pass-through proxy (no store)',
          ...proxyRuns.map((r) => ms(r.ms)),
          ms(throughProxy),
          String(round(mib / (throughProxy / 1000))),
          round(throughProxy / b, 2).toFixed(2),
        ],
        [
          '(a) with signedBy + 1 lookaside signature (1 run)',
          ms(signedRun.ms),
          ...blank,
          ms(signedRun.ms),
          String(round(mib / (signedRun.ms / 1000))),
          round(signedRun.ms / b, 2).toFixed(2),
        ],
        ['    until pullguard verified its last blob', ms(signedRun.pullguardMs), ...blank, ms(signedRun.pullguardMs), '', ''],
        ['    then containerd: rest of its download + unpack', ms(signedRun.runtimeMs), ...blank, ms(signedRun.runtimeMs), '', ''],
      ],
    );
    console.log(
      `CPU used per pull (medians, ms): via pullguard — containerd ${ms(cpuVia.containerd)}, pullguard ${ms(cpuVia.pullguard)}, registry ${ms(cpuVia.registry)} ` +
        `(total ${ms(cpuVia.containerd + cpuVia.pullguard + cpuVia.registry)}); direct — containerd ${ms(cpuDirect.containerd)}, registry ${ms(cpuDirect.registry)} (total ${ms(cpuDirect.containerd + cpuDirect.registry)}); ` +
        `beside the bare verifier — containerd ${ms(cpuFloor.containerd)}, registry ${ms(cpuFloor.registry)}, verifier ${ms(cpuFloor.verifier)}; through the hashing proxy — containerd ${ms(cpuProxy.containerd)}, registry ${ms(cpuProxy.registry)}, proxy ${ms(cpuProxy.proxy)}; this machine has ${availableParallelism()} CPUs.`,
    );
    console.log(
      "(c) and (d) are floors for any verifying hop in the data path here: the least extra work a verifier can do beside the runtime's own pull, and the least a verifying mirror adds.",
    );
    console.log("Times are the PullImage call (servers already up); the split comes from pullguard's debug log timestamps (ms resolution).");

    const figures: Figure[] = [
      { name: '4x64MiB via pullguard into containerd, median', value: round(a), unit: 'ms' },
      { name: '4x64MiB containerd direct, median', value: round(b), unit: 'ms' },
      { name: '4x64MiB ratio via-pullguard/direct', value: round(a / b, 2), unit: '', target: { op: '<=', value: 1.15 } },
      { name: 'floor: containerd direct beside a bare download+sha256 verifier / direct', value: round(floor / b, 2), unit: '' },
      { name: 'floor: containerd through a hashing pass-through proxy / direct', value: round(throughProxy / b, 2), unit: '' },
      {
        name: 'via pullguard / floor (d) (what checking before the runtime sees a byte, and storing, add to a bare verifying mirror)',
        value: round(a / throughProxy, 2),
        unit: '',
      },
      { name: 'via pullguard: until pullguard verified its last blob, median', value: round(aPullguard), unit: 'ms' },
      { name: 'via pullguard: then containerd (rest of download + unpack), median', value: round(aRuntime), unit: 'ms' },
      {
        name: 'CPU per pull via pullguard (containerd + pullguard + registry), median',
        value: round(cpuVia.containerd + cpuVia.pullguard + cpuVia.registry),
        unit: 'ms',
      },
      { name: 'CPU per pull direct (containerd + registry), median', value: round(cpuDirect.containerd + cpuDirect.registry), unit: 'ms' },
      { name: 'via pullguard with signedBy policy (1 run)', value: round(signedRun.ms), unit: 'ms' },
      { name: 'signedBy run: until pullguard verified its last blob', value: round(signedRun.pullguardMs), unit: 'ms' },
    ];
    return {
      part: 'containerd',
      figures,
      details: {
        runs: RUNS,
        order: 'per run: via pullguard, direct, direct beside a bare verifier, through a hashing proxy; then one signedBy run',
        layers: LAYERS,
        layerBytes: LAYER_SIZE,
        compressedBytes: image.totalBytes,
        viaPullguard,
        directMs: direct,
        besideBareVerifier: floorRuns,
        throughHashingProxy: proxyRuns,
        cpuMs: { viaPullguard: cpuVia, direct: cpuDirect, besideBareVerifier: cpuFloor, throughHashingProxy: cpuProxy },
        signedBy: signedRun,
        medianMs: {
          viaPullguard: a,
          direct: b,
          besideBareVerifier: floor,
          throughHashingProxy: throughProxy,
          pullguardPhase: aPullguard,
          runtimePhase: aRuntime,
        },
      },
      seconds: round(msSince(started) / 1000),
    };
  } finally {
    await Promise.all([registry.stop(), lookaside.stop(), signer.dispose()]);
    await removeDir(work);
  }
}

/** signedBy the signer's key for the registry, signatures from the lookaside server. */
async function signedByConfig(work: string, registryHost: string, keyPath: string, lookasideUrl: string): Promise<PolicyConfig> {
  const policy = join(work, 'signed-by-policy.json');
  await writeFile(
    policy,
    JSON.stringify({
      default: [{ type: 'reject' }],
      transports: { docker: { [registryHost]: [{ type: 'signedBy', keyType: 'GPGKeys', keyPath }] } },
    }),
  );
  const registriesD = join(work, 'registries.d-lookaside');
  await mkdir(registriesD, { recursive: true });
  await writeFile(join(registriesD, 'lookaside.yaml'), `docker:\n  ${registryHost}:\n    lookaside: ${lookasideUrl}\n`);
  return { policy, registriesD };
}
