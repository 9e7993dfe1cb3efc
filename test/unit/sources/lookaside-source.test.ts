/**
 * The lookaside fetch loop against a real HTTP server (test/helpers/lookaside-server.ts) that
 * injects the faults a CDN-fronted lookaside produces, and against a file:// lookaside.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { Agent } from 'undici';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { parseRegistriesD } from '../../../src/config/registries-d.js';
import { parseDigest } from '../../../src/domain/digest.js';
import { isPullguardError } from '../../../src/domain/errors.js';
import { parseReference } from '../../../src/domain/reference.js';
import type { SignatureFetchReport } from '../../../src/domain/signature.js';
import { createLookasideSource, type LookasideEvent, type LookasideSourceOptions } from '../../../src/sources/lookaside-source.js';
import { decide } from '../../../src/policy/decide.js';
import type { ResolvedImage } from '../../../src/pull/ports.js';
import { CDN_ERROR_PAGE, testDigest, useLookasideServer, type LookasideFault } from '../../helpers/lookaside-server.js';

const server = useLookasideServer();
const dispatcher = new Agent({ keepAliveTimeout: 2_000 });
afterAll(() => dispatcher.close());
afterEach(() => {
  // No request to a lookaside may ever carry credentials.
  for (const request of server.requests) expect(request.headers.authorization).toBeUndefined();
});

const REPO = 'team/app';
const LIST_DIGEST = parseDigest(testDigest('the index'));
const INSTANCE_DIGEST = parseDigest(testDigest('the amd64 manifest'));
const HEX = INSTANCE_DIGEST.slice('sha256:'.length);

/** Bytes that sniff as simple signing: OpenPGP compressed-data first byte, then a marker. */
const sig = (n: number): Uint8Array => Uint8Array.from([0xa3, ...Buffer.from(`signature number ${n}`)]);

function image(physical = `registry.test/${REPO}:v1`): ResolvedImage {
  return {
    reference: parseReference(`logical.test/${REPO}:v1`),
    physicalReference: parseReference(physical),
    topDigest: LIST_DIGEST,
    topMediaType: 'application/vnd.oci.image.index.v1+json',
    manifestDigest: INSTANCE_DIGEST,
    manifestMediaType: 'application/vnd.oci.image.manifest.v1+json',
    manifestBytes: new Uint8Array(),
    config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: INSTANCE_DIGEST, size: 1 },
    layers: [],
  };
}

function source(options: Partial<LookasideSourceOptions> & { lookaside?: string } = {}) {
  const { lookaside = server.url, ...rest } = options;
  const registriesD = parseRegistriesD([{ path: '/test/registries.d/t.yaml', text: `docker:\n  registry.test:\n    lookaside: "${lookaside}"\n` }]);
  return createLookasideSource({ registriesD, dispatcher, retryBaseMs: 5, random: () => 0.5, requestTimeoutMs: 3_000, ...rest });
}

async function seed(...indices: number[]): Promise<void> {
  for (const n of indices) await server.writeSignature(REPO, INSTANCE_DIGEST, n, sig(n));
}

const urlOf = (n: number): string => `${server.url}/${REPO}@sha256=${HEX}/signature-${n}`;
const indicesOf = (report: SignatureFetchReport) => ({
  signatures: report.signatures.map((s) => s.location.index),
  troubles: report.troubles.map((t) => t.location.index),
});

describe('the loop', () => {
  it('reads signature-1… until the first 404, using the physical reference and the instance digest', async () => {
    await seed(1, 2, 3);
    const events: LookasideEvent[] = [];
    const report = await source({ onEvent: (e) => events.push(e) }).fetch(image(), {});
    expect(report.end).toBe('not-found');
    expect(report.troubles).toEqual([]);
    expect(report.signatures.map((s) => Buffer.from(s.bytes).toString('latin1'))).toEqual([1, 2, 3].map((n) => Buffer.from(sig(n)).toString('latin1')));
    expect(report.signatures[1]).toMatchObject({ format: 'simple-signing', location: { source: 'lookaside', index: 2, url: urlOf(2) } });
    expect(server.requests.every((r) => r.path.startsWith(`/${REPO}@sha256=${HEX}/signature-`))).toBe(true);
    expect(events[0]).toEqual({ type: 'scope', scope: 'registry.test', baseUrl: `${server.url}/`, file: '/test/registries.d/t.yaml' });
    expect(events.at(-1)).toEqual({ type: 'end', end: 'not-found', signatures: 3, troubles: 0 });
  });

  it('ends at a gap and discards indices after the first 404 even when they were fetched', async () => {
    await seed(1, 2, 4);
    server.fault(3, { stallMs: 150 }); // the 404 comes late, after signature-4 was already served
    const report = await source().fetch(image(), {});
    expect(indicesOf(report)).toEqual({ signatures: [1, 2], troubles: [] });
    expect(report.end).toBe('not-found');
    expect(server.requestsFor(4)).toHaveLength(1);
  });

  it('continues past troubles and stops after 3 consecutive ones', async () => {
    await seed(1, 2, 3, 4, 5, 6);
    for (const n of [2, 3, 4]) server.fault(n, { status: 500 });
    const report = await source({ window: 2 }).fetch(image(), {});
    expect(indicesOf(report)).toEqual({ signatures: [1], troubles: [2, 3, 4] });
    expect(report.end).toBe('consecutive-troubles');
    // The last of the run says it stopped the read: 3 and 4 may not exist at all.
    expect(report.troubles.map((t) => t.stoppedReadAfter)).toEqual([undefined, undefined, 3]);
  });

  it('a server that is down: signature-1 refused, the read stopped after 3 consecutive failures', async () => {
    const closed = createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const port = (closed.address() as AddressInfo).port;
    await new Promise<void>((resolve) => closed.close(() => resolve()));
    const report = await source({ lookaside: `http://127.0.0.1:${port}` }).fetch(image(), {});
    expect(report.end).toBe('consecutive-troubles');
    expect(report.troubles).toMatchObject([1, 2, 3].map((index) => ({ location: { index }, kind: 'transport', errorCode: 'ECONNREFUSED' })));
    expect(report.troubles[0]!.detail).toMatch(/ECONNREFUSED/);
    expect(report.troubles.map((t) => t.stoppedReadAfter)).toEqual([undefined, undefined, 3]);
    const verdict = decide({
      scope: { policyFile: '/etc/containers/policy.json', scope: 'registry.test' },
      reference: parseReference(`logical.test/${REPO}:v1`),
      requirements: [
        {
          requirement: { type: 'signedBy', keyType: 'GPGKeys', keys: { kind: 'path', path: '/k.gpg' }, signedIdentity: { type: 'matchRepoDigestOrExact' } },
          checks: [],
        },
      ],
      troubles: report.troubles,
    });
    const url = `http://127.0.0.1:${port}/${REPO}@sha256=${HEX}/signature-1`;
    expect(verdict.denial).toMatch(
      new RegExp(
        `^A signature was required, but no signature exists; additionally 1 signature could not be read: signature-1 \\(${url.replace(/[.?]/g, '\\$&')}\\) could not be reached: .*ECONNREFUSED.*; the read stopped after 3 consecutive failures$`,
      ),
    );
    expect(verdict.denial).not.toMatch(/signature-[23]/);
  });

  it('a 300-character lookaside URL: the facts are kept apart from it', async () => {
    const base = `${server.url}/${'deep/'.repeat(Math.ceil((300 - urlOf(1).length) / 5))}store`;
    server.fault(1, { html: true });
    server.fault(2, { status: 503 });
    const report = await source({ lookaside: base }).fetch(image(), {});
    expect(report.troubles[0]!.location.url.length).toBeGreaterThanOrEqual(300);
    expect(report.troubles).toMatchObject([
      { kind: 'unrecognized-format', firstByte: 0x3c, httpStatus: 200, detail: 'unrecognized signature format, starting with binary 0x3c' },
      { kind: 'http-status', httpStatus: 503, detail: 'received unexpected HTTP status: 503 Service Unavailable' },
    ]);
  });

  it('keeps signatures around isolated troubles', async () => {
    await seed(1, 2, 3, 4, 5);
    server.fault(2, { status: 403 });
    server.fault(4, { html: true });
    const report = await source().fetch(image(), {});
    expect(indicesOf(report)).toEqual({ signatures: [1, 3, 5], troubles: [2, 4] });
    expect(report.end).toBe('not-found');
  });

  it('stops at the upstream cap of 128 and never asks for signature-129', async () => {
    await seed(...Array.from({ length: 129 }, (_, i) => i + 1));
    const report = await source({ window: 8 }).fetch(image(), {});
    expect(report.signatures).toHaveLength(128);
    expect(report.end).toBe('cap');
    expect(report.notices).toEqual(["server provided 128 signatures, assuming that's unreasonable and a server error"]);
    expect(server.requestsFor(129)).toHaveLength(0);
  });

  it('fetches a window of indices concurrently but reports in index order', async () => {
    await seed(1, 2, 3);
    server.fault(1, { stallMs: 300 });
    const report = await source({ window: 4 }).fetch(image(), {});
    expect(indicesOf(report).signatures).toEqual([1, 2, 3]);
    const first = server.requestsFor(1)[0]!.at;
    for (const n of [2, 3, 4]) expect(server.requestsFor(n)[0]!.at - first).toBeLessThan(250);

    await server.reset();
    await seed(1, 2, 3);
    server.fault(1, { stallMs: 300 });
    await source({ window: 1 }).fetch(image(), {});
    expect(server.requestsFor(2)[0]!.at - server.requestsFor(1)[0]!.at).toBeGreaterThanOrEqual(290);
  });

  it('reports not-configured when registries.d and the built-in default give no lookaside', async () => {
    const registriesD = parseRegistriesD([], { defaultLookaside: null });
    const report = await createLookasideSource({ registriesD, dispatcher }).fetch(image(), {});
    expect(report).toMatchObject({ end: 'not-configured', signatures: [], troubles: [] });
  });

  it('throws CANCELLED when the caller aborts', async () => {
    await seed(1);
    server.fault(1, { stallMs: 2_000 });
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 100);
    const started = Date.now();
    await expect(source().fetch(image(), { signal: controller.signal })).rejects.toSatisfy((err) => isPullguardError(err, 'CANCELLED'));
    expect(Date.now() - started).toBeLessThan(1_000);
  });
});

describe('one trouble per fault kind (at signature-2, between two good signatures)', () => {
  const cases: Array<{
    name: string;
    fault: LookasideFault;
    options?: Partial<LookasideSourceOptions>;
    expected: Record<string, unknown>;
    message: string | RegExp;
  }> = [
    {
      name: '500',
      fault: { status: 500 },
      expected: { kind: 'http-status', httpStatus: 500, attempts: 1 },
      message: `reading signature from ${'URL'}: received unexpected HTTP status: 500 Internal Server Error`,
    },
    {
      name: '403',
      fault: { status: 403 },
      expected: { kind: 'http-status', httpStatus: 403, attempts: 1 },
      message: 'reading signature from URL: received unexpected HTTP status: 403 Forbidden',
    },
    {
      name: '503 that stays 503 after 2 retries',
      fault: { status: 503 },
      expected: { kind: 'http-status', httpStatus: 503, attempts: 3 },
      message: 'reading signature from URL: received unexpected HTTP status: 503 Service Unavailable',
    },
    {
      name: 'HTML error page (revalidated once with no-cache)',
      fault: { html: true },
      expected: {
        kind: 'unrecognized-format',
        httpStatus: 200,
        contentType: 'text/html; charset=UTF-8',
        firstByte: 0x3c,
        attempts: 2,
        bytesRead: CDN_ERROR_PAGE.length,
      },
      message: 'parsing signature URL: unrecognized signature format, starting with binary 0x3c',
    },
    {
      name: 'ASCII-armoured signature',
      fault: { armored: true },
      expected: { kind: 'unrecognized-format', firstByte: 0x2d, attempts: 2 },
      message: 'parsing signature URL: unrecognized signature format, starting with binary 0x2d',
    },
    {
      name: 'empty body',
      fault: { empty: true },
      expected: { kind: 'empty', httpStatus: 200, attempts: 2, bytesRead: 0 },
      message: 'parsing signature URL: empty signature blob',
    },
    {
      name: 'connection reset mid-body (no retries)',
      fault: { reset: true },
      options: { retries: 0 },
      expected: { kind: 'transport', attempts: 1 },
      message: /^Get "URL": .+/,
    },
    {
      name: '5 MiB chunked body',
      fault: { bytes: 5 * 1024 * 1024 },
      expected: { kind: 'too-large', attempts: 1 },
      message: 'exceeded maximum allowed size of 4194304 bytes',
    },
    {
      name: '5 MiB declared body',
      fault: { bytes: 5 * 1024 * 1024, declareLength: true },
      expected: { kind: 'too-large', attempts: 1, bytesRead: 0 },
      message: 'exceeded maximum allowed size of 4194304 bytes',
    },
    {
      name: 'headers then silence',
      fault: { stallMs: 5_000, headers: true },
      options: { requestTimeoutMs: 200 },
      expected: { kind: 'timeout', attempts: 1 },
      message: 'reading signature from URL: no complete response within 200 ms',
    },
    {
      name: 'no headers at all',
      fault: { stallMs: 5_000 },
      options: { requestTimeoutMs: 200 },
      expected: { kind: 'timeout', attempts: 1 },
      message: 'reading signature from URL: no complete response within 200 ms',
    },
    {
      name: 'redirect loop',
      fault: { redirectLoop: true },
      expected: { kind: 'redirects', attempts: 1 },
      message: /^Get "URL\?loop=REDACTED": stopped after 10 redirects$/,
    },
    {
      name: 'redirect to file://',
      fault: { redirectTo: 'file:///etc/passwd' },
      expected: { kind: 'unsupported-scheme', attempts: 1 },
      message: 'Unsupported scheme when reading signature from file:///etc/passwd (redirected from URL)',
    },
  ];

  for (const c of cases) {
    it(c.name, async () => {
      await seed(1, 2, 3);
      server.fault(2, c.fault);
      const report = await source(c.options).fetch(image(), {});
      expect(indicesOf(report)).toEqual({ signatures: [1, 3], troubles: [2] });
      const trouble = report.troubles[0]!;
      expect(trouble).toMatchObject({ ...c.expected, location: { source: 'lookaside', index: 2, url: urlOf(2) } });
      if (typeof c.message === 'string') expect(trouble.message).toBe(c.message.replace('URL', urlOf(2)));
      else expect(trouble.message).toMatch(new RegExp(c.message.source.replace('URL', urlOf(2).replace(/[.?]/g, '\\$&'))));
      // The same text without the URL, for messages that name the location themselves.
      expect(trouble.detail).toBeDefined();
      expect(trouble.message.endsWith(trouble.detail!) || trouble.kind === 'unsupported-scheme').toBe(true);
      expect(trouble.detail).not.toContain(urlOf(2));
      if (c.fault && 'bytes' in c.fault && c.fault.declareLength !== true) {
        // The cap aborts the stream: more than 4 MiB was read, but not the whole 5 MiB.
        expect(trouble.bytesRead).toBeGreaterThan(4 * 1024 * 1024);
        expect(trouble.bytesRead).toBeLessThan(5 * 1024 * 1024);
      }
    });
  }

  it('follows up to 10 redirects (exactly 11 requests for a loop)', async () => {
    await seed(1, 2);
    server.fault(1, { redirects: 10 });
    server.fault(2, { redirectLoop: true });
    const report = await source().fetch(image(), {});
    expect(indicesOf(report)).toEqual({ signatures: [1], troubles: [2] });
    expect(server.requestsFor(2)).toHaveLength(11);
  });

  it("accepts a signature served as text/html but records upstream's notice", async () => {
    await seed(1);
    server.fault(1, { contentType: 'Text/HTML; charset=utf-8' });
    const report = await source().fetch(image(), {});
    expect(indicesOf(report).signatures).toEqual([1]);
    expect(report.notices).toEqual([`Signature "${urlOf(1)}" has Content-Type "Text/HTML; charset=utf-8", unexpected for a signature`]);
  });

  it('reports an unsupported scheme without any I/O', async () => {
    const report = await source({ lookaside: 'ftp://sigs.example/store' }).fetch(image(), {});
    expect(report.end).toBe('consecutive-troubles');
    expect(report.troubles.map((t) => [t.kind, t.message])).toEqual(
      [1, 2, 3].map((n) => [
        'unsupported-scheme',
        `Unsupported scheme when reading signature from ftp://sigs.example/store/${REPO}@sha256=${HEX}/signature-${n}`,
      ]),
    );
  });
});

describe('retries', () => {
  it('503 then OK', async () => {
    await seed(1, 2);
    server.fault(1, { failTimes: 1, then: 'serve' });
    const report = await source().fetch(image(), {});
    expect(indicesOf(report)).toEqual({ signatures: [1, 2], troubles: [] });
    expect(report.retriedIndices).toEqual([1]);
    expect(server.requestsFor(1)).toHaveLength(2);
  });

  it('backs off exponentially with ±50 % jitter from the injected random source', async () => {
    const delays = async (random: number): Promise<number[]> => {
      await server.reset();
      server.fault(1, { status: 502 });
      const events: LookasideEvent[] = [];
      await source({ retryBaseMs: 20, random: () => random, onEvent: (e) => events.push(e) }).fetch(image(), {});
      return events.flatMap((e) => (e.type === 'retry' && e.index === 1 ? [e.delayMs] : []));
    };
    expect(await delays(0)).toEqual([10, 20]);
    expect(await delays(0.5)).toEqual([20, 40]);
    expect(await delays(0.99)).toEqual([30, 60]);
  });

  it('429 with Retry-After waits as told', async () => {
    await seed(1);
    server.fault(1, { failTimes: 1, fault: { status: 429, retryAfter: 1 }, then: 'serve' });
    const events: LookasideEvent[] = [];
    const report = await source({ onEvent: (e) => events.push(e) }).fetch(image(), {});
    expect(indicesOf(report).signatures).toEqual([1]);
    const [first, second] = server.requestsFor(1);
    expect(second!.at - first!.at).toBeGreaterThanOrEqual(950);
    expect(events).toContainEqual({ type: 'retry', index: 1, url: urlOf(1), reason: '429 Too Many Requests', delayMs: 1000 });
  });

  it('a Retry-After beyond the budget is reported at once instead of waited for', async () => {
    await seed(1);
    server.fault(1, { status: 429, retryAfter: 120 });
    const started = Date.now();
    const report = await source({ budgetMs: 2_000 }).fetch(image(), {});
    expect(Date.now() - started).toBeLessThan(1_000);
    expect(report.troubles[0]).toMatchObject({ kind: 'http-status', httpStatus: 429, attempts: 1 });
  });

  it('connection reset then OK', async () => {
    await seed(1, 2);
    server.fault(2, { failTimes: 1, fault: { reset: true }, then: 'serve' });
    const report = await source().fetch(image(), {});
    expect(indicesOf(report)).toEqual({ signatures: [1, 2], troubles: [] });
    expect(report.retriedIndices).toEqual([2]);
  });

  it('a poisoned edge copy is revalidated once with Cache-Control: no-cache', async () => {
    await seed(1);
    server.fault(1, { failTimes: 1, fault: { html: true }, then: 'serve' });
    const report = await source().fetch(image(), {});
    expect(indicesOf(report)).toEqual({ signatures: [1], troubles: [] });
    const [first, second] = server.requestsFor(1);
    expect(first!.headers['cache-control']).toBeUndefined();
    expect(second!.headers['cache-control']).toBe('no-cache');
  });

  it('a 404 after retries ends the list and counts as retried', async () => {
    await seed(1);
    server.fault(2, { failTimes: 2, fault: { status: 502 }, then: 'missing' });
    const report = await source().fetch(image(), {});
    expect(report).toMatchObject({ end: 'not-found', retriedIndices: [2] });
    expect(indicesOf(report)).toEqual({ signatures: [1], troubles: [] });
  });
});

describe('the signature-phase budget', () => {
  it('ends the phase within the budget and reports every unread index', async () => {
    await seed(1, 2, 3, 4, 5);
    for (const n of [1, 2, 3, 4]) server.fault(n, { stallMs: 10_000 });
    const started = Date.now();
    const report = await source({ budgetMs: 400, requestTimeoutMs: 5_000 }).fetch(image(), {});
    const elapsed = Date.now() - started;
    expect(elapsed).toBeGreaterThanOrEqual(390);
    expect(elapsed).toBeLessThan(400 + 300);
    expect(report.end).toBe('budget');
    expect(indicesOf(report)).toEqual({ signatures: [], troubles: [1, 2, 3, 4] });
    expect(report.troubles.every((t) => t.kind === 'budget')).toBe(true);
    expect(report.troubles[0]!.message).toBe(`reading signature from ${urlOf(1)}: signature-phase budget of 400 ms ran out`);
  });

  it('keeps what was read before the budget ran out, including later indices already read', async () => {
    await seed(1, 2, 3);
    server.fault(2, { stallMs: 10_000, headers: true });
    const report = await source({ budgetMs: 300 }).fetch(image(), {});
    expect(report.end).toBe('budget');
    expect(indicesOf(report)).toEqual({ signatures: [1, 3], troubles: [2] });
  });

  it('does not start a back-off that would outlast the budget', async () => {
    await seed(1);
    server.fault(2, { status: 503 });
    const started = Date.now();
    // random 0.5 → no jitter: back-offs 400 ms (fits in 1 s), then 800 ms (does not).
    const report = await source({ budgetMs: 1_000, retryBaseMs: 400, retries: 5 }).fetch(image(), {});
    expect(Date.now() - started).toBeLessThan(1_000);
    expect(report.troubles).toMatchObject([{ kind: 'http-status', httpStatus: 503, attempts: 2 }]);
    expect(server.requestsFor(2)).toHaveLength(2);
  });
});

describe('credentials', () => {
  it('never sends registry credentials or URL userinfo, and never shows secrets in reports', async () => {
    await server.writeSignature(`root/${REPO}`, INSTANCE_DIGEST, 1, sig(1));
    server.fault(2, { status: 500 });
    const lookaside = `${server.url.replace('http://', 'http://user:hunter2@')}/root?token=s3cret`;
    const events: LookasideEvent[] = [];
    const report = await source({ lookaside, onEvent: (e) => events.push(e) }).fetch(image(), {
      credentials: { username: 'alice', password: 'registry-password', registryToken: 'tok' },
    });
    expect(indicesOf(report).signatures).toEqual([1]);
    expect(server.requestsFor(1)[0]!.path).toBe(`/root/${REPO}@sha256=${HEX}/signature-1?token=s3cret`);
    const shown = JSON.stringify([report, events]);
    for (const secret of ['hunter2', 's3cret', 'registry-password', 'alice']) expect(shown).not.toContain(secret);
    expect(report.troubles[0]!.location.url).toBe(`${server.url}/root/${REPO}@sha256=${HEX}/signature-2?token=REDACTED`);
    for (const request of server.requests) {
      expect(request.headers.authorization).toBeUndefined();
      expect(request.headers.cookie).toBeUndefined();
    }
  });
});

describe('file:// lookaside', () => {
  const fileSource = () => source({ lookaside: `file://${server.dir}` });
  const pathOf = (n: number) => join(server.dir, `${REPO}@sha256=${HEX}`, `signature-${n}`);

  it('reads until ENOENT and reports paths', async () => {
    await seed(1, 2);
    const report = await fileSource().fetch(image(), {});
    expect(report.end).toBe('not-found');
    expect(report.signatures.map((s) => s.location.url)).toEqual([pathOf(1), pathOf(2)]);
    expect(server.requests).toHaveLength(0);
  });

  it('reports unreadable, oversized and unrecognised files and keeps going', async () => {
    await seed(1, 3, 5);
    await mkdir(pathOf(2), { recursive: true }); // EISDIR on read
    await writeFile(pathOf(4), Buffer.alloc(4 * 1024 * 1024 + 1, 0xa3));
    await writeFile(pathOf(6), CDN_ERROR_PAGE);
    const report = await fileSource().fetch(image(), {});
    expect(report.end).toBe('not-found');
    expect(indicesOf(report)).toEqual({ signatures: [1, 3, 5], troubles: [2, 4, 6] });
    expect(report.troubles.map((t) => t.kind)).toEqual(['io', 'too-large', 'unrecognized-format']);
    expect(report.troubles[0]!.message).toMatch(/EISDIR/);
    expect(report.troubles[1]!.message).toBe('exceeded maximum allowed size of 4194304 bytes');
    expect(report.troubles[2]!.message).toBe(`parsing signature ${JSON.stringify(pathOf(6))}: unrecognized signature format, starting with binary 0x3c`);
    expect(report.troubles[2]!.attempts).toBe(1); // no no-cache revalidation for files
  });
});
