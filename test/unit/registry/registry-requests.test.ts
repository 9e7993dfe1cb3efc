/**
 * The registry's request layer on its own (MockAgent for the network, injected sleep and jitter):
 * which answers are retried, how long it waits, when it stops, and that a retry never starts past
 * the read's deadline.
 */
import { MockAgent } from 'undici';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { DEFAULT_TIMEOUTS } from '../../../src/registry/http.js';
import { RegistryConnections } from '../../../src/registry/connections.js';
import { ReadDeadline } from '../../../src/registry/read-deadline.js';
import type { RequestSubject } from '../../../src/registry/registry-errors.js';
import { DEFAULT_RETRY, RegistryRequests, type RegistryRequestEvent } from '../../../src/registry/registry-requests.js';

const subject: RequestSubject = { host: 'reg.test', repository: 'team/app', kind: 'manifest', display: 'reg.test/team/app:v1' };
const URL_V1 = new URL('http://reg.test/v2/team/app/manifests/v1');

let agent: MockAgent;
let sleeps: number[];
let events: RegistryRequestEvent[];

beforeEach(() => {
  agent = new MockAgent();
  agent.disableNetConnect();
  sleeps = [];
  events = [];
});

afterEach(async () => {
  await agent.close();
});

function requests(retry: Partial<typeof DEFAULT_RETRY> = {}, now = 1_700_000_000_000): RegistryRequests {
  return new RegistryRequests({
    connections: new RegistryConnections({ dispatcher: agent, connectMs: 1000 }),
    timeouts: DEFAULT_TIMEOUTS,
    retry: { ...DEFAULT_RETRY, ...retry },
    minBlobRate: 64 * 1024,
    userAgent: 'pullguard-test',
    now: () => now,
    sleep: async (ms) => {
      sleeps.push(ms);
    },
    random: () => 0,
    onEvent: (e) => events.push(e),
  });
}

const reply = (status: number, headers: Record<string, string> = {}): void => {
  agent.get('http://reg.test').intercept({ path: URL_V1.pathname, method: 'GET' }).reply(status, 'body', { headers });
};

const get = (r: RegistryRequests, deadline?: ReadDeadline) =>
  r.withRetries(subject, undefined, () => r.sendOnce(URL_V1, { method: 'GET', headers: {}, maxRedirects: 0 }, subject), deadline);

describe('RegistryRequests', () => {
  it('retries 429 and 5xx with jittered exponential back-off, and answers the first other status', async () => {
    reply(502);
    reply(500);
    reply(404);
    const res = await get(requests({ baseDelayMs: 100 }));
    expect(res.status).toBe(404);
    // random() = 0: half of base × 2^(n-1).
    expect(sleeps).toEqual([50, 100]);
    expect(events.map((e) => e.type === 'retry' && e.reason)).toEqual(['HTTP 502', 'HTTP 500']);
  });

  it('waits what Retry-After says (seconds or an HTTP date), clamped to maxRetryAfterMs', async () => {
    const now = Date.parse('2030-01-01T00:00:00Z');
    reply(503, { 'retry-after': '7' });
    reply(429, { 'retry-after': 'Tue, 01 Jan 2030 00:00:03 GMT' });
    reply(503, { 'retry-after': '3600' });
    reply(200);
    expect((await get(requests({ maxRetryAfterMs: 10_000, maxAttempts: 4 }, now))).status).toBe(200);
    expect(sleeps).toEqual([7000, 3000, 10_000]);
  });

  it('stops after maxAttempts with the status as a coded error', async () => {
    for (let i = 0; i < 3; i++) reply(503);
    await expect(get(requests({ maxAttempts: 3 }))).rejects.toMatchObject({ code: 'REGISTRY_UNAVAILABLE' });
    expect(sleeps).toHaveLength(2);
  });

  it("does not start a retry the read's deadline would not let finish: the failure so far is the answer", async () => {
    reply(503, { 'retry-after': '60' });
    const deadline = new ReadDeadline({ allowanceMs: 5_000 });
    try {
      await expect(get(requests(), deadline)).rejects.toMatchObject({ code: 'REGISTRY_UNAVAILABLE' });
      expect(sleeps).toEqual([]);
    } finally {
      deadline.dispose();
    }
  });

  it('retries a dropped connection, but not a refused scheme or a 4xx', async () => {
    agent
      .get('http://reg.test')
      .intercept({ path: URL_V1.pathname, method: 'GET' })
      .replyWithError(Object.assign(new Error('other side closed'), { code: 'UND_ERR_SOCKET' }));
    reply(401);
    const res = await get(requests({ baseDelayMs: 10 }));
    expect(res.status).toBe(401);
    expect(sleeps).toHaveLength(1);
  });
});
