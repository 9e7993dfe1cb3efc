import { describe, expect, it } from 'vitest';
import { PullguardError } from '../../../src/domain/errors.js';
import { MetricsRegistry, escapeLabelValue } from '../../../src/metrics/registry.js';
import { parseExposition } from './exposition.js';

describe('MetricsRegistry exposition (format 0.0.4)', () => {
  it('writes HELP and TYPE before the samples of each family, and ends with a newline', () => {
    const registry = new MetricsRegistry();
    registry.counter({ name: 'a_total', help: 'A things.' }).inc();
    registry.gauge({ name: 'b', help: 'B level.' }).set(undefined, 2.5);
    const text = registry.expose();
    expect(text).toBe('# HELP a_total A things.\n# TYPE a_total counter\na_total 1\n# HELP b B level.\n# TYPE b gauge\nb 2.5\n');
    const families = parseExposition(text);
    expect(families.get('a_total')).toMatchObject({ type: 'counter', help: 'A things.', samples: [{ name: 'a_total', labels: {}, value: 1 }] });
    expect(families.get('b')?.samples[0]?.value).toBe(2.5);
  });

  it('escapes backslash, double quote and newline in label values, and backslash and newline in HELP', () => {
    const registry = new MetricsRegistry();
    const tricky = 'a\\b"c\nd';
    const counter = registry.counter({ name: 'esc_total', help: 'Help with \\ and\nnewline.', labels: { value: [tricky, 'plain'] } });
    counter.inc({ value: tricky }, 3);
    const text = registry.expose();
    expect(text).toContain('esc_total{value="a\\\\b\\"c\\nd"} 3\n');
    expect(text).toContain('# HELP esc_total Help with \\\\ and\\nnewline.\n');
    // One physical line per sample: the newline inside the value must not break the line.
    expect(text.split('\n').filter((l) => l.startsWith('esc_total{'))).toHaveLength(2);
    const family = parseExposition(text).get('esc_total');
    expect(family?.help).toBe('Help with \\ and\nnewline.');
    expect(family?.samples.find((s) => s.labels['value'] === tricky)?.value).toBe(3);
    expect(escapeLabelValue('"\\\n')).toBe('\\"\\\\\\n');
  });

  it('pre-sets single-label counters to zero for every allowed value and sorts series', () => {
    const registry = new MetricsRegistry();
    const counter = registry.counter({ name: 'o_total', help: 'o', labels: { outcome: ['b', 'a'] } });
    counter.inc({ outcome: 'b' });
    const samples = parseExposition(registry.expose()).get('o_total')?.samples ?? [];
    expect(samples.map((s) => [s.labels['outcome'], s.value])).toEqual([
      ['a', 0],
      ['b', 1],
    ]);
  });

  it('renders histograms with cumulative _bucket{le=…}, +Inf, _sum and _count', () => {
    const registry = new MetricsRegistry();
    const histogram = registry.histogram({ name: 'd_seconds', help: 'd', buckets: [0.1, 1, 10] });
    for (const v of [0.05, 0.1, 0.5, 5, 50]) histogram.observe(undefined, v);
    const family = parseExposition(registry.expose()).get('d_seconds');
    expect(family?.type).toBe('histogram');
    const buckets = family?.samples.filter((s) => s.name === 'd_seconds_bucket') ?? [];
    expect(buckets.map((s) => [s.labels['le'], s.value])).toEqual([
      ['0.1', 2], // 0.1 is inclusive (le = less or equal)
      ['1', 3],
      ['10', 4],
      ['+Inf', 5],
    ]);
    expect(family?.samples.find((s) => s.name === 'd_seconds_sum')?.value).toBeCloseTo(55.65, 10);
    expect(family?.samples.find((s) => s.name === 'd_seconds_count')?.value).toBe(5);
    // Cumulative: never decreasing, and +Inf equals _count.
    for (let i = 1; i < buckets.length; i++) expect(buckets[i]!.value).toBeGreaterThanOrEqual(buckets[i - 1]!.value);
  });

  it('keeps histogram labels next to le', () => {
    const registry = new MetricsRegistry();
    const histogram = registry.histogram({ name: 'h', help: 'h', buckets: [1], labels: { phase: ['x'] } });
    histogram.observe({ phase: 'x' }, 2);
    const text = registry.expose();
    expect(text).toContain('h_bucket{phase="x",le="1"} 0\n');
    expect(text).toContain('h_bucket{phase="x",le="+Inf"} 1\n');
    expect(text).toContain('h_sum{phase="x"} 2\n');
  });

  it('refuses label values outside the declared set, unknown labels, and bad definitions', () => {
    const registry = new MetricsRegistry();
    const counter = registry.counter({ name: 'x_total', help: 'x', labels: { kind: ['a'] } });
    const codeOf = (fn: () => unknown): string | undefined => {
      try {
        fn();
      } catch (err) {
        return err instanceof PullguardError ? err.code : 'not a PullguardError';
      }
      return undefined;
    };
    expect(codeOf(() => counter.inc({ kind: 'https://user:secret@example.com/' }))).toBe('INTERNAL');
    expect(codeOf(() => counter.inc({ kind: 'a', other: 'a' } as never))).toBe('INTERNAL');
    expect(codeOf(() => counter.inc(undefined))).toBe('INTERNAL');
    expect(codeOf(() => counter.inc({ kind: 'a' }, -1))).toBe('INTERNAL');
    expect(codeOf(() => registry.counter({ name: 'x_total', help: 'dup' }))).toBe('INTERNAL');
    expect(codeOf(() => registry.counter({ name: 'bad-name', help: '' }))).toBe('INTERNAL');
    expect(codeOf(() => registry.histogram({ name: 'h', help: '', buckets: [1, 1] }))).toBe('INTERNAL');
    expect(codeOf(() => registry.histogram({ name: 'h2', help: '', buckets: [1], labels: { le: ['1'] } }))).toBe('INTERNAL');
    registry.histogram({ name: 'lat', help: '', buckets: [1] });
    expect(codeOf(() => registry.counter({ name: 'lat_count', help: '' }))).toBe('INTERNAL');
    // The refused value never reached the output.
    expect(registry.expose()).not.toContain('secret');
    expect(counter.get({ kind: 'a' })).toBe(0);
  });

  it('formats special values', () => {
    const registry = new MetricsRegistry();
    const gauge = registry.gauge({ name: 'g', help: 'g', labels: { k: ['inf', 'nan', 'big', 'neg'] } });
    gauge.set({ k: 'inf' }, Infinity);
    gauge.set({ k: 'nan' }, NaN);
    gauge.set({ k: 'big' }, 1e21);
    gauge.set({ k: 'neg' }, -2);
    const samples = parseExposition(registry.expose()).get('g')?.samples ?? [];
    const byK = Object.fromEntries(samples.map((s) => [s.labels['k'], s.value]));
    expect(byK['inf']).toBe(Infinity);
    expect(byK['nan']).toBeNaN();
    expect(byK['big']).toBe(1e21);
    expect(byK['neg']).toBe(-2);
  });
});
