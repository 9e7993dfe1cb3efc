/**
 * pullguard as containerd 2.x's image verifier, for real: containerd v2.x built from its Go module
 * (.ci/build-peers), its CRI plugin pulling through the transfer service, which runs the script
 * `pullguard verifier install` wrote; the real `pullguard serve` process answering on its verifier
 * socket; a real registry, real GPG signatures made by skopeo and a lookaside server with faults.
 *
 * - kubelet straight at containerd (containerd's own CRI socket): a signed image is allowed after
 *   pullguard's full signature phase and recorded; an unsigned one is blocked and containerd's error
 *   carries pullguard's denial line; signature-2 as a CDN's HTML page is allowed (partial sufficiency).
 * - the same image again, and a pull through pullguard's CRI front (which asks containerd for
 *   `name@<verified digest>`): answered from what pullguard already allowed, no second signature phase
 *   (the lookaside requests are counted).
 * - `ctr image pull` (transfer service) of an unsigned image: blocked the same way.
 * - CRI settings that send containerd back to its local pull path: the verifier never runs and an
 *   unsigned image gets through; `pullguard doctor` says so for that config and not for the good one.
 * - pullguard stopped: every pull is blocked, with a reason that says why.
 */
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { containerdUnavailableReason, startContainerd, type RunningContainerd } from '../../helpers/containerd.js';
import { startLookasideServer, type LookasideServer } from '../../helpers/lookaside-server.js';
import { buildOciImage, type BuiltImage } from '../../helpers/oci-image.js';
import { peerBinary } from '../../helpers/peers.js';
import { MAIN, startPullguard, type RunningPullguard } from '../../helpers/pullguard-server.js';
import { pushImage, startRegistry, type StartedRegistry } from '../../helpers/registry.js';
import { createGpgSigner, pushSignedImage, type GpgSigner, type SignedPush } from '../../helpers/signed-images.js';
import { writeSigningConfig } from '../../helpers/signing-config.js';

const execFileAsync = promisify(execFile);
/** Appended to the verifier plugin's table (the helper writes it last). */
const VERIFIER_TIMEOUT = '  per_verifier_timeout = "60s"';
const unavailable = containerdUnavailableReason('2');

interface ListedImage {
  readonly id: string;
  readonly repo_tags: string[];
  readonly repo_digests: string[];
}

/** `pullguard verifier install` into the test's bin dir, as an operator runs it; its stdout. */
async function installVerifierInto(binDir: string, stateDir: string, ...extra: string[]): Promise<string> {
  // Timeouts well above what a verification takes, however busy the machine (README: 60s).
  const args = [MAIN, 'verifier', 'install', '--bin-dir', binDir, '--state-dir', stateDir, '--per-verifier-timeout', '60s', ...extra];
  return (await execFileAsync(process.execPath, args)).stdout;
}

describe.skipIf(unavailable !== undefined)(`pullguard as containerd 2.x's image verifier${unavailable ? ` (skipped: ${unavailable})` : ''}`, () => {
  let work: string;
  let stateDir: string;
  let binDir: string;
  const installVerifier = (...extra: string[]): Promise<string> => installVerifierInto(binDir, stateDir, ...extra);
  let registry: StartedRegistry;
  let lookaside: LookasideServer;
  let signer: GpgSigner;
  let containerd: RunningContainerd;
  let pullguard: RunningPullguard;
  let policy: string;
  let registriesD: string;
  const signed = new Map<string, { image: BuiltImage; push: SignedPush }>();

  /** Lookaside requests for one repository's signatures so far. */
  const signatureRequests = (repo: string): number => lookaside.requests.filter((r) => r.path.startsWith(`/${repo}@`)).length;
  const verifierLines = (): Record<string, unknown>[] => pullguard.logRecords().filter((r) => r['verifier'] !== undefined && typeof r['allowed'] === 'boolean');
  const containerdPull = (image: string): Promise<{ image_ref: string }> =>
    containerd.cri.call<{ image_ref: string }>('PullImage', { image: { image } }, { deadlineMs: 45_000 });
  const pullError = async (image: string): Promise<grpc.ServiceError> => {
    const err = (await containerdPull(image).then(
      () => undefined,
      (e: grpc.ServiceError) => e,
    )) as grpc.ServiceError | undefined;
    if (err === undefined) throw new Error(`containerd pulled ${image}; it should have been blocked`);
    return err;
  };
  const inContainerd = async (repo: string): Promise<ListedImage[]> => {
    const list = await containerd.cri.call<{ images: ListedImage[] }>('ListImages', {});
    return list.images.filter((i) => [...i.repo_tags, ...i.repo_digests].some((r) => r.startsWith(`${registry.host}/${repo}`)));
  };

  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), 'pullguard-verifier-'));
    stateDir = join(work, 'state');
    binDir = join(work, 'verifiers');
    await mkdir(stateDir);
    [registry, lookaside, signer] = await Promise.all([startRegistry(), startLookasideServer(), createGpgSigner('Verifier Signer')]);
    // Each test has images of its own: lookaside requests are counted per repository.
    for (const [i, repo] of ['app', 'seed', 'front', 'late'].entries()) {
      const image = await buildOciImage(join(work, repo), {
        tag: 'v1',
        layers: [{ size: 20_000 + i * 1000 }, { files: { 'etc/motd': `${repo}\n` } }],
        seed: 300 + i,
      });
      const push = await pushSignedImage(image.dir, `${repo}:v1`, registry, signer);
      await lookaside.writeSignature(push.repoPath, push.manifestDigest, 1, push.signatures[0]!);
      signed.set(repo, { image, push });
    }
    // The seed case: signature-2 is a CDN's HTML error page; signature-1 alone satisfies the policy.
    const seed = signed.get('seed')!.push;
    await lookaside.writeSignature(seed.repoPath, seed.manifestDigest, 2, seed.signatures[0]!);
    lookaside.fault(2, { html: true }, seed.repoPath);
    for (const [i, repo] of ['unsigned', 'unsigned-ctr', 'bypassed', 'unsigned-down', 'unsigned-node'].entries()) {
      const image = await buildOciImage(join(work, repo), { tag: 'v1', layers: [{ size: 3000 + i * 100 }], seed: 320 + i });
      await pushImage(image.dir, `${repo}:v1`, registry);
    }
    ({ policy, registriesD } = await writeSigningConfig(work, { publicKeyPath: signer.publicKeyPath, lookasideUrl: lookaside.url }));

    // `pullguard verifier install` writes the script containerd runs; pullguard serve answers it.
    const installed = await installVerifier();
    expect(installed).toContain(`installed ${join(binDir, 'pullguard')} (perl, `);
    expect(installed).toContain(`): asks pullguard on ${join(stateDir, 'verifier.sock')}, waits 59 s for a verdict`);
    containerd = await startContainerd({ release: '2', plainHttp: [registry.host], verifierBinDir: binDir, extraToml: VERIFIER_TIMEOUT });
    pullguard = await startPullguard({
      stateDir,
      args: ['--signature-policy', policy, '--registries-d', registriesD, '--insecure-registry', registry.host, '--backend', containerd.endpoint],
    });
  }, 240_000);

  afterAll(async () => {
    await pullguard?.stop();
    await containerd?.destroy();
    await Promise.all([registry?.stop(), lookaside?.stop(), signer?.dispose()]);
    if (work !== undefined) await rm(work, { recursive: true, force: true });
  });

  it('kubelet straight at containerd: a signed image is allowed after pullguard ran the signature phase, and recorded', async () => {
    const { image, push } = signed.get('app')!;
    const { image_ref } = await containerdPull(`${registry.host}/app:v1`);
    expect(image_ref).toBe(image.configDigest);
    expect(signatureRequests('app')).toBeGreaterThan(0);
    const line = verifierLines().find((r) => (r['verifier'] as { name: string }).name === `${registry.host}/app:v1`);
    expect(line).toMatchObject({ allowed: true, cached: false, manifestDigest: push.manifestDigest });
    // The verification record, as for any pull: the policy, and which signature satisfied it.
    const status = await pullguard.client.call<{ image: { id: string } | null; info: Record<string, string> }>('ImageStatus', {
      image: { image: `${registry.host}/app:v1` },
      verbose: true,
    });
    expect(status.image?.id).toBe(image.configDigest);
    const record = JSON.parse(status.info['pullguard.verification'] ?? '{}') as {
      policyFile: string;
      requirements: { satisfiedBy?: { location: { index: number }; signerPrimaryKeyFingerprint: string } }[];
    };
    expect(record.policyFile).toBe(policy);
    expect(record.requirements[0]?.satisfiedBy).toMatchObject({ location: { index: 1 }, signerPrimaryKeyFingerprint: signer.fingerprint });
  });

  it("an unsigned image is blocked, and containerd's error carries pullguard's denial line", async () => {
    const err = await pullError(`${registry.host}/unsigned:v1`);
    expect(err.details).toMatch(
      /image verifier .* blocked pull of .*\/unsigned:v1 with digest sha256:[0-9a-f]{64} for reason: verifier pullguard rejected image \(exit code 1\): SignatureValidationFailed: Source image rejected: /,
    );
    expect(await inContainerd('unsigned')).toEqual([]);
    expect(verifierLines().find((r) => (r['verifier'] as { name: string }).name === `${registry.host}/unsigned:v1`)).toMatchObject({
      allowed: false,
      cached: false,
    });
  });

  it("signature-2 served as an HTML page: allowed on signature-1 alone, with the PGW001 warning in pullguard's log", async () => {
    const { image } = signed.get('seed')!;
    const { image_ref } = await containerdPull(`${registry.host}/seed:v1`);
    expect(image_ref).toBe(image.configDigest);
    expect(lookaside.requestsFor(2).some((r) => r.path.startsWith('/seed@'))).toBe(true);
    const warnings = pullguard.logRecords().filter((r) => r['warningCode'] === 'PGW001' && String(r['image']).includes('/seed:v1'));
    expect(warnings.length).toBeGreaterThan(0);
    expect(verifierLines().find((r) => (r['verifier'] as { name: string }).name === `${registry.host}/seed:v1`)).toMatchObject({
      allowed: true,
      cached: false,
    });
  });

  it("a digest pullguard already allowed is answered at once: containerd pulling it again, and pullguard's own front asking containerd for it", async () => {
    // Again straight at containerd, after removing it there: no new signature phase.
    const before = signatureRequests('app');
    const app = signed.get('app')!;
    await containerd.cri.call('RemoveImage', { image: { image: app.image.configDigest } });
    expect(await inContainerd('app')).toEqual([]);
    await containerdPull(`${registry.host}/app:v1`);
    expect(signatureRequests('app')).toBe(before);
    expect(
      verifierLines()
        .filter((r) => (r['verifier'] as { name: string }).name === `${registry.host}/app:v1`)
        .map((r) => r['cached']),
    ).toEqual([false, true]);

    // Through pullguard's CRI socket (imageServiceEndpoint): pullguard verifies, then asks containerd
    // for name@digest, whose verifier finds that pull in flight.
    const front = signed.get('front')!;
    const { image_ref } = await pullguard.client.call<{ image_ref: string }>('PullImage', { image: { image: `${registry.host}/front:v1` } });
    expect(image_ref).toBe(front.image.configDigest);
    // One signature phase: signature-1 read once (the source reads a few indices ahead, so the
    // number of later requests depends on timing; a second phase would read signature-1 again).
    expect(lookaside.requestsFor(1).filter((r) => r.path.startsWith('/front@')).length).toBe(1);
    const asked = verifierLines().filter((r) => String((r['verifier'] as { name: string }).name).startsWith(`${registry.host}/front`));
    expect(asked).toEqual([
      expect.objectContaining({
        verifier: expect.objectContaining({ name: `${registry.host}/front@${front.push.manifestDigest}` }),
        allowed: true,
        cached: true,
      }),
    ]);
    expect((await inContainerd('front')).map((i) => i.id)).toEqual([front.image.configDigest]);
  });

  it('ctr image pull (transfer service) of an unsigned image is blocked with the same reason', async () => {
    const ctr = peerBinary('containerd', 'ctr')!;
    const result = await execFileAsync(
      ctr,
      ['--address', containerd.socketPath, '--namespace', 'k8s.io', 'image', 'pull', '--plain-http', `${registry.host}/unsigned-ctr:v1`],
      { timeout: 60_000 },
    ).then(
      (r) => ({ code: 0, output: `${r.stdout}${r.stderr}` }),
      (e: { code?: number; stdout?: string; stderr?: string }) => ({ code: e.code ?? -1, output: `${e.stdout ?? ''}${e.stderr ?? ''}` }),
    );
    expect(result.code).not.toBe(0);
    expect(result.output).toMatch(/verifier pullguard rejected image \(exit code 1\): SignatureValidationFailed: Source image rejected: /);
    expect(await inContainerd('unsigned-ctr')).toEqual([]);
  });

  it("pullguard doctor reads this containerd's config: verifiers run, nothing to warn about; a longer signature budget than its timeout is found", async () => {
    const doctor = (extra: string[]): Promise<{ code: number; stdout: string }> =>
      execFileAsync(process.execPath, [
        MAIN,
        'doctor',
        '--containerd-config',
        join(containerd.dir, 'config.toml'),
        '--containerd-bin',
        peerBinary('containerd')!,
        '--state-dir',
        stateDir,
        '--signature-policy',
        policy,
        ...extra,
      ]).then(
        (r) => ({ code: 0, stdout: r.stdout }),
        (e: { code?: number; stdout?: string }) => ({ code: e.code ?? -1, stdout: e.stdout ?? '' }),
      );
    const fitting = await doctor([]);
    expect(fitting.stdout).toContain('no problems found');
    expect(fitting.code).toBe(0);
    const long = await doctor(['--signature-budget', '90s']);
    expect(
      long.stdout
        .split('\n')
        .filter((l) => l.startsWith('warning '))
        .map((l) => l.slice(8, 14)),
    ).toEqual(['PGD005']);
    expect(long.code).toBe(1);
  });

  it('CRI settings that send containerd back to its local pull path skip the verifier: an unsigned image gets through, and doctor warns', async () => {
    const fallback = await startContainerd({
      release: '2',
      plainHttp: [registry.host],
      verifierBinDir: binDir,
      // Deprecated CRI registry `configs` (here for a host nobody pulls from): containerd 2.1+ pulls without the transfer service.
      extraToml: `${VERIFIER_TIMEOUT}\n[plugins.'io.containerd.cri.v1.images'.registry.configs.'unused.invalid'.tls]\n  insecure_skip_verify = true`,
    });
    try {
      const { image_ref } = await fallback.cri.call<{ image_ref: string }>(
        'PullImage',
        { image: { image: `${registry.host}/bypassed:v1` } },
        { deadlineMs: 45_000 },
      );
      expect(image_ref).toMatch(/^sha256:/);
      expect(verifierLines().some((r) => String((r['verifier'] as { name: string }).name).includes('/bypassed'))).toBe(false);
      const report = await execFileAsync(process.execPath, [
        MAIN,
        'doctor',
        '--containerd-config',
        join(fallback.dir, 'config.toml'),
        '--state-dir',
        stateDir,
        '--signature-policy',
        policy,
      ]).then(
        () => '',
        (e: { stdout?: string }) => e.stdout ?? '',
      );
      expect(report.split('\n').filter((l) => l.startsWith('warning '))).toEqual([
        expect.stringMatching(
          /^warning PGD001: containerd: registry\.configs in the CRI images config \(.*config\.toml\) sends containerd 2\.1\+ back to its local pull path, which runs no image verifier/,
        ),
      ]);
    } finally {
      await fallback.destroy();
    }
  });

  it('the node client, where no perl is installed, gives containerd the same verdicts', async () => {
    expect(await installVerifier('--client', 'node')).toContain('(node: no perl on PATH');
    try {
      const err = await pullError(`${registry.host}/unsigned-node:v1`);
      expect(err.details).toMatch(
        /verifier pullguard rejected image \(exit code 1\): SignatureValidationFailed: Source image rejected: A signature was required, but no signature exists/,
      );
      expect(await inContainerd('unsigned-node')).toEqual([]);
      const { image } = signed.get('seed')!;
      await containerd.cri.call('RemoveImage', { image: { image: image.configDigest } });
      expect((await containerdPull(`${registry.host}/seed:v1`)).image_ref).toBe(image.configDigest);
    } finally {
      await installVerifier();
    }
  });

  it('with pullguard stopped, every pull is blocked and the reason says no daemon answers', async () => {
    await pullguard.stop({ keepState: true });
    const late = await pullError(`${registry.host}/late:v1`);
    expect(late.details).toMatch(/verifier pullguard rejected image \(exit code 2\): pullguard verifier: no pullguard daemon answers on .*verifier\.sock/);
    expect(await inContainerd('late')).toEqual([]);
    // Even an image pullguard allowed before: its verdicts live in the daemon.
    const app = signed.get('app')!;
    await containerd.cri.call('RemoveImage', { image: { image: app.image.configDigest } });
    expect((await pullError(`${registry.host}/app:v1`)).details).toContain('no pullguard daemon answers');
    expect((await pullError(`${registry.host}/unsigned-down:v1`)).details).toContain('no pullguard daemon answers');
  });
});
