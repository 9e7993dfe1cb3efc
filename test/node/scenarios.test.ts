/**
 * pullguard on a real node: kubelet's imageServiceEndpoint is pullguard, pullguard fronts the
 * container runtime, and everything is asserted through the API server (pods, their container
 * states and Events), as a user would see it. The node is test/node/harness.ts; run with
 * `npm run test:node` (test/node/vitest.config.ts). The same scenarios run twice, on a node with
 * containerd 2.x and then on one with CRI-O (one node at a time); on each, in order, the restarts
 * last. Where the runtimes differ (image ids, artifact volumes) the test names say so.
 *
 * A third node runs deployment B (README "Two deployments"): kubelet talks to containerd 2.x only
 * (imageServiceEndpoint and containerRuntimeEndpoint), and containerd runs pullguard as its image
 * verifier. A subset of the scenarios runs there, asserting what kubelet shows in that deployment.
 *
 * PULLGUARD_NODE_REPORT=FILE writes the `kubectl describe`-like text of the README pods there,
 * for each runtime that ran (the runtime named in every block).
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import * as k8sApi from '@kubernetes/client-node';
import type * as k8s from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pushArtifact } from '../helpers/oras.js';
import { peerBinary, PEERS } from '../helpers/peers.js';
import { signManifest } from '../helpers/signed-images.js';
import { nodeUnavailableReason, REGISTRY_USER, startNode, type NodeHarness, type NodeRuntimeName } from './harness.js';

const enabled = process.env['PULLGUARD_NODE_SCENARIOS'] === '1';
const RUNTIMES: readonly { name: NodeRuntimeName; display: string }[] = [
  { name: 'containerd', display: `containerd ${PEERS.containerd}` },
  { name: 'crio', display: `CRI-O ${PEERS.crio}` },
];

const OPEN_NS = 'team-open';
const STRICT_NS = 'team-strict';

function failedPullEvent(e: k8s.CoreV1Event): boolean {
  return e.reason === 'Failed' && (e.source?.component ?? e.reportingComponent) === 'kubelet' && /^Failed to pull image/.test(e.message ?? '');
}

// Both runtimes' blocks, in the order they ran; written once every node is gone.
const report: string[] = [];
afterAll(async () => {
  if (process.env['PULLGUARD_NODE_REPORT'] !== undefined && report.length > 0)
    await writeFile(process.env['PULLGUARD_NODE_REPORT'], `${report.join('\n\n')}\n`);
});

for (const { name: runtime, display: runtimeDisplay } of RUNTIMES) {
  const unavailable = enabled ? nodeUnavailableReason(runtime) : 'run with npm run test:node (PULLGUARD_NODE_SCENARIOS=1)';
  describe.skipIf(unavailable !== undefined)(`a real node: kubelet → pullguard → ${runtimeDisplay}${unavailable ? ` (skipped: ${unavailable})` : ''}`, () => {
    scenarios(runtime, runtimeDisplay);
  });
}

{
  const unavailable = enabled ? nodeUnavailableReason('containerd') : 'run with npm run test:node (PULLGUARD_NODE_SCENARIOS=1)';
  const display = `containerd ${PEERS.containerd}`;
  describe.skipIf(unavailable !== undefined)(
    `a real node: kubelet → ${display}, pullguard as its image verifier${unavailable ? ` (skipped: ${unavailable})` : ''}`,
    () => {
      verifierScenarios(display);
    },
  );
}

function scenarios(runtime: NodeRuntimeName, runtimeDisplay: string): void {
  let node: NodeHarness;
  let startedAt = 0;
  const runtimeTitle = runtime === 'crio' ? 'CRI-O' : 'containerd';

  beforeAll(async () => {
    startedAt = Date.now();
    node = await startNode({
      runtime,
      namespacePolicies: ({ registryHost, keyPath }) => ({
        [OPEN_NS]: { default: [{ type: 'insecureAcceptAnything' }] },
        [STRICT_NS]: { default: [{ type: 'reject' }], transports: { docker: { [registryHost]: [{ type: 'signedBy', keyType: 'GPGKeys', keyPath }] } } },
      }),
    });
    console.log(`node harness (${runtimeDisplay}) up: ${JSON.stringify(node.timings)}; ${await node.nodeReadiness()}`);
  }, 300_000);

  afterAll(async () => {
    const stopping = Date.now();
    await node?.stop();
    console.log(
      `node (${runtimeDisplay}): scenarios and start-up ${((stopping - startedAt) / 1000).toFixed(1)} s, stop ${((Date.now() - stopping) / 1000).toFixed(1)} s`,
    );
  }, 120_000);

  async function record(namespace: string, name: string): Promise<void> {
    const text = await node.describePod(namespace, name);
    report.push(`$ kubectl describe pod ${name}   # runtime: ${runtimeDisplay} (the status and Events part)\n${text}`);
    console.log(`[${runtimeDisplay}]\n${text}`);
  }

  it('signed image: the pod runs', async () => {
    const pushed = await node.pushApp('signed', { signers: [node.signer] });
    await node.lookaside.writeSignature(pushed.repoPath, pushed.manifestDigest, 1, pushed.signatures[0]!);
    await node.createPod({ name: 'pg-signed', image: node.image('signed') });
    const pod = await node.waitForRunning('default', 'pg-signed');
    expect(pod.status?.containerStatuses?.[0]?.imageID).toContain(pushed.manifestDigest);
    const events = await node.podEvents(pod);
    expect(events.map((e) => e.reason)).toEqual(expect.arrayContaining(['Pulling', 'Pulled', 'Created', 'Started']));
    expect(events.filter((e) => e.type === 'Warning')).toEqual([]);
    await record('default', 'pg-signed');
  });

  it('the seed case: signature-1 valid, signature-2 an HTML page → Running, with a SignatureRetrievalDegraded Warning on that pod from pullguard', async () => {
    const pushed = await node.pushApp('seed', { signers: [node.signer] });
    await node.lookaside.writeSignature(pushed.repoPath, pushed.manifestDigest, 1, pushed.signatures[0]!);
    await node.lookaside.writeSignature(pushed.repoPath, pushed.manifestDigest, 2, pushed.signatures[0]!);
    node.lookaside.fault(2, { html: true }, pushed.repoPath);
    const created = await node.createPod({ name: 'pg-seed', image: node.image('seed') });
    const pod = await node.waitForRunning('default', 'pg-seed');
    expect(pod.metadata?.uid).toBe(created.metadata?.uid);
    const event = await node.waitForEvent(pod, (e) => e.reason === 'SignatureRetrievalDegraded', 'a SignatureRetrievalDegraded Event on pg-seed');
    expect(event.type).toBe('Warning');
    expect(event.involvedObject).toMatchObject({ kind: 'Pod', namespace: 'default', name: 'pg-seed', uid: pod.metadata?.uid });
    expect(event.source).toMatchObject({ component: 'pullguard', host: node.nodeName });
    expect(event.reportingComponent).toBe('pullguard');
    expect(event.message).toMatch(/signature-2 \(http:\/\/127\.0\.0\.1:\d+\/seed@sha256=[0-9a-f]{64}\/signature-2\)/);
    expect(event.message).toMatch(/unrecognized signature format, starting with binary 0x3c/);
    expect(event.message).toMatch(/policy was satisfied/);
    // Posted with deploy/rbac-events.yaml's ServiceAccount token (the harness applies the file as
    // shipped), which may create and patch events and nothing else.
    const managers = (event.metadata?.managedFields ?? []).map((f) => f.manager);
    expect(managers).not.toContain('kubelet');
    const authz = node.kubeConfig.makeApiClient(k8sApi.AuthorizationV1Api);
    const may = async (verb: string, resource: string): Promise<boolean | undefined> =>
      (
        await authz.createSubjectAccessReview({
          body: {
            spec: {
              user: 'system:serviceaccount:pullguard-system:pullguard',
              groups: ['system:serviceaccounts', 'system:serviceaccounts:pullguard-system', 'system:authenticated'],
              resourceAttributes: { namespace: 'default', verb, resource },
            },
          },
        })
      ).status?.allowed;
    expect({
      createEvents: await may('create', 'events'),
      patchEvents: await may('patch', 'events'),
      getPods: await may('get', 'pods'),
      listEvents: await may('list', 'events'),
      getSecrets: await may('get', 'secrets'),
    }).toEqual({ createEvents: true, patchEvents: true, getPods: false, listEvents: false, getSecrets: false });
    // Only this pod got it.
    const signedPod = await node.readPod('default', 'pg-signed');
    expect((await node.podEvents(signedPod)).some((e) => e.reason === 'SignatureRetrievalDegraded')).toBe(false);
    await record('default', 'pg-seed');
  });

  it('the seed case: the Event names the signature that satisfied the policy', async () => {
    const pod = await node.readPod('default', 'pg-seed');
    const event = await node.waitForEvent(pod, (e) => e.reason === 'SignatureRetrievalDegraded', 'a SignatureRetrievalDegraded Event on pg-seed');
    // Which signature stood in for the broken one, and by which key.
    expect(event.message).toContain(`the policy was satisfied by signature-1 (key ${node.signer.fingerprint})`);
  });

  it("unsigned: the container waits with SignatureValidationFailed and kubelet's Failed Event carries pullguard's message", async () => {
    await node.pushApp('unsigned');
    await node.createPod({ name: 'pg-unsigned', image: node.image('unsigned') });
    const pod = await node.waitForWaiting('default', 'pg-unsigned', ['SignatureValidationFailed']);
    const waiting = pod.status?.containerStatuses?.[0]?.state?.waiting;
    // kubelet 1.37 rewords the container's waiting message around the part after pullguard's prefix.
    expect(waiting?.message).toBe(
      `image pull failed for ${node.image('unsigned')} because the signature validation failed: Source image rejected: A signature was required, but no signature exists`,
    );
    const failed = await node.waitForEvent(pod, failedPullEvent, "kubelet's Failed Event on pg-unsigned");
    expect(failed.type).toBe('Warning');
    // The Event carries pullguard's message as pullguard sent it.
    expect(failed.message).toBe(
      `Failed to pull image "${node.image('unsigned')}": SignatureValidationFailed: Source image rejected: A signature was required, but no signature exists`,
    );
    // Never Running, never Created.
    expect((await node.podEvents(pod)).map((e) => e.reason)).not.toContain('Started');
    await record('default', 'pg-unsigned');
  });

  it('untrusted signature-1 + HTML signature-2: the Failed Event names both', async () => {
    const pushed = await node.pushApp('untrusted', { signers: [node.untrustedSigner] });
    await node.lookaside.writeSignature(pushed.repoPath, pushed.manifestDigest, 1, pushed.signatures[0]!);
    await node.lookaside.writeSignature(pushed.repoPath, pushed.manifestDigest, 2, pushed.signatures[0]!);
    node.lookaside.fault(2, { html: true }, pushed.repoPath);
    await node.createPod({ name: 'pg-untrusted', image: node.image('untrusted') });
    const pod = await node.waitForWaiting('default', 'pg-untrusted', ['SignatureValidationFailed']);
    const failed = await node.waitForEvent(pod, failedPullEvent, "kubelet's Failed Event on pg-untrusted");
    expect(failed.message).toMatch(/SignatureValidationFailed: Source image rejected: /);
    // signature-1 is named by its key (why it was not trusted), signature-2 by its index and URL (why it could not be read).
    expect(failed.message).toContain(`signature by key ${node.untrustedSigner.fingerprint} is not accepted`);
    expect(failed.message).toMatch(
      /additionally 1 signature could not be read: signature-2 \(http:\/\/127\.0\.0\.1:\d+\/untrusted@sha256=[0-9a-f]{64}\/signature-2\): unrecognized signature format, starting with binary 0x3c \(HTTP 200, Content-Type text\/html/,
    );
    await record('default', 'pg-untrusted');
  });

  it('per-namespace policies: the same unsigned image runs in one namespace and is refused in another, pulled at the same time', async () => {
    await Promise.all([node.createNamespace(OPEN_NS), node.createNamespace(STRICT_NS)]);
    await node.pushApp('shared');
    const image = node.image('shared');
    // Always: each pod's own PullImage decides (an image already on the node is otherwise not pulled again).
    await Promise.all([
      node.createPod({ namespace: OPEN_NS, name: 'pg-shared', image, pullPolicy: 'Always' }),
      node.createPod({ namespace: STRICT_NS, name: 'pg-shared', image, pullPolicy: 'Always' }),
    ]);
    const [open, strict] = await Promise.all([
      node.waitForRunning(OPEN_NS, 'pg-shared'),
      node.waitForWaiting(STRICT_NS, 'pg-shared', ['SignatureValidationFailed']),
    ]);
    expect(open.status?.phase).toBe('Running');
    const failed = await node.waitForEvent(strict, failedPullEvent, 'the Failed Event in the strict namespace');
    expect(failed.message).toMatch(/SignatureValidationFailed: /);
    // The strict pod stays refused although the image is on the node now.
    await new Promise((r) => setTimeout(r, 3000));
    const again = await node.readPod(STRICT_NS, 'pg-shared');
    expect(again.status?.containerStatuses?.[0]?.state?.running).toBeUndefined();
  });

  it("image pull secret on an htpasswd registry: the pod's credentials reach pullguard; a wrong secret fails with the registry's answer and no credential anywhere", async () => {
    const { wrongPassword } = await createPullSecretPods(node);
    await node.waitForRunning('default', 'pg-private');
    const [nosecret, wrong] = await Promise.all([
      node.waitForWaiting('default', 'pg-private-nosecret', ['ErrImagePull', 'ImagePullBackOff']),
      node.waitForWaiting('default', 'pg-private-wrong', ['ErrImagePull', 'ImagePullBackOff']),
    ]);
    for (const pod of [nosecret, wrong]) {
      const failed = await node.waitForEvent(pod, failedPullEvent, `the Failed Event on ${pod.metadata?.name}`);
      // The registry's own answer (distribution: 401 UNAUTHORIZED "authentication required").
      expect(failed.message).toMatch(/unauthori[sz]ed|authentication required/i);
    }
    // No credential in any Event, pod status or log.
    const secrets = [
      node.registryPassword,
      wrongPassword,
      Buffer.from(`${REGISTRY_USER}:${node.registryPassword}`).toString('base64'),
      Buffer.from(`${REGISTRY_USER}:${wrongPassword}`).toString('base64'),
    ];
    const everything = [
      JSON.stringify((await node.core.listNamespacedEvent({ namespace: 'default' })).items),
      JSON.stringify(await node.readPod('default', 'pg-private-wrong')),
      ...node.pullguardLogs(),
      node.kubeletLog(),
      node.runtimeLog(),
    ].join('\n');
    for (const secret of secrets) expect(everything.includes(secret), `a credential leaked (${secret.slice(0, 4)}…)`).toBe(false);
    // The pod's credentials reached pullguard (it pulled from the htpasswd registry) and, with its
    // PullImage, the runtime: it got the AuthConfig kubelet built from the secret.
    const sha256 = (t: string): string => createHash('sha256').update(t).digest('hex');
    const toRuntime = node.backendPulls.filter((p) => p.image.startsWith(`${node.authRegistry.host}/private@sha256:`));
    expect(toRuntime.length).toBeGreaterThan(0);
    expect(toRuntime.every((p) => p.username === REGISTRY_USER && p.passwordSha256 === sha256(node.registryPassword))).toBe(true);
    // The wrong secret never got as far as the runtime: pullguard refused before forwarding.
    expect(node.backendPulls.some((p) => p.passwordSha256 === sha256(wrongPassword))).toBe(false);
    console.log(`wrong secret: ${(await node.podEvents(wrong)).filter(failedPullEvent).at(-1)?.message}`);
  });

  const artifactVolumeOutcome =
    runtime === 'containerd'
      ? 'a signed artifact is allowed, and containerd cannot mount it (containerd/containerd#11907)'
      : 'a signed artifact volume is allowed and mounted, and the pod runs';
  it(`image volumes (KEP-4639): a signed image volume → the pod runs; an unsigned OCI artifact volume → SignatureValidationFailed; ${artifactVolumeOutcome}`, async () => {
    const artifactType = { artifactType: 'application/vnd.pullguard.test.model.v1' };
    const signed = await pushArtifact(node.registry.host, 'volume-signed:v1', { 'model.bin': 'verified weights\n' }, artifactType);
    await node.lookaside.writeSignature('volume-signed', signed.digest, 1, await signManifest(node.signer, signed.manifest, node.image('volume-signed')));
    await pushArtifact(node.registry.host, 'volume-unsigned:v1', { 'model.bin': 'unverified weights\n' }, artifactType);
    const app = node.image('signed');
    const volume = (reference: string) => [{ name: 'content', reference, mountPath: '/content' }];
    await node.createPod({ name: 'pg-volume-image', image: app, imageVolumes: volume(node.image('signed')) });
    await node.createPod({ name: 'pg-volume-unsigned', image: app, imageVolumes: volume(node.image('volume-unsigned')) });
    await node.createPod({ name: 'pg-volume-artifact', image: app, imageVolumes: volume(node.image('volume-signed')) });
    await node.waitForRunning('default', 'pg-volume-image');

    const refused = await node.waitForWaiting('default', 'pg-volume-unsigned', ['SignatureValidationFailed']);
    const failed = await node.waitForEvent(
      refused,
      (e) => e.reason === 'Failed' && /volume-unsigned/.test(e.message ?? ''),
      "kubelet's Failed Event on pg-volume-unsigned",
    );
    expect(failed.message).toContain('SignatureValidationFailed: Source image rejected: A signature was required, but no signature exists');
    expect((await node.podEvents(refused)).map((e) => e.reason)).not.toContain('Started');
    await record('default', 'pg-volume-unsigned');

    if (runtime === 'containerd') {
      // pullguard verified the signed artifact and containerd pulled it; containerd 2 cannot mount an
      // artifact as a volume (containerd/containerd#11907): the container waits with its error.
      const unmountable = await node.waitForWaiting('default', 'pg-volume-artifact', ['CreateContainerError'], 90_000, /ImageVolumeMountFailed/);
      expect(unmountable.status?.containerStatuses?.[0]?.state?.waiting?.message).toContain('mismatched image rootfs and manifest layers');
      expect(node.pullguardLogs().some((l) => l.includes('PullImage ok') && l.includes('volume-signed'))).toBe(true);
      // Not a pull failure: gone before the closing check that no pod is stuck.
      await node.deletePod('default', 'pg-volume-artifact');
    } else {
      // CRI-O keeps artifacts in its artifact store and bind-mounts their files: the pod runs, and
      // its container reads the verified artifact's file at the mount path; the image volume holds
      // the image's files (CRI-O mounts images read-only: the harness runs it on overlay storage).
      const running = await node.waitForRunning('default', 'pg-volume-artifact');
      expect(node.pullguardLogs().some((l) => l.includes('PullImage ok') && l.includes('volume-signed'))).toBe(true);
      expect(await node.readContainerFile('default', 'pg-volume-artifact', '/content/model.bin')).toBe('verified weights\n');
      expect((await node.readContainerFile('default', 'pg-volume-image', '/content/app')).length).toBeGreaterThan(0);
      expect((await node.podEvents(running)).filter((e) => e.type === 'Warning')).toEqual([]);
      await record('default', 'pg-volume-artifact');
    }
  });

  it(`crictl ${PEERS.crictl} against pullguard's socket on the node: images, pull (signed / unsigned), inspecti, imagefsinfo, rmi`, async () => {
    const crictl = (...args: string[]): Promise<{ code: number; out: string }> =>
      new Promise((resolve) => {
        execFile(
          peerBinary('crictl')!,
          ['--image-endpoint', `unix://${node.pullguard.socket}`, '--timeout', '30s', ...args],
          { timeout: 60_000 },
          (err, stdout, stderr) => resolve({ code: err === null ? 0 : typeof err.code === 'number' ? err.code : 1, out: `${stdout}${stderr}` }),
        );
      });
    const signed = await node.pushApp('crictl-signed', { signers: [node.signer] });
    await node.lookaside.writeSignature(signed.repoPath, signed.manifestDigest, 1, signed.signatures[0]!);
    await node.pushApp('crictl-unsigned');
    const pulled = await crictl('pull', node.image('crictl-signed'));
    expect(pulled).toMatchObject({ code: 0 });
    // The runtime's own image id (containerd sha256:<hex>, CRI-O bare hex), as kubelet would get it.
    expect(pulled.out).toContain(`Image is up to date for ${node.runtime.imageId(signed.configDigest)}`);
    const refused = await crictl('pull', node.image('crictl-unsigned'));
    expect(refused.code).not.toBe(0);
    expect(refused.out).toContain('SignatureValidationFailed: Source image rejected: A signature was required, but no signature exists');
    const images = await crictl('images', '--digests');
    expect(images.code).toBe(0);
    expect(images.out).toMatch(new RegExp(`${node.registry.host}/crictl-signed\\s+v1\\s+${signed.manifestDigest.slice(7, 20)}`));
    expect(images.out).not.toContain('crictl-unsigned');
    const inspected = await crictl('inspecti', node.image('crictl-signed'));
    expect(inspected.code).toBe(0);
    expect(inspected.out).toContain(node.runtime.imageId(signed.configDigest));
    const fsinfo = await crictl('imagefsinfo');
    expect(fsinfo.code).toBe(0);
    expect(fsinfo.out).toMatch(/mountpoint/i);
    const removed = await crictl('rmi', node.image('crictl-signed'));
    expect(removed.code).toBe(0);
    expect((await crictl('images')).out).not.toContain('crictl-signed');
  });

  it('pullguard killed while pods are pulling: the pods end up Running', async () => {
    const names = ['slow-a', 'slow-b'];
    for (const name of names) {
      const pushed = await node.pushApp(name, { signers: [node.signer] });
      await node.lookaside.writeSignature(pushed.repoPath, pushed.manifestDigest, 1, pushed.signatures[0]!);
      // The first request of signature-1 stalls: the pulls are in flight when pullguard dies.
      node.lookaside.fault(1, { failTimes: 1, fault: { stallMs: 4000 }, then: 'serve' }, pushed.repoPath);
    }
    for (const name of names) await node.createPod({ name: `pg-${name}`, image: node.image(name) });
    await waitUntil(() => names.every((n) => node.lookaside.requests.some((r) => r.path.startsWith(`/${n}@`))), 60_000, 'both pulls reaching the lookaside');
    await node.restartPullguard({ signal: 'SIGKILL' });
    for (const name of names) await node.waitForRunning('default', `pg-${name}`, 120_000);
  });

  it('pullguard stopped (SIGTERM) while a pod is pulling: it finishes or kubelet retries, and the pod runs', async () => {
    const pushed = await node.pushApp('slow-c', { signers: [node.signer] });
    await node.lookaside.writeSignature(pushed.repoPath, pushed.manifestDigest, 1, pushed.signatures[0]!);
    node.lookaside.fault(1, { failTimes: 1, fault: { stallMs: 3000 }, then: 'serve' }, pushed.repoPath);
    await node.createPod({ name: 'pg-slow-c', image: node.image('slow-c') });
    await waitUntil(() => node.lookaside.requests.some((r) => r.path.startsWith('/slow-c@')), 60_000, 'the pull reaching the lookaside');
    await node.restartPullguard({ signal: 'SIGTERM' });
    await node.waitForRunning('default', 'pg-slow-c', 120_000);
  });

  it(`${runtimeTitle} restarted: running pods keep running, a pod created while it was down runs once it is back`, async () => {
    await node
      .pushApp('during-runtime-restart', { signers: [node.signer] })
      .then((p) => node.lookaside.writeSignature(p.repoPath, p.manifestDigest, 1, p.signatures[0]!));
    await node.runtime.stop();
    await node.createPod({ name: 'pg-during-runtime-restart', image: node.image('during-runtime-restart') });
    await new Promise((r) => setTimeout(r, 5000));
    await node.runtime.start();
    await node.waitForRunning('default', 'pg-during-runtime-restart', 150_000);
    for (const name of ['pg-signed', 'pg-seed']) expect((await node.readPod('default', name)).status?.containerStatuses?.[0]?.state?.running).toBeDefined();
  });

  it('kubelet restarted while a pod is pulling: the pod runs, the others keep running', async () => {
    const pushed = await node.pushApp('during-kubelet-restart', { signers: [node.signer] });
    await node.lookaside.writeSignature(pushed.repoPath, pushed.manifestDigest, 1, pushed.signatures[0]!);
    node.lookaside.fault(1, { failTimes: 1, fault: { stallMs: 3000 }, then: 'serve' }, pushed.repoPath);
    await node.createPod({ name: 'pg-during-kubelet-restart', image: node.image('during-kubelet-restart') });
    await waitUntil(() => node.lookaside.requests.some((r) => r.path.startsWith('/during-kubelet-restart@')), 60_000, 'the pull reaching the lookaside');
    await node.restartKubelet();
    await node.waitForRunning('default', 'pg-during-kubelet-restart', 150_000);
    for (const name of ['pg-signed', 'pg-seed']) expect((await node.readPod('default', name)).status?.containerStatuses?.[0]?.state?.running).toBeDefined();
  });

  it('after all of that, no pod is stuck: within 90 s each runs, or waits with a pull failure and its message', async () => {
    const stuckPods = async (): Promise<string[]> => {
      const stuck: string[] = [];
      for (const namespace of ['default', OPEN_NS, STRICT_NS]) {
        for (const pod of (await node.core.listNamespacedPod({ namespace })).items) {
          for (const status of pod.status?.containerStatuses ?? [{ name: '?', state: undefined } as unknown as k8s.V1ContainerStatus]) {
            const { running, waiting } = status.state ?? {};
            if (running !== undefined) continue;
            const ok =
              waiting?.reason !== undefined &&
              ['SignatureValidationFailed', 'ImagePullBackOff', 'ErrImagePull'].includes(waiting.reason) &&
              (waiting.message ?? '') !== '';
            if (!ok) stuck.push(`${namespace}/${pod.metadata?.name}: ${JSON.stringify(status.state)}`);
          }
        }
      }
      return stuck;
    };
    let stuck = await stuckPods();
    for (const deadline = Date.now() + 90_000; stuck.length > 0 && Date.now() < deadline; stuck = await stuckPods())
      await new Promise((r) => setTimeout(r, 1000));
    expect(stuck).toEqual([]);
    report.push(`node ${node.nodeName} (runtime: ${runtimeDisplay}): ${await node.nodeReadiness()}`);
  });
}

/**
 * Deployment B: kubelet → containerd 2.x (both endpoints), pullguard as containerd's image verifier.
 * containerd asks pullguard about `name@digest` after resolving the name and before fetching
 * anything; a denial is containerd's pull error, which kubelet reports as any pull failure.
 */
function verifierScenarios(runtimeDisplay: string): void {
  let node: NodeHarness;
  let startedAt = 0;
  const deploymentDisplay = `${runtimeDisplay}, pullguard as its image verifier`;
  const pullFailed = ['ErrImagePull', 'ImagePullBackOff'];

  beforeAll(async () => {
    startedAt = Date.now();
    node = await startNode({
      runtime: 'containerd',
      deployment: 'verifier',
      // Given to pullguard as in deployment A; the verifier learns no namespace, so they never apply.
      namespacePolicies: () => ({ [OPEN_NS]: { default: [{ type: 'insecureAcceptAnything' }] } }),
    });
    console.log(`node harness (${deploymentDisplay}) up: ${JSON.stringify(node.timings)}; ${await node.nodeReadiness()}`);
  }, 300_000);

  afterAll(async () => {
    const stopping = Date.now();
    await node?.stop();
    console.log(
      `node (${deploymentDisplay}): scenarios and start-up ${((stopping - startedAt) / 1000).toFixed(1)} s, stop ${((Date.now() - stopping) / 1000).toFixed(1)} s`,
    );
  }, 120_000);

  async function record(namespace: string, name: string): Promise<void> {
    const text = await node.describePod(namespace, name);
    report.push(`$ kubectl describe pod ${name}   # runtime: ${deploymentDisplay} (deployment B; the status and Events part)\n${text}`);
    console.log(`[${deploymentDisplay}]\n${text}`);
  }

  const answersFor = (image: string) => node.verifierAnswers().filter((a) => a.name === image);

  it('signed image: the pod runs; containerd asked pullguard about it, and about the sandbox (pause) image', async () => {
    const pushed = await node.pushApp('signed', { signers: [node.signer] });
    await node.lookaside.writeSignature(pushed.repoPath, pushed.manifestDigest, 1, pushed.signatures[0]!);
    await node.createPod({ name: 'pg-signed', image: node.image('signed') });
    const pod = await node.waitForRunning('default', 'pg-signed');
    expect(pod.status?.containerStatuses?.[0]?.imageID).toContain(pushed.manifestDigest);
    const events = await node.podEvents(pod);
    expect(events.map((e) => e.reason)).toEqual(expect.arrayContaining(['Pulling', 'Pulled', 'Created', 'Started']));
    expect(events.filter((e) => e.type === 'Warning')).toEqual([]);
    // The name as containerd gave it (tag included) and the digest it resolved; a full signature phase.
    expect(answersFor(node.image('signed'))).toEqual([{ name: node.image('signed'), digest: pushed.manifestDigest, allowed: true, cached: false }]);
    expect(node.lookaside.requests.some((r) => r.path.startsWith(`/signed@`))).toBe(true);
    // The sandbox image went through the verifier too (the harness signs it: the policy must accept it).
    expect(answersFor(`${node.registry.host}/pause:1`).some((a) => a.allowed)).toBe(true);
    // No CRI call reached pullguard: kubelet talks to containerd only.
    expect(node.backendPulls).toEqual([]);
    await record('default', 'pg-signed');
  });

  it("the seed case: signature-1 valid, signature-2 an HTML page → Running; PGW001 in pullguard's log, no Event on the pod", async () => {
    const pushed = await node.pushApp('seed', { signers: [node.signer] });
    await node.lookaside.writeSignature(pushed.repoPath, pushed.manifestDigest, 1, pushed.signatures[0]!);
    await node.lookaside.writeSignature(pushed.repoPath, pushed.manifestDigest, 2, pushed.signatures[0]!);
    node.lookaside.fault(2, { html: true }, pushed.repoPath);
    await node.createPod({ name: 'pg-seed', image: node.image('seed') });
    const pod = await node.waitForRunning('default', 'pg-seed');
    expect(answersFor(node.image('seed'))).toEqual([{ name: node.image('seed'), digest: pushed.manifestDigest, allowed: true, cached: false }]);
    expect(node.lookaside.requestsFor(2).some((r) => r.path.startsWith('/seed@'))).toBe(true);
    const warnings = node
      .pullguardLogs()
      .map((l) => {
        try {
          return JSON.parse(l) as Record<string, unknown>;
        } catch {
          return {};
        }
      })
      .filter((r) => r['warningCode'] === 'PGW001' && String(r['image']).includes('/seed:v1'));
    expect(warnings.length).toBeGreaterThan(0);
    // containerd's verifier tells pullguard only name@digest, no pod: pullguard has nothing to post
    // the SignatureRetrievalDegraded Event on (its pull observer returns before the event recorder
    // for a pull without a pod), so the warning is in its log and metrics only. Not a race: by the
    // time the PGW001 line is logged, the pull has ended and nothing more is queued for this image.
    const events = await node.podEvents(pod);
    expect(events.filter((e) => e.reason === 'SignatureRetrievalDegraded' || (e.source?.component ?? e.reportingComponent) === 'pullguard')).toEqual([]);
    expect(events.filter((e) => e.type === 'Warning')).toEqual([]);
    await record('default', 'pg-seed');
  });

  it("unsigned: containerd's pull fails, the container waits with ErrImagePull / ImagePullBackOff, and kubelet's Failed Event carries pullguard's denial line", async () => {
    const pushed = await node.pushApp('unsigned');
    const image = node.image('unsigned');
    await node.createPod({ name: 'pg-unsigned', image });
    const pod = await node.waitForWaiting('default', 'pg-unsigned', pullFailed);
    const failed = await node.waitForEvent(pod, failedPullEvent, "kubelet's Failed Event on pg-unsigned");
    console.log(
      `[${deploymentDisplay}] unsigned: waiting ${JSON.stringify(pod.status?.containerStatuses?.[0]?.state?.waiting)}; Failed Event: ${failed.message}`,
    );
    // containerd's pull error, as kubelet shows any pull failure (reason ErrImagePull: kubelet gives
    // SignatureValidationFailed only to an error that starts with it), with pullguard's denial line
    // as the verifier's reason.
    const containerdError = `failed to pull and unpack image "${image}": image verifier bindir blocked pull of ${image} with digest ${pushed.manifestDigest} for reason: verifier pullguard rejected image (exit code 1): SignatureValidationFailed: Source image rejected: A signature was required, but no signature exists`;
    expect(failed.type).toBe('Warning');
    expect(failed.message).toBe(`Failed to pull image "${image}": ${containerdError}`);
    const waiting = pod.status?.containerStatuses?.[0]?.state?.waiting;
    // Right after a failed attempt ErrImagePull with containerd's error; between attempts ImagePullBackOff.
    if (waiting?.reason === 'ErrImagePull') expect(waiting.message).toBe(containerdError);
    else expect(waiting?.message).toContain(`Back-off pulling image "${image}"`);
    // Every attempt (kubelet retries with back-off) is judged again, and blocked again.
    const asked = answersFor(image);
    expect(asked.length).toBeGreaterThan(0);
    for (const answer of asked)
      expect(answer).toEqual({
        name: image,
        digest: pushed.manifestDigest,
        allowed: false,
        cached: false,
        reason: 'SignatureValidationFailed: Source image rejected: A signature was required, but no signature exists',
      });
    expect((await node.podEvents(pod)).map((e) => e.reason)).not.toContain('Started');
    await record('default', 'pg-unsigned');
  });

  it('per-namespace policies do not apply: a namespace whose policy accepts anything still gets the global policy (the verifier learns no namespace)', async () => {
    await node.createNamespace(OPEN_NS);
    await node.pushApp('shared');
    const image = node.image('shared');
    await node.createPod({ namespace: OPEN_NS, name: 'pg-shared', image });
    const pod = await node.waitForWaiting(OPEN_NS, 'pg-shared', pullFailed);
    const failed = await node.waitForEvent(pod, failedPullEvent, `the Failed Event in ${OPEN_NS}`);
    expect(failed.message).toContain(
      'verifier pullguard rejected image (exit code 1): SignatureValidationFailed: Source image rejected: A signature was required, but no signature exists',
    );
  });

  it("image pull secret on an htpasswd registry: the right secret runs (pullguard reads the registry with its own auth file), a wrong one fails with the registry's answer, no credential anywhere", async () => {
    const { image, wrongPassword } = await createPullSecretPods(node);
    await node.waitForRunning('default', 'pg-private');
    const [nosecret, wrong] = await Promise.all([
      node.waitForWaiting('default', 'pg-private-nosecret', pullFailed),
      node.waitForWaiting('default', 'pg-private-wrong', pullFailed),
    ]);
    const [nosecretFailed, wrongFailed] = await Promise.all(
      [nosecret, wrong].map((pod) => node.waitForEvent(pod, failedPullEvent, `the Failed Event on ${pod.metadata?.name}`)),
    );
    console.log(`[${deploymentDisplay}] no secret: ${nosecretFailed?.message}\n[${deploymentDisplay}] wrong secret: ${wrongFailed?.message}`);
    // containerd's resolve fails before any verifier runs: without credentials, containerd's own
    // words for the registry's 401; with the wrong ones, the registry's answer.
    expect(nosecretFailed?.message).toContain(
      `failed to pull and unpack image "${image}": failed to resolve image: pull access denied, repository does not exist or may require authorization: authorization failed: no basic auth credentials`,
    );
    expect(wrongFailed?.message).toMatch(/unauthori[sz]ed|authentication required/i);
    for (const failed of [nosecretFailed, wrongFailed]) expect(failed?.message).not.toContain('image verifier');
    // containerd asked pullguard only for the pull it could resolve; pullguard read the registry with its auth file.
    const asked = answersFor(image);
    expect(asked.length).toBeGreaterThan(0);
    expect(asked.every((a) => a.allowed)).toBe(true);
    const secrets = [
      node.registryPassword,
      wrongPassword,
      Buffer.from(`${REGISTRY_USER}:${node.registryPassword}`).toString('base64'),
      Buffer.from(`${REGISTRY_USER}:${wrongPassword}`).toString('base64'),
    ];
    const everything = [
      JSON.stringify((await node.core.listNamespacedEvent({ namespace: 'default' })).items),
      JSON.stringify(await node.readPod('default', 'pg-private-wrong')),
      ...node.pullguardLogs(),
      node.kubeletLog(),
      node.runtimeLog(),
    ].join('\n');
    for (const secret of secrets) expect(everything.includes(secret), `a credential leaked (${secret.slice(0, 4)}…)`).toBe(false);
  });

  it('pullguard killed (SIGKILL) while a pod pulls: containerd blocks the pull while no pullguard answers, kubelet retries, the pod runs', async () => {
    const pushed = await node.pushApp('slow-a', { signers: [node.signer] });
    await node.lookaside.writeSignature(pushed.repoPath, pushed.manifestDigest, 1, pushed.signatures[0]!);
    // Its signature-1 stalls (every request: the lookaside counts `failTimes` per index over all
    // repositories, which earlier scenarios used up), so the verification is in flight when pullguard
    // dies; 4 s stays within pullguard's --lookaside-timeout 5s.
    node.lookaside.fault(1, { stallMs: 4000 }, pushed.repoPath);
    const created = await node.createPod({ name: 'pg-slow-a', image: node.image('slow-a') });
    await waitUntil(() => node.lookaside.requests.some((r) => r.path.startsWith('/slow-a@')), 60_000, 'the pull reaching the lookaside');
    let blocked: k8s.CoreV1Event | undefined;
    await node.restartPullguard({
      signal: 'SIGKILL',
      // Down until kubelet has seen what containerd made of it: the verifier's connection reset
      // blocks that attempt (exit code 2). Only if the verification had finished before the kill
      // (a machine so slow the 4 s stall was over) does the pull go through instead.
      beforeStart: async () => {
        const outcome = await node.waitForEvent(
          created,
          (e) => failedPullEvent(e) || e.reason === 'Pulled',
          'a Failed (or Pulled) Event on pg-slow-a while pullguard is down',
          90_000,
        );
        if (outcome.reason !== 'Pulled') blocked = outcome;
        // The next attempt, answered by the restarted pullguard, reads signature-1 at once.
        node.lookaside.fault(1, { stallMs: 0 }, pushed.repoPath);
      },
    });
    await node.waitForRunning('default', 'pg-slow-a', 120_000);
    console.log(`[${deploymentDisplay}] pullguard killed mid-verification: ${blocked?.message ?? 'the pull had been allowed before the kill'}`);
    // The verifier's connection to the killed pullguard closed without an answer: fail closed, exit 2.
    if (blocked !== undefined)
      expect(blocked.message).toMatch(
        /image verifier bindir blocked pull of \S+\/slow-a:v1 with digest sha256:[0-9a-f]{64} for reason: verifier pullguard rejected image \(exit code 2\): pullguard verifier: pullguard on \S+\/verifier\.sock closed the connection without an answer \(did it stop\?\); the pull is blocked$/,
      );
    // pullguard allowed it in the end (after a block: the restarted one, on kubelet's next attempt).
    expect(answersFor(node.image('slow-a')).some((a) => a.allowed)).toBe(true);
  });

  it('after all of that, no pod is stuck: within 90 s each runs, or waits with a pull failure and its message', async () => {
    const stuckPods = async (): Promise<string[]> => {
      const stuck: string[] = [];
      for (const namespace of ['default', OPEN_NS]) {
        for (const pod of (await node.core.listNamespacedPod({ namespace })).items) {
          for (const status of pod.status?.containerStatuses ?? [{ name: '?', state: undefined } as unknown as k8s.V1ContainerStatus]) {
            const { running, waiting } = status.state ?? {};
            if (running !== undefined) continue;
            const ok = waiting?.reason !== undefined && pullFailed.includes(waiting.reason) && (waiting.message ?? '') !== '';
            if (!ok) stuck.push(`${namespace}/${pod.metadata?.name}: ${JSON.stringify(status.state)}`);
          }
        }
      }
      return stuck;
    };
    let stuck = await stuckPods();
    for (const deadline = Date.now() + 90_000; stuck.length > 0 && Date.now() < deadline; stuck = await stuckPods())
      await new Promise((r) => setTimeout(r, 1000));
    expect(stuck).toEqual([]);
    report.push(`node ${node.nodeName} (${deploymentDisplay}): ${await node.nodeReadiness()}`);
  });
}

async function waitUntil(condition: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/**
 * The private image on the htpasswd registry, the secrets `reg-good` and `reg-wrong`, and three pods
 * pulling it: with the right secret (`pg-private`), none (`pg-private-nosecret`), the wrong one
 * (`pg-private-wrong`).
 */
async function createPullSecretPods(node: NodeHarness): Promise<{ readonly image: string; readonly wrongPassword: string }> {
  const creds = { username: REGISTRY_USER, password: node.registryPassword };
  await node.pushApp('private', { registry: node.authRegistry, creds });
  const dockerConfig = (password: string): string =>
    Buffer.from(
      JSON.stringify({
        auths: { [node.authRegistry.host]: { username: REGISTRY_USER, password, auth: Buffer.from(`${REGISTRY_USER}:${password}`).toString('base64') } },
      }),
    ).toString('base64');
  const wrongPassword = `wrong-${node.registryPassword.slice(3)}-x`;
  for (const [name, password] of [
    ['reg-good', node.registryPassword],
    ['reg-wrong', wrongPassword],
  ] as const) {
    await node.core.createNamespacedSecret({
      namespace: 'default',
      body: { metadata: { name }, type: 'kubernetes.io/dockerconfigjson', data: { '.dockerconfigjson': dockerConfig(password) } },
    });
  }
  const image = node.image('private', node.authRegistry);
  await node.createPod({ name: 'pg-private', image, pullSecrets: ['reg-good'], pullPolicy: 'Always' });
  await node.createPod({ name: 'pg-private-nosecret', image, pullPolicy: 'Always' });
  await node.createPod({ name: 'pg-private-wrong', image, pullSecrets: ['reg-wrong'], pullPolicy: 'Always' });
  return { image, wrongPassword };
}
