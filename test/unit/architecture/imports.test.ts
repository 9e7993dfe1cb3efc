/**
 * The layering rules of README "Architecture", checked on the import specifiers of src/**: the policy
 * core stays pure, the gRPC layer stays thin, and only the composition root reads the environment.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const SRC = fileURLToPath(new URL('../../../src/', import.meta.url));

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => (entry.isDirectory() ? sourceFiles(join(dir, entry.name)) : entry.name.endsWith('.ts') ? [join(dir, entry.name)] : []));
}

const files = sourceFiles(SRC).map((path) => {
  const text = readFileSync(path, 'utf8');
  const rel = relative(SRC, path);
  const imports = [...text.matchAll(/^\s*(?:import|export)\s[^;]*?from\s+'([^']+)'/gm), ...text.matchAll(/import\('([^']+)'\)/g)].map((m) => m[1]!);
  const layers = imports.filter((s) => s.startsWith('.')).map((s) => relative(SRC, join(path, '..', s)).split('/')[0]!.replace(/\.js$/, ''));
  return { rel, module: rel.includes('/') ? rel.split('/')[0]! : rel.replace(/\.ts$/, ''), text, imports, layers };
});

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

  it('signature verification imports only domain (plus openpgp and node:crypto), no I/O', () => {
    expect(offenders('signature', ['domain'], /^(?!openpgp$|node:crypto$)/)).toEqual([]);
  });

  it('the pull use case depends on ports, not on transports, gRPC, the file system, config or its observers', () => {
    expect(offenders('pull', ['domain', 'policy', 'signature', 'sigstore'], /^(undici|@grpc|node:fs|node:net|node:http|pino)/)).toEqual([]);
  });

  it('the gRPC layer never reaches the registry, lookaside or store directly, nor what observes pulls', () => {
    const cri = files.filter((f) => f.module === 'cri');
    expect(cri.flatMap((f) => f.layers.filter((l) => ['registry', 'lookaside', 'store', 'metrics', 'events'].includes(l)).map((l) => `${f.rel} imports ${l}/`))).toEqual([]);
  });


  it('only the composition root and config read the environment', () => {
    const readers = files.filter((f) => /process\.env\b/.test(f.text)).map((f) => f.rel);
    expect(readers.filter((r) => r !== 'main.ts' && !r.startsWith('config/'))).toEqual([]);
  });

  it('nothing installs global HTTP state', () => {
    expect(files.filter((f) => /setGlobalDispatcher/.test(f.text)).map((f) => f.rel)).toEqual([]);
  });
});
