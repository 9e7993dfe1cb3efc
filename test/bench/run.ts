/**
 * `npm run bench` — every benchmark part in turn, or those named on the command line:
 *   node dist/test/bench/run.js [pull|memory|signatures|load|list|containerd|runtime-fetch|repull ...]
 * Prints each part's table, then a summary of every figure against its target, and merges the
 * numbers into dist/bench-results.json. Exits 0 even when a target is missed (the summary says
 * MISSED); non-zero only when a part could not run at all.
 */
import { log } from './bench-env.js';
import { printSummary, writeResults, type PartResult } from './report.js';

const PARTS: Record<string, () => Promise<PartResult>> = {
  pull: async () => (await import('./pull-bench.js')).runPullBench(),
  memory: async () => (await import('./memory-bench.js')).runMemoryBench(),
  signatures: async () => (await import('./signatures-bench.js')).runSignaturesBench(),
  load: async () => (await import('./load-bench.js')).runLoadBench(),
  list: async () => (await import('./list-bench.js')).runListBench(),
  containerd: async () => (await import('./containerd-bench.js')).runContainerdBench(),
  'runtime-fetch': async () => (await import('./runtime-fetch-bench.js')).runRuntimeFetchBench(),
  repull: async () => (await import('./repull-bench.js')).runRepullBench(),
};

async function main(argv: readonly string[]): Promise<number> {
  if (argv.includes('--help') || argv.includes('-h')) {
    console.log(`Usage: node dist/test/bench/run.js [${Object.keys(PARTS).join('|')} ...]   (default: all)`);
    return 0;
  }
  const unknown = argv.filter((a) => !(a in PARTS));
  if (unknown.length > 0) {
    console.error(`unknown benchmark part(s): ${unknown.join(', ')}; choose from ${Object.keys(PARTS).join(', ')}`);
    return 2;
  }
  const selected = argv.length > 0 ? [...new Set(argv)] : Object.keys(PARTS);
  const results: PartResult[] = [];
  const failures: string[] = [];
  for (const name of selected) {
    log(`running ${name}`);
    try {
      const result = await PARTS[name]!();
      results.push(result);
      log(`${name} done in ${result.seconds} s`);
    } catch (err) {
      failures.push(name);
      console.error(`\n${name}: FAILED TO RUN: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
    }
  }
  printSummary(results);
  if (failures.length > 0) console.log(`Parts that failed to run: ${failures.join(', ')}`);
  const path = await writeResults(results);
  console.log(`Results written to ${path}`);
  return failures.length > 0 ? 1 : 0;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: unknown) => {
    console.error(err);
    process.exit(1);
  },
);
