/**
 * The layering rules of README "Architecture", checked on the import specifiers of src/**: the policy
 * core stays pure, the gRPC layer stays thin, and only the composition root reads the environment.
 */
import { describe, expect, it } from 'vitest';
import { backArrows, folderEdges, readmeGraph, renderGraph, sourceFiles } from '../../tools/folder-graph.js';

const files = sourceFiles().map((f) => ({ ...f, module: f.folder, layers: f.importedFolders }));

function offenders(module: string, allowed: readonly string[], packages: RegExp = /^$/): string[] {
  return files
    .filter((f) => f.module === module)
    .flatMap((f) => [
      ...f.layers.filter((l) => l !== module && !allowed.includes(l)).map((l) => `${f.rel} imports ${l}/`),
      ...f.imports.filter((s) => !s.startsWith('.') && packages.test(s)).map((s) => `${f.rel} imports ${s}`),
    ]);
}

describe('architecture', () => {
  it('domain imports nothing of ours and does no I/O', () => {
    expect(offenders('domain', [], /^(node:fs|node:net|node:http|undici|@grpc|pino)/)).toEqual([]);
  });

  it('the policy core imports only domain, and no I/O, clock or logger', () => {
    expect(offenders('policy', ['domain'], /./)).toEqual([]);
    for (const f of files.filter((x) => x.module === 'policy')) expect(f.text, f.rel).not.toMatch(/Date\.now\(|new Date\(\)|Math\.random\(/);
  });

  it('the pull use case depends on ports, not on transports, gRPC, the file system, config, fetchers or its observers', () => {
    expect(offenders('pull', ['domain', 'policy', 'signature'], /^(undici|@grpc|node:fs|node:net|node:http|pino)/)).toEqual([]);
  });

  it('verification of both signature formats imports no fetcher, registry or configuration', () => {
    expect(offenders('signature', ['domain'], /^(undici|@grpc|node:fs|node:http|pino)/)).toEqual([]);
  });

  it('every folder sits on a row of the layer order, and no import runs back up it or across a row', () => {
    expect(backArrows()).toEqual([]);
  });

  it('README "Architecture" shows the folder graph as the imports make it (npm run architecture -- --write)', () => {
    expect(readmeGraph()).toBe(renderGraph(folderEdges()));
  });

  it('the gRPC layer never reaches the registry, lookaside or store directly, nor what observes pulls', () => {
    const cri = files.filter((f) => f.module === 'cri');
    expect(
      cri.flatMap((f) => f.layers.filter((l) => ['registry', 'lookaside', 'store', 'metrics', 'events'].includes(l)).map((l) => `${f.rel} imports ${l}/`)),
    ).toEqual([]);
  });

  it('only the composition root and config read the environment', () => {
    const readers = files.filter((f) => /process\.env\b/.test(f.text)).map((f) => f.rel);
    expect(readers.filter((r) => r !== 'main.ts' && !r.startsWith('config/'))).toEqual([]);
  });

  it('nothing installs global HTTP state', () => {
    expect(files.filter((f) => /setGlobalDispatcher/.test(f.text)).map((f) => f.rel)).toEqual([]);
  });
});
