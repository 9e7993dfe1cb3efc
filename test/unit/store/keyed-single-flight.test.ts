import { describe, expect, it } from 'vitest';
import { KeyedSingleFlight } from '../../../src/store/keyed-single-flight.js';
import { AsyncMutex } from '../../../src/store/async-mutex.js';

describe('KeyedSingleFlight', () => {
  it('shares one run among concurrent callers of a key, and not across keys', async () => {
    const flight = new KeyedSingleFlight<string, number>();
    let runs = 0;
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const work = async (): Promise<number> => {
      runs += 1;
      await gate;
      return runs;
    };
    const a = flight.run('layer', work);
    const b = flight.run('layer', work);
    const c = flight.run('other', work);
    expect(flight.size).toBe(2);
    release();
    expect(await Promise.all([a, b, c])).toEqual([2, 2, 2]);
    expect(runs).toBe(2);
    expect(flight.size).toBe(0);
  });

  it('does not cache failures', async () => {
    const flight = new KeyedSingleFlight<string, string>();
    await expect(flight.run('k', () => Promise.reject(new Error('boom')))).rejects.toThrow('boom');
    expect(flight.has('k')).toBe(false);
    expect(await flight.run('k', async () => 'ok')).toBe('ok');
  });
});

describe('AsyncMutex', () => {
  it('runs holders one at a time, in order, through failures', async () => {
    const mutex = new AsyncMutex();
    const log: string[] = [];
    const hold = (name: string, fail = false) =>
      mutex.run(async () => {
        log.push(`${name}+`);
        await new Promise((r) => setTimeout(r, 5));
        log.push(`${name}-`);
        if (fail) throw new Error(name);
        return name;
      });
    const results = await Promise.allSettled([hold('a'), hold('b', true), hold('c')]);
    expect(log).toEqual(['a+', 'a-', 'b+', 'b-', 'c+', 'c-']);
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'rejected', 'fulfilled']);
  });
});
