/**
 * The executable containerd 2.x runs from its image-verifier bin dir, in one of two kinds: a perl
 * script that asks the daemon itself (perl-client.ts; the default, it starts in ~3 ms), or a shell
 * script that execs node on pullguard's verifier client (verifier-main.ts; where no perl is
 * installed, ~100 ms a pull more). `pullguard verifier install` writes it; `pullguard doctor` reads
 * it back through the marker line (what socket it asks, how long it waits, what it runs).
 */
import { randomBytes } from 'node:crypto';
import { chmod, mkdir, rename, rm, stat, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { PullguardError } from '../domain/errors.js';
import { packageRoot } from '../util/package-root.js';
import { perlVerifierBody } from './perl-client.js';

/** Starts the line that says what an installed script does, as JSON (doctor reads it). */
export const VERIFIER_MARKER = '# pullguard-verifier ';

/** containerd's default `bin_dir` of `io.containerd.image-verifier.v1.bindir`. */
export const CONTAINERD_DEFAULT_VERIFIER_BIN_DIR = '/opt/containerd/image-verifier/bin';

/** containerd's default `per_verifier_timeout`. */
export const CONTAINERD_DEFAULT_VERIFIER_TIMEOUT_MS = 10_000;

/** The client stops waiting this long before containerd's per-verifier timeout, so its reason reaches containerd. */
export const VERIFIER_TIMEOUT_MARGIN_MS = 1000;

export type VerifierClient = 'perl' | 'node';

export interface InstalledVerifier {
  readonly client: VerifierClient;
  /** The daemon's verifier socket the script asks. */
  readonly socket: string;
  /** How long the client waits for a verdict before it blocks with a reason. */
  readonly timeoutMs: number;
  /** The files every run needs: the interpreter (perl or node) and, for node, the compiled client. */
  readonly runs: readonly string[];
}

/** The compiled client (`dist/src/verifier/verifier-main.js`) of this installation. */
export function verifierClientPath(): string {
  return join(packageRoot(), 'dist', 'src', 'verifier', 'verifier-main.js');
}

const shellQuote = (text: string): string => `'${text.replace(/'/g, `'\\''`)}'`;

const HEADER = [
  '# pullguard image verifier for containerd 2.x (plugin io.containerd.image-verifier.v1.bindir),',
  '# written by `pullguard verifier install`. containerd runs it with -name, -digest and',
  '# -stdin-media-type after resolving an image and before fetching it; it asks the pullguard daemon',
  '# on its verifier socket and blocks the pull (exit 1 or 2, the reason on stdout) unless pullguard',
  '# allows the image, and when no daemon answers.',
];

export function verifierScript(verifier: InstalledVerifier): string {
  const marker = `${VERIFIER_MARKER}${JSON.stringify(verifier)}`;
  const [interpreter, client] = verifier.runs;
  if (interpreter === undefined || (verifier.client === 'node' && client === undefined))
    throw new PullguardError('INVALID_ARGUMENT', `a ${verifier.client} verifier needs ${verifier.client === 'node' ? 'node and its client' : 'perl'}`);
  if (verifier.client === 'perl') return [`#!${interpreter}`, ...HEADER, marker, perlVerifierBody(verifier)].join('\n');
  return [
    '#!/bin/sh',
    ...HEADER,
    marker,
    `exec ${shellQuote(interpreter)} ${shellQuote(client!)} --socket ${shellQuote(verifier.socket)} --timeout-ms ${verifier.timeoutMs} "$@"`,
    '',
  ].join('\n');
}

/** What a script in a bin dir says it does, or undefined if it is not pullguard's. */
export function readInstalledVerifier(text: string): InstalledVerifier | undefined {
  const line = text.split('\n').find((l) => l.startsWith(VERIFIER_MARKER));
  if (line === undefined) return undefined;
  try {
    const parsed = JSON.parse(line.slice(VERIFIER_MARKER.length)) as Record<string, unknown>;
    const { client, socket, timeoutMs, runs, node } = parsed;
    if (typeof socket !== 'string' || typeof timeoutMs !== 'number') return undefined;
    // Written by the first release, which had only the node client: { node, client: <its path> }.
    if (typeof node === 'string' && typeof client === 'string') return { client: 'node', socket, timeoutMs, runs: [node, client] };
    if ((client !== 'perl' && client !== 'node') || !Array.isArray(runs) || !runs.every((r) => typeof r === 'string')) return undefined;
    return { client, socket, timeoutMs, runs };
  } catch {
    return undefined;
  }
}

/** The perl a verifier would run: the first `perl` on PATH, or undefined. */
export async function findPerl(path: string | undefined): Promise<string | undefined> {
  for (const dir of (path ?? '/usr/local/bin:/usr/bin:/bin').split(':')) {
    if (dir === '' || !dir.startsWith('/')) continue;
    const candidate = join(dir, 'perl');
    const found = await stat(candidate).catch(() => undefined);
    if (found?.isFile() === true && (found.mode & 0o111) !== 0) return candidate;
  }
  return undefined;
}

/**
 * Writes `<binDir>/<name>` (mode 0755), atomically: containerd runs every file of the directory at
 * each pull, so a half-written script must never be there. The temp file is made in the parent
 * directory and renamed in (on another file system: in the directory itself, not executable, then
 * renamed).
 */
export async function installVerifier(options: { readonly binDir: string; readonly name: string; readonly verifier: InstalledVerifier }): Promise<string> {
  const { binDir, name, verifier } = options;
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/.test(name))
    throw new PullguardError('INVALID_ARGUMENT', `verifier name ${JSON.stringify(name)} is not a plain file name`);
  for (const path of verifier.runs) {
    const found = await stat(path).catch(() => undefined);
    if (found === undefined || !found.isFile())
      throw new PullguardError('INVALID_ARGUMENT', `${path} does not exist${path.endsWith('.js') ? ' (build pullguard first: npm ci)' : ''}`);
  }
  await mkdir(binDir, { recursive: true, mode: 0o755 });
  const target = join(binDir, name);
  const text = verifierScript(verifier);
  const suffix = `${process.pid}-${randomBytes(4).toString('hex')}`;
  const outside = join(dirname(binDir), `.pullguard-verifier-${suffix}`);
  try {
    await writeFile(outside, text, { mode: 0o755 });
    await chmod(outside, 0o755);
    await rename(outside, target);
  } catch (err) {
    await rm(outside, { force: true });
    if ((err as NodeJS.ErrnoException).code !== 'EXDEV' && (err as NodeJS.ErrnoException).code !== 'EACCES') throw err;
    const inside = join(binDir, `.pullguard-verifier-${suffix}`);
    try {
      await writeFile(inside, text, { mode: 0o644 });
      await rename(inside, target);
      await chmod(target, 0o755);
    } finally {
      await rm(inside, { force: true });
    }
  }
  return target;
}
