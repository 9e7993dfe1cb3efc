/** The HTTP policies shared by registry and lookaside reads (src/http/policy.ts). */
import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { backoffMs, parseRetryAfter, readBodyCapped, redirectTarget } from '../../../src/http/policy.js';

describe('redirectTarget', () => {
  it('follows http(s) redirects, saying whether the origin stays (credentials go along only then)', () => {
    expect(redirectTarget(new URL('https://reg.test/v2/x'), '/v2/y')).toMatchObject({ follow: true, sameOrigin: true, url: new URL('https://reg.test/v2/y') });
    expect(redirectTarget(new URL('https://reg.test/v2/x'), 'https://storage.test/blob?sig=1')).toMatchObject({ follow: true, sameOrigin: false });
    expect(redirectTarget(new URL('http://127.0.0.1:5000/a'), 'http://127.0.0.1:5001/a')).toMatchObject({ follow: true, sameOrigin: false });
  });

  it('never follows another scheme, nor https down to plain http', () => {
    expect(redirectTarget(new URL('https://reg.test/a'), 'file:///etc/passwd')).toMatchObject({ follow: false, why: 'scheme' });
    expect(redirectTarget(new URL('http://sigs.test/a'), 'ftp://sigs.test/a')).toMatchObject({ follow: false, why: 'scheme' });
    const downgrade = redirectTarget(new URL('https://sigs.test/a'), 'http://sigs.test/a');
    expect(downgrade).toMatchObject({ follow: false, why: 'downgrade', message: 'redirect from https://sigs.test down to plain http://sigs.test' });
  });
});

describe('backoffMs', () => {
  it('doubles from the base, caps at the maximum, and jitters by a factor in [0.5, 1.5)', () => {
    expect([1, 2, 3, 4].map((n) => backoffMs(n, 100, 1_000, () => 0.5))).toEqual([100, 200, 400, 800]);
    expect(backoffMs(6, 100, 1_000, () => 0.5)).toBe(1_000);
    expect(backoffMs(2, 100, 1_000, () => 0)).toBe(100);
    expect(backoffMs(2, 100, 1_000, () => 0.999)).toBe(300);
  });
});

describe('parseRetryAfter', () => {
  it('reads delta-seconds and HTTP dates; anything else is absent', () => {
    const now = Date.parse('2030-01-01T00:00:00Z');
    expect(parseRetryAfter('7', now)).toBe(7_000);
    expect(parseRetryAfter(' 0 ', now)).toBe(0);
    expect(parseRetryAfter('Tue, 01 Jan 2030 00:00:03 GMT', now)).toBe(3_000);
    expect(parseRetryAfter('Mon, 31 Dec 2029 23:00:00 GMT', now)).toBe(0);
    expect(parseRetryAfter('soon', now)).toBeUndefined();
    expect(parseRetryAfter(undefined, now)).toBeUndefined();
  });
});

describe('readBodyCapped', () => {
  const body = (chunks: string[]) => Readable.from(chunks.map((c) => Buffer.from(c)));

  it('reads a body up to the cap', async () => {
    const read = await readBodyCapped(body(['ab', 'cd']), 4, 4);
    expect(read).toEqual({ ok: true, bytes: new Uint8Array(Buffer.from('abcd')) });
  });

  it('refuses a declared length over the cap without reading, and a streamed one at the chunk that passes it', async () => {
    const declared = body(['abcdef']);
    expect(await readBodyCapped(declared, 6, 4)).toEqual({ ok: false, bytesRead: 0 });
    expect(declared.destroyed).toBe(true);
    const counted: number[] = [];
    expect(await readBodyCapped(body(['abc', 'def', 'ghi']), undefined, 4, (n) => counted.push(n))).toEqual({ ok: false, bytesRead: 6 });
    expect(counted).toEqual([3, 3]);
  });
});
