/**
 * Re-pulls of an image already verified, as kubelet's ensure-secret-pulled-images check (KEP-2535)
 * sends them: the real `pullguard serve`, a real registry with htpasswd, an image signed by real
 * skopeo and gpg, and the lookaside served over HTTP. The registry is asked with each re-pull's own
 * credentials; the verdict comes from the cache until the configuration is reloaded.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startLookasideServer, type LookasideServer } from '../helpers/lookaside-server.js';
import { buildOciImage } from '../helpers/oci-image.js';
import { startPullguard, type RunningPullguard } from '../helpers/pullguard-server.js';
import { freePort, startRegistry, type StartedRegistry } from '../helpers/registry.js';
import { createGpgSigner, pushSignedImage, type GpgSigner } from '../helpers/signed-images.js';
import { writeSigningConfig } from '../helpers/signing-config.js';

const ALICE = { username: 'alice', password: 's3cret-alice' };

let work: string;
let registry: StartedRegistry;
let lookaside: LookasideServer;
let signer: GpgSigner;
let stranger: GpgSigner;
let image: string;
let manifestDigest: string;

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'pullguard-repull-'));
  [registry, lookaside, signer, stranger] = await Promise.all([
    startRegistry({ auth: 'htpasswd', users: { alice: ALICE.password } }),
    startLookasideServer(),
    createGpgSigner('Re-pull Signer'),
    createGpgSigner('Re-pull Stranger'),
  ]);
  const built = await buildOciImage(join(work, 'img'), { tag: 'v1', layers: [{ size: 4_000 }], seed: 71 });
  const pushed = await pushSignedImage(built.dir, 'team/app:v1', registry, signer, { creds: ALICE });
  manifestDigest = pushed.manifestDigest;
  await lookaside.writeSignature(pushed.repoPath, pushed.manifestDigest, 1, pushed.signatures[0]!);
  image = `${registry.host}/team/app:v1`;
}, 180_000);

afterAll(async () => {
  await Promise.all([registry?.stop(), lookaside?.stop(), signer?.dispose(), stranger?.dispose()]);
  await rm(work, { recursive: true, force: true });
});

type PullAnswer = { ok: true; imageRef: string } | { ok: false; error: grpc.ServiceError };

function pull(server: RunningPullguard, auth: { username: string; password: string } | undefined, namespace?: string): Promise<PullAnswer> {
  const sandbox = namespace !== undefined ? { sandbox_config: { metadata: { name: 'pod-0', uid: 'uid-0', namespace } } } : {};
  return server.client.call<{ image_ref: string }>('PullImage', { image: { image }, ...sandbox, ...(auth !== undefined ? { auth } : {}) }).then(
    (r) => ({ ok: true, imageRef: r.image_ref }),
    (error: grpc.ServiceError) => ({ ok: false, error }),
  );
}

const signatureReads = (): number => lookaside.requests.filter((r) => r.path.includes(manifestDigest.replace(':', '='))).length;

async function metric(url: string, line: string): Promise<number> {
  const text = await (await fetch(url)).text();
  const found = text.split('\n').find((l) => l.startsWith(`${line} `));
  return found === undefined ? 0 : Number(found.slice(line.length + 1));
}

async function startServer(
  policyKey: string,
  extra: string[] = [],
): Promise<{ server: RunningPullguard; policy: string; registriesD: string; metricsUrl: string }> {
  const dir = await mkdtemp(join(work, 'cfg-'));
  const { policy, registriesD } = await writeSigningConfig(dir, { publicKeyPath: policyKey, lookasideUrl: lookaside.url, scope: registry.host });
  const port = await freePort();
  const server = await startPullguard({
    args: [
      '--signature-policy',
      policy,
      '--registries-d',
      registriesD,
      '--insecure-registry',
      registry.host,
      '--metrics-address',
      `127.0.0.1:${port}`,
      ...extra,
    ],
  });
  return { server, policy, registriesD, metricsUrl: `http://127.0.0.1:${port}/metrics` };
}

async function waitForLog(server: RunningPullguard, text: string, after: number): Promise<number> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const index = server.logs().findIndex((l, i) => i >= after && l.includes(text));
    if (index !== -1) return index;
    if (Date.now() > deadline) throw new Error(`no log line containing ${JSON.stringify(text)}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

async function verificationRecord(server: RunningPullguard): Promise<Record<string, unknown>> {
  const status = await server.client.call<{ info: Record<string, string> }>('ImageStatus', { image: { image }, verbose: true });
  return JSON.parse(status.info['verification']!) as Record<string, unknown>;
}

describe('re-pulls of a verified image (kubelet ensure-secret-pulled-images)', () => {
  it("asks the registry with each re-pull's credentials but reads no signature again; a wrong secret fails as the registry says", async () => {
    const { server, metricsUrl } = await startServer(signer.publicKeyPath);
    try {
      const first = await pull(server, ALICE);
      expect(first.ok).toBe(true);
      const readsAfterFirst = signatureReads();
      expect(readsAfterFirst).toBeGreaterThan(0);
      const firstRecord = await verificationRecord(server);
      expect(firstRecord['decision']).toMatchObject({ cached: false, trustRevision: 1 });

      const again = await pull(server, ALICE);
      expect(again).toEqual(first);
      expect(signatureReads()).toBe(readsAfterFirst);
      // Nothing new to record: the record still says when, and under which revision, the verdict was made.
      expect(await verificationRecord(server)).toEqual(firstRecord);

      // A re-pull for another namespace under the same policy: the cached verdict, recorded for that namespace.
      const otherNamespace = await pull(server, ALICE, 'team-b');
      expect(otherNamespace).toEqual(first);
      expect(signatureReads()).toBe(readsAfterFirst);
      const record = await verificationRecord(server);
      const decision = record['decision'] as { decidedAt: string; cached: boolean; trustRevision: number; trustLoadedAt: string };
      expect(record['namespace']).toBe('team-b');
      expect(decision).toMatchObject({ cached: true, trustRevision: 1, decidedAt: (firstRecord['decision'] as { decidedAt: string }).decidedAt });
      expect(Date.parse(record['time'] as string)).toBeGreaterThanOrEqual(Date.parse(decision.decidedAt));

      // The verdict is cached, but the registry must still say no to a wrong secret, and to none.
      const wrong = await pull(server, { username: 'alice', password: 'not-the-secret' });
      expect(wrong.ok).toBe(false);
      if (!wrong.ok) {
        expect(wrong.error.details).toMatch(/unauthori[sz]ed|authentication required|401/i);
        expect(wrong.error.details).not.toContain('not-the-secret');
      }
      const anonymous = await pull(server, undefined);
      expect(anonymous.ok).toBe(false);
      expect(signatureReads()).toBe(readsAfterFirst);
      for (const line of server.logs()) expect(line).not.toContain('not-the-secret');

      expect(await metric(metricsUrl, 'pullguard_verdict_cache_total{result="hit"}')).toBe(2);
      expect(await metric(metricsUrl, 'pullguard_verdict_cache_total{result="miss"}')).toBe(1);
    } finally {
      await server.stop();
    }
  });

  it('with --verdict-cache-ttl 0, every re-pull reads the signatures again', async () => {
    const { server } = await startServer(signer.publicKeyPath, ['--verdict-cache-ttl', '0']);
    try {
      expect((await pull(server, ALICE)).ok).toBe(true);
      const reads = signatureReads();
      expect((await pull(server, ALICE)).ok).toBe(true);
      expect(signatureReads()).toBeGreaterThan(reads);
      expect((await verificationRecord(server))['decision']).toMatchObject({ cached: false });
    } finally {
      await server.stop();
    }
  });

  it('verifies again after a reload (SIGHUP), and no re-pull that starts after the reload answers from the old revision', async () => {
    const { server, policy, registriesD } = await startServer(signer.publicKeyPath);
    try {
      expect((await pull(server, ALICE)).ok).toBe(true);
      expect((await pull(server, ALICE)).ok).toBe(true);
      const reads = signatureReads();

      // Re-pulls keep coming while the policy changes to trust another key and pullguard reloads.
      const answers: { startedAfterReload: boolean; answer: PullAnswer }[] = [];
      let reloaded = false;
      let stop = false;
      const repuller = async (): Promise<void> => {
        while (!stop) {
          const startedAfterReload = reloaded;
          answers.push({ startedAfterReload, answer: await pull(server, ALICE) });
        }
      };
      const repullers = [repuller(), repuller(), repuller()];
      await new Promise((r) => setTimeout(r, 100));
      await writeSigningConfig(join(policy, '..'), { publicKeyPath: stranger.publicKeyPath, lookasideUrl: lookaside.url, scope: registry.host });
      expect(join(policy, '..', 'registries.d')).toBe(registriesD);
      const logsBefore = server.logs().length;
      server.process.kill('SIGHUP');
      await waitForLog(server, 'configuration reloaded', logsBefore);
      reloaded = true;
      await new Promise((r) => setTimeout(r, 300));
      stop = true;
      await Promise.all(repullers);

      const after = answers.filter((a) => a.startedAfterReload);
      expect(after.length).toBeGreaterThan(0);
      for (const { answer } of after) {
        expect(answer.ok).toBe(false);
        if (!answer.ok) expect(answer.error.details).toMatch(/^SignatureValidationFailed: /);
      }
      expect(signatureReads()).toBeGreaterThan(reads);
      const denied = await pull(server, ALICE);
      expect(denied.ok).toBe(false);
    } finally {
      await server.stop();
    }
  });
});
