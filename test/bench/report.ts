/**
 * Benchmark results: every figure with its unit and (optional) target, printed as aligned tables and
 * merged into dist/bench-results.json so a part run alone updates only its own entries.
 */
import { existsSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { cpus, totalmem } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = fileURLToPath(new URL('../../..', import.meta.url));
export const RESULTS_PATH = join(ROOT, 'dist', 'bench-results.json');

export interface Target {
  /** The figure must be below (`<`) or at most (`<=`) this value; or exactly (`==`). */
  readonly op: '<' | '<=' | '==';
  readonly value: number;
}

export interface Figure {
  readonly name: string;
  readonly value: number;
  readonly unit: string;
  readonly target?: Target;
}

export interface PartResult {
  readonly part: string;
  readonly figures: readonly Figure[];
  /** Raw samples and settings, for the JSON file only. */
  readonly details: Record<string, unknown>;
  readonly seconds: number;
}

export function meets(figure: Figure): boolean | undefined {
  const t = figure.target;
  if (t === undefined) return undefined;
  if (Number.isNaN(figure.value)) return false;
  return t.op === '<' ? figure.value < t.value : t.op === '<=' ? figure.value <= t.value : figure.value === t.value;
}

function formatValue(value: number, unit: string): string {
  if (Number.isNaN(value)) return 'n/a';
  // Ratios (no unit) always show two decimals; other figures as many as are meaningful.
  const digits = unit === '' ? 2 : Math.abs(value) >= 100 || Number.isInteger(value) ? 0 : Math.abs(value) >= 10 ? 1 : 2;
  return `${value.toFixed(digits)}${unit === '' ? '' : ` ${unit}`}`;
}

/** Prints rows as a left/right aligned table with a header rule. */
export function printTable(headers: readonly string[], rows: readonly (readonly string[])[], log: (line: string) => void = console.log): void {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  // Numbers right-aligned, text left-aligned.
  const numeric = headers.map((_, i) => i > 0 && rows.every((r) => /^(?:(?:[<>=]+ )?-?\d[\d.]*(?: [A-Za-z/%]+)?|n\/a|)$/.test(r[i] ?? '')));
  const line = (cells: readonly string[]): string =>
    cells
      .map((c, i) => (numeric[i] ? c.padStart(widths[i]!) : c.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd();
  log(line(headers));
  log(widths.map((w) => '-'.repeat(w)).join('  '));
  for (const row of rows) log(line(row));
}

export function figureRow(part: string, figure: Figure): string[] {
  const ok = meets(figure);
  const target = figure.target === undefined ? '' : `${figure.target.op} ${formatValue(figure.target.value, figure.unit)}`;
  return [`${part}: ${figure.name}`, formatValue(figure.value, figure.unit), target, ok === undefined ? '' : ok ? 'ok' : 'MISSED'];
}

export function printSummary(results: readonly PartResult[]): void {
  console.log('\n=== Summary ===');
  printTable(
    ['figure', 'value', 'target', 'status'],
    results.flatMap((r) => r.figures.map((f) => figureRow(r.part, f))),
  );
  const missed = results.flatMap((r) => r.figures.filter((f) => meets(f) === false).map((f) => `${r.part}: ${f.name}`));
  const figures = results.reduce((n, r) => n + r.figures.length, 0);
  console.log(
    figures === 0
      ? '\nNo figures (no part completed).'
      : missed.length === 0
        ? '\nAll targets met.'
        : `\nMISSED ${missed.length} target(s): ${missed.join('; ')}`,
  );
}

/** Merges these parts into dist/bench-results.json (other parts' earlier results are kept). */
export async function writeResults(results: readonly PartResult[]): Promise<string> {
  let previous: { parts?: Record<string, unknown> } = {};
  if (existsSync(RESULTS_PATH)) {
    try {
      previous = JSON.parse(await readFile(RESULTS_PATH, 'utf8')) as typeof previous;
    } catch {
      previous = {};
    }
  }
  const parts: Record<string, unknown> = { ...(previous.parts ?? {}) };
  const now = new Date().toISOString();
  for (const r of results) {
    parts[r.part] = {
      ranAt: now,
      seconds: r.seconds,
      figures: r.figures.map((f) => ({ ...f, met: meets(f) ?? null })),
      details: r.details,
    };
  }
  const doc = {
    machine: { cpus: cpus().length, cpuModel: cpus()[0]?.model ?? 'unknown', memoryMiB: Math.round(totalmem() / 2 ** 20), node: process.version },
    updatedAt: now,
    parts,
  };
  await writeFile(RESULTS_PATH, `${JSON.stringify(doc, null, 2)}\n`);
  return RESULTS_PATH;
}
