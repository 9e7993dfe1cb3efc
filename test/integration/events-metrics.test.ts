/**
 * Warnings where people see them, through the real server: a pull that succeeds by partial
 * sufficiency posts a Warning Event on the pod named in sandbox_config (aggregated on repeat, and a
 * 403 from the API server never fails the pull), and the Prometheus endpoint counts outcomes and
 * troubles without leaking names or credentials.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFakeKubeApi, type FakeKubeApi } from '../helpers/fake-kube-api.js';
import { startLookasideServer, type LookasideServer } from '../helpers/lookaside-server.js';
import { buildOciImage } from '../helpers/oci-image.js';
import { startPullguard, type RunningPullguard } from '../helpers/pullguard-server.js';
import { freePort, pushImage, startRegistry, type StartedRegistry } from '../helpers/registry.js';
import { createGpgSigner, pushSignedImage, type GpgSigner, type SignedPush } from '../helpers/signed-images.js';
import { writeSigningConfig } from '../helpers/signing-config.js';

let work: string;
let registry: StartedRegistry;
let lookaside: LookasideServer;
let signer: GpgSigner;
let signed: SignedPush;
let kube: FakeKubeApi;
let pullguard: RunningPullguard;
let metricsUrl: string;

const POD = { name: 'web-0', namespace: 'shop', uid: '6f0c7a52-0000-4000-8000-000000000001' };

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'pullguard-events-'));
  [registry, lookaside, signer, kube] = await Promise.all([startRegistry(), startLookasideServer(), createGpgSigner('Events Signer'), startFakeKubeApi()]);
  const image = await buildOciImage(join(work, 'img'), { tag: 'v1', layers: [{ size: 4_000 }], seed: 61 });
  signed = await pushSignedImage(image.dir, 'web:v1', registry, signer);
  const unsigned = await buildOciImage(join(work, 'unsigned'), { tag: 'v1', layers: [{ size: 1_000 }], seed: 62 });
  await pushImage(unsigned.dir, 'unsigned:v1', registry);
  await lookaside.writeSignature(signed.repoPath, signed.manifestDigest, 1, signed.signatures[0]!);
  await lookaside.writeSignature(signed.repoPath, signed.manifestDigest, 2, signed.signatures[0]!);
  lookaside.fault(2, { html: true });
  const { policy, registriesD } = await writeSigningConfig(work, { publicKeyPath: signer.publicKeyPath, lookasideUrl: lookaside.url });
  const port = await freePort();
  metricsUrl = `http://127.0.0.1:${port}/metrics`;
  pullguard = await startPullguard({
    args: [
      '--signature-policy',
      policy,
      '--registries-d',
      registriesD,
      '--insecure-registry',
      registry.host,
      '--kubeconfig',
      kube.kubeconfigPath,
      '--node-name',
      'node-a',
      '--metrics-address',
      `127.0.0.1:${port}`,
    ],
  });
}, 120_000);

afterAll(async () => {
  await pullguard?.stop();
  await Promise.all([registry?.stop(), lookaside?.stop(), signer?.dispose(), kube?.stop()]);
  await rm(work, { recursive: true, force: true });
});

const pullAsPod = (image: string, auth?: { username: string; password: string }): Promise<unknown> =>
  pullguard.client.call('PullImage', { image: { image }, ...(auth ? { auth } : {}), sandbox_config: { metadata: { ...POD, attempt: 0 } } });

async function eventually<T>(probe: () => T | undefined, what: string): Promise<T> {
  const deadline = Date.now() + 5000;
  for (;;) {
    const value = probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

describe('pod Events and metrics from the running server', () => {
  it('says once that metrics are served, with the URL', () => {
    const lines = pullguard.logRecords().filter((r) => /metrics.*listening/.test(String(r['msg'])));
    expect(lines).toHaveLength(1);
    expect(String(lines[0]?.['url'])).toContain(new URL(metricsUrl).host);
  });
  it('posts a SignatureRetrievalDegraded Warning Event on the pod, then aggregates the repeat', async () => {
    await pullAsPod(`${registry.host}/web:v1`);
    const event = await eventually(() => [...kube.events.values()][0] as Record<string, any> | undefined, 'an event');
    expect(event).toMatchObject({
      type: 'Warning',
      reason: 'SignatureRetrievalDegraded',
      involvedObject: { apiVersion: 'v1', kind: 'Pod', ...POD },
      source: { component: 'pullguard', host: 'node-a' },
      count: 1,
    });
    expect(event['message']).toMatch(/PGW001.*signature-2/);
    expect(event['metadata'].namespace).toBe(POD.namespace);

    await pullAsPod(`${registry.host}/web:v1`);
    await eventually(() => (kube.requests.some((r) => r.method === 'PATCH') ? true : undefined), 'a PATCH');
    expect(kube.requests.filter((r) => r.method === 'POST')).toHaveLength(1);
    expect(([...kube.events.values()][0] as Record<string, unknown>)['count']).toBe(2);
  });

  it('never fails a pull because the API server refuses the Event', async () => {
    kube.failWith(403);
    try {
      await expect(pullAsPod(`${registry.host}/web:v1`, { username: 'someone', password: 'event-secret-pw' })).resolves.toMatchObject({
        image_ref: expect.stringMatching(/^sha256:/),
      });
    } finally {
      kube.failWith(undefined);
    }
  });

  it('exposes pull outcomes, verdicts and troubles as Prometheus metrics, with bounded labels and no secrets', async () => {
    await pullAsPod(`${registry.host}/unsigned:v1`).catch((e: grpc.ServiceError) => e);
    const text = await (await fetch(metricsUrl)).text();
    expect(text).toMatch(/^pullguard_pulls_total\{outcome="allowed_with_warnings"\} [1-9]/m);
    expect(text).toMatch(/^pullguard_pulls_total\{outcome="denied"\} [1-9]/m);
    expect(text).toMatch(/^pullguard_signature_troubles_total\{kind="unrecognized-format"\} [1-9]/m);
    expect(text).toMatch(/^pullguard_rpc_total\{(?=[^}]*rpc="PullImage")(?=[^}]*code="UNKNOWN")[^}]*\} [1-9]/m);
    expect(text).toMatch(/^pullguard_signature_phase_duration_seconds_count [1-9]/m);
    expect(text).not.toContain(registry.host);
    expect(text).not.toContain('event-secret-pw');
    expect(pullguard.logs().join('\n')).not.toContain('event-secret-pw');
    expect(pullguard.logs().join('\n')).not.toContain(kube.token);
  });
});
