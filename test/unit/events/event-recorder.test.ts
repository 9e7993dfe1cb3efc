import { readFile, writeFile } from 'node:fs/promises';
import { Writable } from 'node:stream';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createEventRecorder, type EventRecorder, type EventRecorderOptions } from '../../../src/events/event-recorder.js';
import { boundMessage, describePullWarnings, eventName } from '../../../src/events/event-object.js';
import { createLogger } from '../../../src/log/logger.js';
import { createPullguardMetrics } from '../../../src/metrics/pullguard-metrics.js';
import { startFakeKubeApi, type FakeKubeApi } from '../../helpers/fake-kube-api.js';

const logLines: string[] = [];
/** Never cleared: scanned for the token after the last test. */
const allLogLines: string[] = [];
const logger = createLogger({
  level: 'trace',
  destination: new Writable({
    write(chunk: Buffer, _encoding, done) {
      const lines = chunk
        .toString()
        .split('\n')
        .filter((l) => l !== '');
      logLines.push(...lines);
      allLogLines.push(...lines);
      done();
    },
  }),
});
const logs = (): Record<string, unknown>[] => logLines.map((l) => JSON.parse(l) as Record<string, unknown>);

let api: FakeKubeApi;
const tokensSeen: string[] = [];
beforeAll(async () => {
  api = await startFakeKubeApi();
  tokensSeen.push(api.token);
});
afterAll(async () => {
  await api.stop();
  // Every log line of the whole file, including failures, connection errors and bad kubeconfigs.
  expect(allLogLines.length).toBeGreaterThan(10);
  expect(allLogLines.some((line) => line.includes('"status":403'))).toBe(true);
  for (const token of tokensSeen) {
    expect(allLogLines.filter((line) => line.includes(token))).toEqual([]);
    expect(allLogLines.join('\n')).not.toContain(token.slice(-16));
  }
});

const START = new Date('2025-03-01T10:00:00.123Z');
let now: Date;
const clock = (): Date => now;
const advance = (ms: number): void => {
  now = new Date(now.getTime() + ms);
};

const recorders: EventRecorder[] = [];
beforeEach(() => {
  now = START;
  api.requests.length = 0;
  api.deleteAll();
  api.failWith(undefined);
  api.stall(undefined);
  logLines.length = 0;
});

async function recorder(extra: Partial<EventRecorderOptions> = {}): Promise<{ recorder: EventRecorder; metrics: ReturnType<typeof createPullguardMetrics> }> {
  const metrics = createPullguardMetrics();
  const created = await createEventRecorder({
    logger,
    nodeName: 'node-1',
    kubeconfigPath: api.kubeconfigPath,
    clock,
    outcomes: metrics,
    ...extra,
  });
  recorders.push(created);
  return { recorder: created, metrics };
}
afterAll(async () => {
  await Promise.all(recorders.map((r) => r.close()));
});

const pod = { name: 'web-0', namespace: 'team-a', uid: '6f1d0c1e-1b7a-4c55-9a57-1f2b3c4d5e6f' };
const warning = {
  reason: 'SignatureRetrievalDegraded' as const,
  message: 'PGW001: signature-2 could not be read (timeout); accepted signature-1 by key 0123ABCD',
  image: 'registry.example/team/app:1.0',
};

describe('createEventRecorder against a fake API server', () => {
  it('posts a core/v1 Warning Event on the pod, with the bearer token, after warn() returned', async () => {
    const { recorder: events, metrics } = await recorder();
    const returned = events.warn(pod, warning);
    expect(returned).toBeUndefined();
    expect(api.requests).toHaveLength(0); // nothing is sent synchronously
    await events.flush();

    expect(api.requests).toHaveLength(1);
    const [request] = api.requests;
    expect(request).toMatchObject({
      method: 'POST',
      path: '/api/v1/namespaces/team-a/events',
      contentType: 'application/json',
      authorization: `Bearer ${api.token}`,
    });
    const expectedName = `web-0.${(BigInt(START.getTime()) * 1_000_000n).toString(16)}`;
    expect(request?.body).toEqual({
      apiVersion: 'v1',
      kind: 'Event',
      metadata: { name: expectedName, namespace: 'team-a' },
      involvedObject: { apiVersion: 'v1', kind: 'Pod', name: 'web-0', namespace: 'team-a', uid: pod.uid },
      type: 'Warning',
      reason: 'SignatureRetrievalDegraded',
      message: `Image "registry.example/team/app:1.0": ${warning.message}`,
      source: { component: 'pullguard', host: 'node-1' },
      reportingComponent: 'pullguard',
      reportingInstance: 'node-1',
      firstTimestamp: '2025-03-01T10:00:00.000Z',
      lastTimestamp: '2025-03-01T10:00:00.000Z',
      count: 1,
    });
    expect(api.events.get(`team-a/${expectedName}`)?.metadata['uid']).toBeTypeOf('string');
    expect(metrics.events.get({ outcome: 'created' })).toBe(1);
  });

  it('aggregates an identical warning into a strategic-merge PATCH of count and lastTimestamp', async () => {
    const { recorder: events, metrics } = await recorder();
    events.warn(pod, warning);
    advance(30_000);
    events.warn(pod, warning);
    advance(30_000);
    events.warn(pod, warning);
    await events.flush();

    expect(api.requests.map((r) => r.method)).toEqual(['POST', 'PATCH', 'PATCH']);
    const name = (api.requests[0]?.body as { metadata: { name: string } }).metadata.name;
    expect(api.requests[1]).toMatchObject({
      path: `/api/v1/namespaces/team-a/events/${name}`,
      contentType: 'application/strategic-merge-patch+json',
      authorization: `Bearer ${api.token}`,
      body: { count: 2, lastTimestamp: '2025-03-01T10:00:30.123Z' },
    });
    expect(api.requests[2]?.body).toEqual({ count: 3, lastTimestamp: '2025-03-01T10:01:00.123Z' });
    expect(api.events.size).toBe(1);
    expect(api.events.get(`team-a/${name}`)).toMatchObject({ count: 3, lastTimestamp: '2025-03-01T10:01:00.123Z', firstTimestamp: '2025-03-01T10:00:00.000Z' });
    expect(metrics.events.get({ outcome: 'patched' })).toBe(2);
  });

  it('creates a new Event for a different message, a different pod, or after the window', async () => {
    const { recorder: events } = await recorder({ aggregationWindowMs: 600_000 });
    events.warn(pod, warning);
    events.warn(pod, { ...warning, message: 'PGW001: signature-3 could not be read (http-status 503)' });
    events.warn({ ...pod, uid: 'another-uid' }, warning);
    advance(600_001);
    events.warn(pod, warning);
    await events.flush();
    expect(api.requests.map((r) => r.method)).toEqual(['POST', 'POST', 'POST', 'POST']);
    const names = api.requests.map((r) => (r.body as { metadata: { name: string } }).metadata.name);
    expect(new Set(names).size).toBe(4); // same millisecond, still unique names
    expect(api.events.size).toBe(4);
  });

  it('logs a 403 without failing the caller, and later warnings still work', async () => {
    const { recorder: events, metrics } = await recorder();
    api.failWith(403);
    expect(() => events.warn(pod, warning)).not.toThrow();
    await events.flush();
    expect(api.requests).toHaveLength(1);
    const failure = logs().find((l) => l['msg'] === 'Kubernetes Event not posted (grant create/patch on events: deploy/rbac-events.yaml)');
    expect(failure).toMatchObject({ level: 40, status: 403, apiReason: 'Forbidden', operation: 'create', namespace: 'team-a', pod: 'web-0' });
    expect(String(failure?.['detail'])).toContain('cannot create resource "events"');
    expect(metrics.events.get({ outcome: 'failed' })).toBe(1);

    api.failWith(undefined);
    events.warn(pod, warning);
    await events.flush();
    // The failed create was not remembered: this is a fresh POST, not a PATCH of a missing event.
    expect(api.requests.map((r) => r.method)).toEqual(['POST', 'POST']);
    expect(api.events.size).toBe(1);

    api.failWith(403);
    events.warn(pod, warning);
    await events.flush();
    expect(api.requests.at(-1)?.method).toBe('PATCH');
    expect(logs().some((l) => l['operation'] === 'patch' && l['status'] === 403)).toBe(true);
    api.failWith(undefined);
    events.warn(pod, warning);
    await events.flush();
    expect([...api.events.values()][0]?.['count']).toBe(3); // the count the API server missed is carried on
  });

  it('re-creates an aggregated Event that expired, under the same name with the running count', async () => {
    const { recorder: events } = await recorder();
    events.warn(pod, warning);
    await events.flush();
    api.deleteAll();
    advance(1000);
    events.warn(pod, warning);
    await events.flush();
    expect(api.requests.map((r) => r.method)).toEqual(['POST', 'PATCH', 'POST']);
    const first = api.requests[0]?.body as { metadata: { name: string } };
    const again = api.requests[2]?.body as { metadata: { name: string }; count: number; firstTimestamp: string };
    expect(again.metadata.name).toBe(first.metadata.name);
    expect(again.count).toBe(2);
    expect(again.firstTimestamp).toBe('2025-03-01T10:00:00.000Z');
  });

  it('rate-limits per pod with a token bucket before anything is sent', async () => {
    const { recorder: events, metrics } = await recorder({ rateLimit: { burst: 3, refillIntervalMs: 60_000 } });
    for (let i = 0; i < 5; i++) events.warn(pod, { ...warning, message: `trouble ${i}` });
    events.warn({ ...pod, name: 'web-1', uid: 'u-1' }, warning); // another pod has its own bucket
    await events.flush();
    expect(api.requests).toHaveLength(4);
    expect(metrics.events.get({ outcome: 'rate_limited' })).toBe(2);
    advance(60_000);
    events.warn(pod, { ...warning, message: 'trouble 5' });
    events.warn(pod, { ...warning, message: 'trouble 6' });
    await events.flush();
    expect(api.requests).toHaveLength(5);
    expect(metrics.events.get({ outcome: 'rate_limited' })).toBe(3);
  });

  it('bounds the message to 1 KiB of UTF-8', async () => {
    const { recorder: events } = await recorder();
    events.warn(pod, { ...warning, message: `${warning.image} ${'ü'.repeat(3000)}` });
    await events.flush();
    const message = (api.requests[0]?.body as { message: string }).message;
    expect(Buffer.byteLength(message)).toBeLessThanOrEqual(1024);
    expect(message.endsWith('…')).toBe(true);
    expect(message.startsWith(warning.image)).toBe(true); // already names the image: no prefix
    expect(message).not.toContain('\uFFFD');
  });

  it('leaves uid out of involvedObject when the sandbox had none, and posts nothing without a pod', async () => {
    const { recorder: events } = await recorder();
    events.warn({ name: 'crictl-pod', namespace: 'default', uid: '' }, warning);
    events.warn({ name: '', namespace: '', uid: '' }, warning);
    await events.flush();
    expect(api.requests).toHaveLength(1);
    expect((api.requests[0]?.body as { involvedObject: Record<string, unknown> }).involvedObject).toEqual({
      apiVersion: 'v1',
      kind: 'Pod',
      name: 'crictl-pod',
      namespace: 'default',
    });
  });

  it('drops warnings beyond the queue bound and survives an unreachable API server', async () => {
    const path = `${api.kubeconfigPath}.unreachable`;
    // Port 1 on loopback: nothing listens, the connection is refused at once.
    await writeFile(path, (await readFile(api.kubeconfigPath, 'utf8')).replace(api.url, 'http://127.0.0.1:1'));
    const { recorder: events, metrics } = await recorder({ kubeconfigPath: path, maxQueued: 2, requestTimeoutMs: 2000 });
    for (let i = 0; i < 4; i++) events.warn({ ...pod, uid: `u${i}` }, warning);
    await events.flush();
    expect(metrics.events.get({ outcome: 'dropped' })).toBe(2);
    expect(metrics.events.get({ outcome: 'failed' })).toBe(2);
    const failure = logs().find((l) => l['operation'] === 'create');
    expect(failure).toMatchObject({ level: 40, apiReason: expect.stringMatching(/ECONNREFUSED|FetchError/) });
    expect(api.requests).toHaveLength(0);
  });

  it('gives up on a request after requestTimeoutMs, and close() aborts what is still waiting', async () => {
    const { recorder: events, metrics } = await recorder({ requestTimeoutMs: 300 });
    api.stall(5000);
    const started = performance.now();
    events.warn(pod, warning);
    await events.flush();
    expect(performance.now() - started).toBeLessThan(2000);
    expect(metrics.events.get({ outcome: 'failed' })).toBe(1);
    expect(logs().find((l) => l['operation'] === 'create')).toMatchObject({ level: 40, apiReason: 'AbortError' });

    const slow = await recorder({ requestTimeoutMs: 400 });
    for (let i = 0; i < 3; i++) slow.recorder.warn({ ...pod, uid: `slow-${i}` }, warning);
    const closing = performance.now();
    await slow.recorder.close();
    // One request waits out the grace period, then the rest are aborted or never sent.
    expect(performance.now() - closing).toBeLessThan(1500);
    expect(slow.metrics.events.get({ outcome: 'created' })).toBe(0);
  });

  it('close() stops accepting warnings', async () => {
    const { recorder: events } = await recorder();
    events.warn(pod, warning);
    await events.close();
    expect(api.requests).toHaveLength(1); // queued work was finished first
    events.warn(pod, { ...warning, message: 'after close' });
    await events.flush();
    expect(api.requests).toHaveLength(1);
  });
});

describe('createEventRecorder configuration', () => {
  it('with no kubeconfig posts nothing and says so at debug', async () => {
    const events = await createEventRecorder({ logger, nodeName: 'node-1', clock });
    events.warn(pod, warning);
    await events.flush();
    await events.close();
    expect(api.requests).toHaveLength(0);
    expect(logs().some((l) => l['level'] === 20 && String(l['msg']).includes('no kubeconfig configured'))).toBe(true);
  });

  it('refuses a missing or broken kubeconfig with INVALID_CONFIG and no file contents', async () => {
    await expect(createEventRecorder({ logger, nodeName: 'n', kubeconfigPath: '/nonexistent/kubeconfig' })).rejects.toMatchObject({
      code: 'INVALID_CONFIG',
      message: 'cannot load kubeconfig /nonexistent/kubeconfig: ENOENT',
    });
    const broken = `${api.kubeconfigPath}.broken`;
    await writeFile(broken, `users:\n- name: x\n  user:\n    token: ${api.token}\n  : [unclosed\n`);
    const err = (await createEventRecorder({ logger, nodeName: 'n', kubeconfigPath: broken }).catch((e: unknown) => e)) as Error;
    expect(err).toMatchObject({ code: 'INVALID_CONFIG' });
    expect(err.message).not.toContain(api.token);
    expect(JSON.stringify(err)).not.toContain(api.token);
    const noServer = `${api.kubeconfigPath}.noserver`;
    await writeFile(noServer, `apiVersion: v1\nkind: Config\nclusters: []\nusers: []\ncontexts: []\n`);
    await expect(createEventRecorder({ logger, nodeName: 'n', kubeconfigPath: noServer })).rejects.toMatchObject({ code: 'INVALID_CONFIG' });
  });
});

describe('in-cluster configuration', () => {
  it.skipIf(process.env['KUBERNETES_SERVICE_HOST'] !== undefined)('outside a cluster is refused at startup with INVALID_CONFIG', async () => {
    await expect(createEventRecorder({ logger, nodeName: 'n', inCluster: true })).rejects.toMatchObject({ code: 'INVALID_CONFIG' });
  });
});

describe('event object helpers', () => {
  it('names events <pod>.<hex nanos> and keeps long names valid', () => {
    expect(eventName('web-0', 0x1234n)).toBe('web-0.1234');
    const long = `${'a'.repeat(240)}-x.y-zzz`;
    const name = eventName(long, 0x182b0d6f4d5a1c00n);
    expect(name.length).toBeLessThanOrEqual(253);
    expect(name).toMatch(/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?\.[0-9a-f]+$/);
    expect(name).not.toMatch(/[-.]\.[0-9a-f]+$/);
  });

  it('bounds on a character boundary', () => {
    expect(boundMessage('short', 1024)).toBe('short');
    const cut = boundMessage('€'.repeat(10), 10);
    expect(Buffer.byteLength(cut)).toBeLessThanOrEqual(10);
    expect(cut).toBe('€€…');
  });

  it('describes pull warnings one per code', () => {
    expect(
      describePullWarnings([
        { code: 'PGW001', message: 'a' },
        { code: 'PGW003', message: 'b' },
      ]),
    ).toBe('PGW001: a; PGW003: b');
  });
});
