/**
 * Runs once before the suite: integration tests spawn `dist/src/main.js` as a real process, so the
 * build must be current. It compiles unless the sources are exactly those of the last build that
 * passed here (same files, sizes and mtimes), so `npm test` compiles once however many vitest runs
 * it makes, and a type error fails every run until it is fixed.
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

export default function setup(): void {
  const root = fileURLToPath(new URL('../..', import.meta.url));
  const stamp = join(root, 'dist', '.sources-compiled');
  const sources = sourcesFingerprint(root);
  if (existsSync(join(root, 'dist/src/main.js')) && existsSync(stamp) && readFileSync(stamp, 'utf8') === sources) return;
  execFileSync(process.execPath, [`${root}/node_modules/typescript/bin/tsc`, '-p', `${root}/tsconfig.json`], { stdio: 'inherit' });
  mkdirSync(join(root, 'dist'), { recursive: true });
  writeFileSync(stamp, sources);
}

/** What tsc reads: every .ts under src/ and test/, tsconfig.json and package.json (the types of the dependencies). */
function sourcesFingerprint(root: string): string {
  const hash = createHash('sha256');
  const files = [join(root, 'tsconfig.json'), join(root, 'package.json'), ...typeScriptFiles(join(root, 'src')), ...typeScriptFiles(join(root, 'test'))];
  for (const file of files.sort()) {
    const { size, mtimeMs } = statSync(file);
    hash.update(`${relative(root, file)}\0${size}\0${mtimeMs}\n`);
  }
  return hash.digest('hex');
}

function typeScriptFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) return entry.name === 'node_modules' ? [] : typeScriptFiles(path);
    return entry.isFile() && entry.name.endsWith('.ts') ? [path] : [];
  });
}
