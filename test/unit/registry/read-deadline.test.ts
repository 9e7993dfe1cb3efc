/** ReadDeadline on fake timers: a fixed bound, a bound that moves with the bytes, and cancellation. */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { ReadDeadline } from '../../../src/registry/read-deadline.js';

beforeEach(() => {
  vi.useFakeTimers();
});

afterEach(() => {
  vi.useRealTimers();
});

const now = (): number => Date.now();

describe('ReadDeadline', () => {
  it('without a rate: aborts once the allowance has passed, not before', () => {
    const d = new ReadDeadline({ allowanceMs: 1000, now });
    d.progress(10_000); // bytes buy nothing without a rate
    vi.advanceTimersByTime(999);
    expect(d.signal.aborted).toBe(false);
    vi.advanceTimersByTime(1);
    expect(d.signal.aborted).toBe(true);
    expect(d.expired).toBe(true);
    d.dispose();
  });

  it('with a rate: each byte moves the deadline by 1/rate; a drip fails soon after the allowance', () => {
    const d = new ReadDeadline({ allowanceMs: 1000, minBytesPerSecond: 1000, now });
    vi.advanceTimersByTime(900);
    d.progress(500); // +500 ms
    vi.advanceTimersByTime(599);
    expect(d.signal.aborted).toBe(false);
    expect(d.remainingMs()).toBe(1);
    vi.advanceTimersByTime(1);
    expect(d.expired).toBe(true);
    expect(d.receivedBytes).toBe(500);
    d.dispose();
  });

  it('a transfer that keeps the rate is never cut, however long it runs', () => {
    const d = new ReadDeadline({ allowanceMs: 1000, minBytesPerSecond: 1000, now });
    for (let i = 0; i < 600; i++) {
      d.progress(100);
      vi.advanceTimersByTime(100); // exactly the rate: the allowance is never touched
    }
    expect(d.signal.aborted).toBe(false);
    d.dispose();
    vi.advanceTimersByTime(10_000);
    expect(d.signal.aborted).toBe(false);
  });

  it("forwards the caller's cancellation (with its reason) without calling it a deadline", () => {
    const parent = new AbortController();
    const d = new ReadDeadline({ allowanceMs: 1000, parent: parent.signal, now });
    const reason = new Error('client went away');
    parent.abort(reason);
    expect(d.signal.aborted).toBe(true);
    expect(d.signal.reason).toBe(reason);
    vi.advanceTimersByTime(5000);
    expect(d.expired).toBe(false);
    d.dispose();

    const already = new ReadDeadline({ allowanceMs: 1000, parent: parent.signal, now });
    expect(already.signal.aborted).toBe(true);
    expect(already.expired).toBe(false);
    already.dispose();
  });

  it('dispose leaves no timer and no listener behind', () => {
    const parent = new AbortController();
    const d = new ReadDeadline({ allowanceMs: 1000, parent: parent.signal, now });
    d.dispose();
    expect(vi.getTimerCount()).toBe(0);
    parent.abort();
    expect(d.signal.aborted).toBe(false);
  });
});
