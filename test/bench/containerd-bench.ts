/**
 * Issue 6, pullguard in front of containerd: a 4 × 64 MiB image (random, incompressible layers) in
 * the local docker-registry, pulled
 *   (a) through pullguard — PullImage on pullguard's socket in backend mode: pullguard verifies and
 *       fetches into its store, then containerd pulls the pinned digest from pullguard's local mirror;
 *   (b) by containerd directly — PullImage of the same tag reference on containerd's own CRI socket.
 * Both use the real containerd 1.6 with a fresh temp root per run (nothing already present), three
 * runs each alternating, medians and the ratio (a)/(b). Policy insecureAcceptAnything, so only the
 * transport is compared; one more (a) run with a signedBy policy and the real skopeo signature on a
 * lookaside server shows the signature phase's share.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { containerdUnavailableReason, startContainerd, type RunningContainerd } from '../helpers/containerd.js';
import { startLookasideServer } from '../helpers/lookaside-server.js';
import { freePort, startRegistry, type StartedRegistry } from '../helpers/registry.js';
import { createGpgSigner, pushSignedImage } from '../helpers/signed-images.js';
import { acceptAnythingConfig, log, makeWorkDir, pullImage, removeDir, startBenchServer, type BenchServer } from './bench-env.js';
import { buildLargeOciImage, type LargeImage } from './large-image.js';
import { printTable, type Figure, type PartResult } from './report.js';
import { median, MiB, msSince, round, timed } from './stats.js';

const RUNS = 3;
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
  /** PullImage received → every blob in pullguard's store (resolve, signature phase, fetch). */
  readonly pullguardMs: number;
  /** Then → containerd's PullImage of the pinned digest returned (fetch from the mirror, unpack). */
  readonly runtimeMs: number;
  readonly mirrorBlobBytes: number;
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

function splitByLogs(server: BenchServer, ms: number): ThroughPullguard {
  const records = server.logRecords() as LogRecord[];
  const at = (r: LogRecord | undefined): number => (r?.time !== undefined ? Date.parse(r.time) : Number.NaN);
  const done = records.find((r) => r.msg === 'PullImage ok');
  const lastBlob = records.filter((r) => r.msg === 'pull blob-done').at(-1);
  const runtimeDone = records.find((r) => r.msg === 'runtime pulled the verified digest');
  const handlerMs = done?.durationMs ?? Number.NaN;
  // The handler started durationMs before its "ok" line; its end is the runtime's answer.
  const start = at(done) - handlerMs;
  const mirrorBlobBytes = records
    .filter((r) => r.msg === 'mirror served' && r.kind === 'blob' && r.method === 'GET')
    .reduce((n, r) => n + (r.bytes ?? 0), 0);
  return { ms, pullguardMs: at(lastBlob) - start, runtimeMs: at(runtimeDone) - at(lastBlob), mirrorBlobBytes };
}

async function throughPullguard(registry: StartedRegistry, reference: string, image: LargeImage, config: PolicyConfig, expectedId: string): Promise<ThroughPullguard> {
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
    const { ms, value } = await timed(() => pullImage(s, reference, PULL_DEADLINE_MS));
    if (value !== expectedId) throw new Error(`PullImage through pullguard returned ${value}, expected ${expectedId}`);
    await new Promise((r) => setTimeout(r, 100)); // the last log lines
    const split = splitByLogs(s, ms);
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

async function containerdDirect(registry: StartedRegistry, reference: string, expectedId: string): Promise<number> {
  // The registry itself as the only host (plain HTTP): containerd resolves and fetches from it directly.
  const containerd = await startContainerd({ mirrors: { [registry.host]: registry.url } });
  try {
    const { ms, value } = await timed(() => containerd.cri.call<{ image_ref: string }>('PullImage', { image: { image: reference } }, { deadlineMs: PULL_DEADLINE_MS }));
    if (value.image_ref !== expectedId) throw new Error(`containerd PullImage returned ${value.image_ref}, expected ${expectedId}`);
    return ms;
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
    const direct: number[] = [];
    for (let run = 1; run <= RUNS; run++) {
      viaPullguard.push(await throughPullguard(registry, reference, image, acceptAnything, expectedId));
      direct.push(await containerdDirect(registry, reference, expectedId));
      const a = viaPullguard.at(-1)!;
      log(`containerd: run ${run}: through pullguard ${round(a.ms)} ms (pullguard ${round(a.pullguardMs)} + containerd from mirror ${round(a.runtimeMs)}), containerd direct ${round(direct.at(-1)!)} ms`);
    }
    log('containerd: one run through pullguard with a signedBy policy');
    const signedRun = await throughPullguard(registry, reference, image, signedBy, expectedId);

    const a = median(viaPullguard.map((r) => r.ms));
    const b = median(direct);
    const aPullguard = median(viaPullguard.map((r) => r.pullguardMs));
    const aRuntime = median(viaPullguard.map((r) => r.runtimeMs));
    const mib = image.totalBytes / MiB;
    const ms = (v: number): string => String(Math.round(v));
    console.log(`\n=== containerd (issue 6): ${LAYERS} x ${LAYER_SIZE / MiB} MiB into containerd 1.6, through pullguard vs directly; fresh containerd root each run ===`);
    printTable(
      ['path', ...Array.from({ length: RUNS }, (_, i) => `run ${i + 1} ms`), 'median ms', 'MiB/s', 'ratio'],
      [
        ['(a) PullImage via pullguard (insecureAcceptAnything)', ...viaPullguard.map((r) => ms(r.ms)), ms(a), String(round(mib / (a / 1000))), round(a / b, 2).toFixed(2)],
        ['    of which pullguard: resolve + fetch into its store', ...viaPullguard.map((r) => ms(r.pullguardMs)), ms(aPullguard), '', ''],
        ['    of which containerd: fetch from the mirror + unpack', ...viaPullguard.map((r) => ms(r.runtimeMs)), ms(aRuntime), '', ''],
        ['(b) PullImage on containerd directly', ...direct.map(ms), ms(b), String(round(mib / (b / 1000))), '1.00'],
        ['(a) with signedBy + 1 lookaside signature (1 run)', ms(signedRun.ms), '', '', ms(signedRun.ms), String(round(mib / (signedRun.ms / 1000))), round(signedRun.ms / b, 2).toFixed(2)],
        ['    of which pullguard: resolve + signatures + fetch', ms(signedRun.pullguardMs), '', '', ms(signedRun.pullguardMs), '', ''],
        ['    of which containerd: fetch from the mirror + unpack', ms(signedRun.runtimeMs), '', '', ms(signedRun.runtimeMs), '', ''],
      ],
    );
    console.log('Times are the PullImage call (servers already up); the split comes from pullguard\'s debug log timestamps (ms resolution).');

    const figures: Figure[] = [
      { name: '4x64MiB via pullguard into containerd, median', value: round(a), unit: 'ms' },
      { name: '4x64MiB containerd direct, median', value: round(b), unit: 'ms' },
      { name: '4x64MiB ratio via-pullguard/direct', value: round(a / b, 2), unit: '', target: { op: '<=', value: 1.15 } },
      { name: 'via pullguard: pullguard phase (resolve+fetch), median', value: round(aPullguard), unit: 'ms' },
      { name: 'via pullguard: containerd from mirror, median', value: round(aRuntime), unit: 'ms' },
      { name: 'via pullguard with signedBy policy (1 run)', value: round(signedRun.ms), unit: 'ms' },
      { name: 'signedBy run: pullguard phase (resolve+signatures+fetch)', value: round(signedRun.pullguardMs), unit: 'ms' },
    ];
    return {
      part: 'containerd',
      figures,
      details: {
        runs: RUNS,
        order: 'per run: via pullguard, direct; then one signedBy run',
        layers: LAYERS,
        layerBytes: LAYER_SIZE,
        compressedBytes: image.totalBytes,
        viaPullguard,
        directMs: direct,
        signedBy: signedRun,
        medianMs: { viaPullguard: a, direct: b, pullguardPhase: aPullguard, runtimePhase: aRuntime },
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
