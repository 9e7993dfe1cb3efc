/**
 * pumpBody: how a blob body reaches the ingest — every chunk in order, the body paused exactly while
 * the sink's write is pending, and every failure (sink, write, body) ending the pump with that
 * error and the body destroyed.
 */
import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { pumpBody, type HttpResponse } from '../../../src/registry/http.js';

const bodyOf = (chunks: readonly string[], failAfter?: Error): Readable & HttpResponse['body'] => {
  const queue = chunks.map((c) => Buffer.from(c));
  return new Readable({
    read() {
      const next = queue.shift();
      if (next !== undefined) this.push(next);
      else if (failAfter !== undefined) this.destroy(failAfter);
      else this.push(null);
    },
  }) as Readable & HttpResponse['body'];
};

describe('pumpBody', () => {
  it('hands over every chunk in order when the sink never waits', async () => {
    const seen: string[] = [];
    await pumpBody(bodyOf(['a', 'b', 'c']), (chunk) => {
      seen.push(chunk.toString());
      return undefined;
    });
    expect(seen).toEqual(['a', 'b', 'c']);
  });

  it('pauses the body while a write is pending and finishes only after the last write', async () => {
    const seen: string[] = [];
    let pending = 0;
    let overlapped = false;
    let lastWriteDone = false;
    await pumpBody(bodyOf(['a', 'b', 'c', 'd']), (chunk) => {
      if (pending > 0) overlapped = true;
      seen.push(chunk.toString());
      if (chunk.toString() === 'a') return undefined;
      pending += 1;
      return new Promise<void>((resolve) =>
        setTimeout(() => {
          pending -= 1;
          if (chunk.toString() === 'd') lastWriteDone = true;
          resolve();
        }, 10),
      );
    });
    expect(seen).toEqual(['a', 'b', 'c', 'd']);
    expect(overlapped).toBe(false);
    expect(lastWriteDone).toBe(true);
  });

  it("ends with the sink's error and destroys the body, whether thrown or from a pending write", async () => {
    const thrown = bodyOf(['a', 'b', 'c']);
    await expect(
      pumpBody(thrown, (chunk) => {
        if (chunk.toString() === 'b') throw new Error('too large');
        return undefined;
      }),
    ).rejects.toThrow('too large');
    expect(thrown.destroyed).toBe(true);

    const rejected = bodyOf(['a', 'b', 'c']);
    await expect(pumpBody(rejected, () => Promise.reject(new Error('disk full')))).rejects.toThrow('disk full');
    expect(rejected.destroyed).toBe(true);
  });

  it("ends with the body's own error (a reset mid-blob)", async () => {
    const seen: string[] = [];
    await expect(
      pumpBody(bodyOf(['a', 'b'], Object.assign(new Error('other side closed'), { code: 'UND_ERR_SOCKET' })), (chunk) => {
        seen.push(chunk.toString());
        return undefined;
      }),
    ).rejects.toMatchObject({ code: 'UND_ERR_SOCKET' });
    expect(seen).toEqual(['a', 'b']);
  });
});
