/**
 * A small Prometheus registry: counters, gauges and fixed-bucket histograms rendered in the text
 * exposition format 0.0.4. Written by hand to keep the dependency list short.
 *
 * Every label is declared with the complete set of values it may take, and a value outside that set
 * is a programming error: that is how we guarantee bounded cardinality and that no image name, URL or
 * credential ever ends up in a label. Callers normalise their input (see pullguard-metrics.ts).
 */
import { PullguardError } from '../domain/errors.js';

/** For each label name, every value it may take. */
export type LabelSpec<L extends string> = { readonly [K in L]: readonly string[] };
export type Labels<L extends string> = { readonly [K in L]: string };

export interface MetricOptions<L extends string> {
  readonly name: string;
  readonly help: string;
  readonly labels?: LabelSpec<L>;
}

export interface HistogramOptions<L extends string> extends MetricOptions<L> {
  /** Upper bounds, strictly increasing; `+Inf` is added. */
  readonly buckets: readonly number[];
}

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

function programmingError(message: string): PullguardError {
  return new PullguardError('INTERNAL', message);
}

/** Label values: backslash, double quote and line feed are escaped (format 0.0.4). */
export function escapeLabelValue(value: string): string {
  return value.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}

/** HELP text: backslash and line feed are escaped. */
export function escapeHelp(text: string): string {
  return text.replace(/\\/g, '\\\\').replace(/\n/g, '\\n');
}

/** Numbers as Prometheus parses them (Go's ParseFloat accepts JS's `1e+21`). */
export function formatValue(value: number): string {
  if (Number.isNaN(value)) return 'NaN';
  if (value === Infinity) return '+Inf';
  if (value === -Infinity) return '-Inf';
  return String(value);
}

function renderLabels(pairs: readonly (readonly [string, string])[]): string {
  if (pairs.length === 0) return '';
  return `{${pairs.map(([name, value]) => `${name}="${escapeLabelValue(value)}"`).join(',')}}`;
}

abstract class Metric<L extends string> {
  readonly name: string;
  readonly help: string;
  abstract readonly type: 'counter' | 'gauge' | 'histogram';
  readonly #labelNames: readonly L[];
  readonly #allowed: ReadonlyMap<L, ReadonlySet<string>>;

  constructor(options: MetricOptions<L>, reserved: readonly string[]) {
    if (!METRIC_NAME.test(options.name)) throw programmingError(`invalid metric name ${JSON.stringify(options.name)}`);
    const spec = (options.labels ?? {}) as LabelSpec<L>;
    this.#labelNames = (Object.keys(spec) as L[]).sort();
    for (const label of this.#labelNames) {
      if (!LABEL_NAME.test(label) || label.startsWith('__') || reserved.includes(label)) {
        throw programmingError(`invalid label name ${JSON.stringify(label)} on ${options.name}`);
      }
      if (spec[label].length === 0) throw programmingError(`label ${label} on ${options.name} allows no value`);
    }
    this.#allowed = new Map(this.#labelNames.map((label) => [label, new Set(spec[label])]));
    this.name = options.name;
    this.help = options.help;
  }

  /** A stable key for one label set; throws on an undeclared label or value. */
  protected key(labels: Labels<L> | undefined): string {
    const given = (labels ?? {}) as Record<string, string>;
    const names = Object.keys(given);
    if (names.length !== this.#labelNames.length || names.some((n) => !this.#allowed.has(n as L))) {
      throw programmingError(`${this.name} takes labels [${this.#labelNames.join(', ')}], got [${names.sort().join(', ')}]`);
    }
    const values = this.#labelNames.map((label) => {
      const value = given[label] ?? '';
      if (!this.#allowed.get(label)?.has(value)) throw programmingError(`${this.name}: value not allowed for label ${label}`);
      return value;
    });
    return JSON.stringify(values);
  }

  protected pairs(key: string): (readonly [string, string])[] {
    const values = JSON.parse(key) as string[];
    return this.#labelNames.map((label, i) => [label, values[i] ?? ''] as const);
  }

  /** Every label combination, for metrics that are pre-set to zero. */
  protected allKeys(): string[] {
    let combos: string[][] = [[]];
    for (const label of this.#labelNames) {
      const values = [...(this.#allowed.get(label) ?? [])];
      combos = combos.flatMap((combo) => values.map((value) => [...combo, value]));
    }
    return combos.map((values) => JSON.stringify(values));
  }

  protected get labelCount(): number {
    return this.#labelNames.length;
  }

  render(): string {
    return [`# HELP ${this.name} ${escapeHelp(this.help)}`, `# TYPE ${this.name} ${this.type}`, ...this.samples()].join('\n');
  }

  protected abstract samples(): string[];
}

/** Counters and gauges with at most one label are exposed at zero from the start (no gaps in rate()). */
const PRESET_MAX_SERIES = 64;

class ScalarMetric<L extends string> extends Metric<L> {
  readonly type: 'counter' | 'gauge';
  protected readonly values = new Map<string, number>();

  constructor(type: 'counter' | 'gauge', options: MetricOptions<L>) {
    super(options, []);
    this.type = type;
    if (this.labelCount <= 1) {
      const keys = this.allKeys();
      if (keys.length <= PRESET_MAX_SERIES) for (const key of keys) this.values.set(key, 0);
    }
  }

  /** The current value of one series (0 when never touched). */
  get(labels?: Labels<L>): number {
    return this.values.get(this.key(labels)) ?? 0;
  }

  protected samples(): string[] {
    return [...this.values.entries()]
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([key, value]) => `${this.name}${renderLabels(this.pairs(key))} ${formatValue(value)}`);
  }
}

export class Counter<L extends string = never> extends ScalarMetric<L> {
  constructor(options: MetricOptions<L>) {
    super('counter', options);
  }

  inc(labels?: Labels<L>, amount = 1): void {
    if (!(amount >= 0) || !Number.isFinite(amount)) throw programmingError(`${this.name}: counters only go up (got ${amount})`);
    const key = this.key(labels);
    this.values.set(key, (this.values.get(key) ?? 0) + amount);
  }
}

export class Gauge<L extends string = never> extends ScalarMetric<L> {
  constructor(options: MetricOptions<L>) {
    super('gauge', options);
  }

  set(labels: Labels<L> | undefined, value: number): void {
    this.values.set(this.key(labels), value);
  }

  inc(labels?: Labels<L>, amount = 1): void {
    const key = this.key(labels);
    this.values.set(key, (this.values.get(key) ?? 0) + amount);
  }

  dec(labels?: Labels<L>, amount = 1): void {
    this.inc(labels, -amount);
  }
}

interface HistogramSeries {
  /** Per bucket (not cumulative); the last entry is +Inf. */
  readonly counts: number[];
  sum: number;
  count: number;
}

export class Histogram<L extends string = never> extends Metric<L> {
  readonly type = 'histogram' as const;
  readonly buckets: readonly number[];
  readonly #series = new Map<string, HistogramSeries>();

  constructor(options: HistogramOptions<L>) {
    super(options, ['le']);
    const buckets = options.buckets.filter((b) => b !== Infinity);
    if (buckets.length === 0 || buckets.some((b, i) => !Number.isFinite(b) || (i > 0 && b <= (buckets[i - 1] ?? -Infinity)))) {
      throw programmingError(`${options.name}: buckets must be finite and strictly increasing`);
    }
    this.buckets = Object.freeze([...buckets]);
    if (this.labelCount === 0) this.#series.set(this.key(undefined), this.#empty());
  }

  observe(labels: Labels<L> | undefined, value: number): void {
    if (Number.isNaN(value)) return; // a NaN would poison _sum for good
    const key = this.key(labels);
    let series = this.#series.get(key);
    if (series === undefined) {
      series = this.#empty();
      this.#series.set(key, series);
    }
    let index = this.buckets.findIndex((bound) => value <= bound);
    if (index === -1) index = this.buckets.length;
    series.counts[index] = (series.counts[index] ?? 0) + 1;
    series.sum += value;
    series.count += 1;
  }

  /** Count and sum of one series (for tests and debugging). */
  snapshot(labels?: Labels<L>): { count: number; sum: number } {
    const series = this.#series.get(this.key(labels));
    return { count: series?.count ?? 0, sum: series?.sum ?? 0 };
  }

  #empty(): HistogramSeries {
    return { counts: new Array<number>(this.buckets.length + 1).fill(0), sum: 0, count: 0 };
  }

  protected samples(): string[] {
    const lines: string[] = [];
    for (const [key, series] of [...this.#series.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
      const pairs = this.pairs(key);
      let cumulative = 0;
      const bounds = [...this.buckets, Infinity];
      bounds.forEach((bound, i) => {
        cumulative += series.counts[i] ?? 0;
        lines.push(`${this.name}_bucket${renderLabels([...pairs, ['le', formatValue(bound)]])} ${cumulative}`);
      });
      lines.push(`${this.name}_sum${renderLabels(pairs)} ${formatValue(series.sum)}`);
      lines.push(`${this.name}_count${renderLabels(pairs)} ${series.count}`);
    }
    return lines;
  }
}

export class MetricsRegistry {
  readonly #metrics = new Map<string, Metric<string>>();

  counter<L extends string = never>(options: MetricOptions<L>): Counter<L> {
    return this.#register(new Counter<L>(options));
  }

  gauge<L extends string = never>(options: MetricOptions<L>): Gauge<L> {
    return this.#register(new Gauge<L>(options));
  }

  histogram<L extends string = never>(options: HistogramOptions<L>): Histogram<L> {
    return this.#register(new Histogram<L>(options));
  }

  /** The whole registry in text format 0.0.4, metrics in registration order, ending with a newline. */
  expose(): string {
    const blocks = [...this.#metrics.values()].map((metric) => metric.render());
    return blocks.length === 0 ? '' : `${blocks.join('\n')}\n`;
  }

  #register<M extends Metric<string>>(metric: M): M {
    // Histograms own <name>_bucket/_sum/_count too; a clash there would corrupt the exposition.
    const taken = [...this.#metrics.values()].flatMap((m) =>
      m.type === 'histogram' ? [m.name, `${m.name}_bucket`, `${m.name}_sum`, `${m.name}_count`] : [m.name],
    );
    const wanted = metric.type === 'histogram' ? [metric.name, `${metric.name}_bucket`, `${metric.name}_sum`, `${metric.name}_count`] : [metric.name];
    if (wanted.some((name) => taken.includes(name))) throw programmingError(`metric ${metric.name} is already registered`);
    this.#metrics.set(metric.name, metric);
    return metric;
  }
}

/** The content type of `expose()`. */
export const EXPOSITION_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';
