/**
 * containers-registries.d(5): which lookaside (signature storage) base URL serves an image, and
 * whether sigstore attachments are used. Semantics follow c/image `docker/registries_d.go`:
 * `*.yaml` files merged, duplicate scopes across files fatal, scope candidates from the most
 * specific identity down to `*.domain` wildcards, then `default-docker`, then a built-in file://
 * default, with per-field fall-through (a section without a URL defers to its parent scope).
 *
 * Better than upstream: every problem in every file is reported at once, and URLs are validated at
 * load time instead of at the first pull that happens to hit them.
 */
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { ValidationError } from '../domain/errors.js';
import type { ImageReference } from '../domain/reference.js';

/** Upstream's root default; pullguard passes its own under the state dir. */
export const UPSTREAM_DEFAULT_LOOKASIDE = 'file:///var/lib/containers/sigstore';

export interface RegistriesDFile {
  readonly path: string;
  readonly text: string;
}

/** Where signatures of one image are read from, and which configuration chose it. */
export interface LookasideLocation {
  /** The configured top-level URL (not yet extended with the repository path). */
  readonly baseUrl: string;
  /** The `docker:` key that matched, `default-docker`, or `built-in default`. */
  readonly scope: string;
  /** The file the scope came from; absent for the built-in default. */
  readonly file?: string;
}

export interface RegistriesD {
  /** `undefined` only when the built-in default was disabled (`defaultLookaside: null`). */
  lookasideFor(reference: ImageReference): LookasideLocation | undefined;
  useSigstoreAttachmentsFor(reference: ImageReference): boolean;
}

export interface RegistriesDOptions {
  /**
   * The lookaside used when no scope and no `default-docker` gives one. Default
   * `file:///var/lib/containers/sigstore` as upstream for root; `null` disables it.
   */
  readonly defaultLookaside?: string | null;
}

interface Section {
  readonly lookaside?: string;
  readonly sigstore?: string;
  readonly useSigstoreAttachments?: boolean;
  readonly file: string;
}

const SECTION_KEYS = {
  lookaside: 'lookaside',
  sigstore: 'sigstore',
  attachments: 'use-sigstore-attachments',
} as const;

// yaml.v3 decodes YAML 1.1 booleans into a typed bool field; keep that for `use-sigstore-attachments`.
const YAML11_TRUE = new Set(['y', 'Y', 'yes', 'Yes', 'YES', 'on', 'On', 'ON', 'true', 'True', 'TRUE']);
const YAML11_FALSE = new Set(['n', 'N', 'no', 'No', 'NO', 'off', 'Off', 'OFF', 'false', 'False', 'FALSE']);

function isMapping(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'a sequence';
  if (typeof value === 'object') return 'a mapping';
  return `${typeof value} ${JSON.stringify(value)}`;
}

/** Checks a URL the way it is later used; returns the upstream-style problem or undefined. */
function urlProblem(url: string): string | undefined {
  try {
    new URL(url);
    return undefined;
  } catch (err) {
    return `Invalid signature storage URL ${url}: ${(err as Error).message}`;
  }
}

function parseSection(value: unknown, file: string, where: string, problems: string[]): Section {
  // A null section (`default-docker:` with nothing under it) is an empty section, as in Go.
  if (value === null || value === undefined) return { file };
  if (!isMapping(value)) {
    problems.push(`parsing ${file}: ${where} must be a mapping, got ${describe(value)}`);
    return { file };
  }
  const url = (key: string): string | undefined => {
    const raw = value[key];
    if (raw === undefined || raw === null) return undefined;
    if (typeof raw === 'string' || typeof raw === 'number' || typeof raw === 'boolean') {
      const text = String(raw);
      // An empty URL counts as unset upstream (falls through to the parent scope).
      if (text === '') return undefined;
      const problem = urlProblem(text);
      if (problem !== undefined) problems.push(`${file}: ${where}.${key}: ${problem}`);
      return text;
    }
    problems.push(`parsing ${file}: ${where}.${key} must be a string, got ${describe(raw)}`);
    return undefined;
  };
  const lookaside = url(SECTION_KEYS.lookaside);
  const sigstore = url(SECTION_KEYS.sigstore);
  // lookaside-staging / sigstore-staging are write locations: validated for type only.
  for (const staging of ['lookaside-staging', 'sigstore-staging']) {
    const raw = value[staging];
    if (raw !== undefined && raw !== null && typeof raw !== 'string') {
      problems.push(`parsing ${file}: ${where}.${staging} must be a string, got ${describe(raw)}`);
    }
  }
  let useSigstoreAttachments: boolean | undefined;
  const rawAttach = value[SECTION_KEYS.attachments];
  if (typeof rawAttach === 'boolean') useSigstoreAttachments = rawAttach;
  else if (typeof rawAttach === 'string' && YAML11_TRUE.has(rawAttach)) useSigstoreAttachments = true;
  else if (typeof rawAttach === 'string' && YAML11_FALSE.has(rawAttach)) useSigstoreAttachments = false;
  else if (rawAttach !== undefined && rawAttach !== null) {
    problems.push(`parsing ${file}: ${where}.${SECTION_KEYS.attachments} must be a boolean, got ${describe(rawAttach)}`);
  }
  return {
    file,
    ...(lookaside !== undefined ? { lookaside } : {}),
    ...(sigstore !== undefined ? { sigstore } : {}),
    ...(useSigstoreAttachments !== undefined ? { useSigstoreAttachments } : {}),
  };
}

/**
 * The registries.d scope keys tried for `ref`, most specific first (c/image
 * `DockerReferenceIdentity` + `DockerReferenceNamespaces`): `name:tag` or `name@digest`, the
 * repository, each parent namespace down to `host[:port]`, then `*.domain` wildcards built from the
 * port-stripped host. `host:port` never falls back to the bare `host`.
 */
export function registriesDScopeCandidates(ref: ImageReference): string[] {
  const candidates: string[] = [];
  if (ref.digest !== undefined) candidates.push(`${ref.name}@${ref.digest}`);
  else if (ref.tag !== undefined) candidates.push(`${ref.name}:${ref.tag}`);
  let name = ref.name;
  for (;;) {
    candidates.push(name);
    const slash = name.lastIndexOf('/');
    if (slash === -1) break;
    name = name.slice(0, slash);
  }
  // Upstream splits at the first ':' (so the port goes); the policy format cannot match on ports.
  let host = name.split(':')[0] ?? name;
  for (;;) {
    const dot = host.indexOf('.');
    if (dot === -1) break;
    host = host.slice(dot + 1);
    candidates.push(`*.${host}`);
  }
  return candidates;
}

/**
 * Parses and merges registries.d files. Throws ValidationError INVALID_REGISTRIES_D listing every
 * problem (YAML errors as `parsing <path>: <err>`, duplicate scopes with upstream's exact texts,
 * invalid URLs as `Invalid signature storage URL <u>: <err>`).
 */
export function parseRegistriesD(files: readonly RegistriesDFile[], options: RegistriesDOptions = {}): RegistriesD {
  const problems: string[] = [];
  let defaultDocker: Section | undefined;
  const docker = new Map<string, Section>();

  for (const { path, text } of files) {
    let doc: unknown;
    try {
      // yaml.v3 (upstream) also rejects duplicate keys within one mapping; `uniqueKeys` is the default.
      // logLevel 'error': yaml's warnings (e.g. an unknown tag) must not go to process warnings.
      doc = parseYaml(text, { logLevel: 'error' });
    } catch (err) {
      // The first line carries the position; the code frame that follows does not fit a log line.
      problems.push(`parsing ${path}: ${(err as Error).message.split('\n')[0] ?? ''}`);
      continue;
    }
    if (doc === null || doc === undefined) continue; // an empty file is an empty config
    if (!isMapping(doc)) {
      problems.push(`parsing ${path}: the top level must be a mapping, got ${describe(doc)}`);
      continue;
    }
    if (doc['default-docker'] !== undefined && doc['default-docker'] !== null) {
      const section = parseSection(doc['default-docker'], path, 'default-docker', problems);
      if (defaultDocker !== undefined) {
        problems.push(
          `Error parsing signature storage configuration: "default-docker" defined both in ${JSON.stringify(defaultDocker.file)} and ${JSON.stringify(path)}`,
        );
      } else {
        defaultDocker = section;
      }
    }
    const namespaces = doc['docker'];
    if (namespaces === undefined || namespaces === null) continue;
    if (!isMapping(namespaces)) {
      problems.push(`parsing ${path}: docker must be a mapping, got ${describe(namespaces)}`);
      continue;
    }
    for (const [scope, value] of Object.entries(namespaces)) {
      const section = parseSection(value, path, `docker.${JSON.stringify(scope)}`, problems);
      const earlier = docker.get(scope);
      if (earlier !== undefined) {
        problems.push(
          `Error parsing signature storage configuration: "docker" namespace ${JSON.stringify(scope)} defined both in ${JSON.stringify(earlier.file)} and ${JSON.stringify(path)}`,
        );
      } else {
        docker.set(scope, section);
      }
    }
  }

  const builtIn = options.defaultLookaside === undefined ? UPSTREAM_DEFAULT_LOOKASIDE : options.defaultLookaside;
  if (builtIn !== null) {
    const problem = urlProblem(builtIn);
    if (problem !== undefined) problems.push(`built-in default lookaside: ${problem}`);
  }
  if (problems.length > 0) {
    throw new ValidationError('INVALID_REGISTRIES_D', 'invalid registries.d configuration', problems);
  }

  /** Sections in lookup order, each with the scope name that found it. */
  const sectionsFor = (ref: ImageReference): Array<{ scope: string; section: Section }> => {
    const found: Array<{ scope: string; section: Section }> = [];
    for (const scope of registriesDScopeCandidates(ref)) {
      const section = docker.get(scope);
      if (section !== undefined) found.push({ scope, section });
    }
    if (defaultDocker !== undefined) found.push({ scope: 'default-docker', section: defaultDocker });
    return found;
  };

  return Object.freeze({
    lookasideFor(reference: ImageReference): LookasideLocation | undefined {
      for (const { scope, section } of sectionsFor(reference)) {
        const baseUrl = section.lookaside ?? section.sigstore;
        if (baseUrl !== undefined) return Object.freeze({ baseUrl, scope, file: section.file });
      }
      return builtIn === null ? undefined : Object.freeze({ baseUrl: builtIn, scope: 'built-in default' });
    },
    useSigstoreAttachmentsFor(reference: ImageReference): boolean {
      for (const { section } of sectionsFor(reference)) {
        if (section.useSigstoreAttachments !== undefined) return section.useSigstoreAttachments;
      }
      return false;
    },
  });
}

/**
 * Reads `*.yaml` in `dir` (sorted, as Go's ReadDir lists them). A missing directory is an empty
 * configuration; a file that vanishes between listing and reading is skipped, as upstream does.
 */
export async function loadRegistriesD(dir: string, options: RegistriesDOptions = {}): Promise<RegistriesD> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return parseRegistriesD([], options);
    throw new ValidationError('INVALID_REGISTRIES_D', 'invalid registries.d configuration', [`reading ${dir}: ${(err as Error).message}`], { cause: err });
  }
  const files: RegistriesDFile[] = [];
  const readProblems: string[] = [];
  for (const name of names.filter((n) => n.endsWith('.yaml')).sort()) {
    const path = join(dir, name);
    try {
      files.push({ path, text: await readFile(path, 'utf8') });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue;
      readProblems.push(`reading ${path}: ${(err as Error).message}`);
    }
  }
  try {
    const config = parseRegistriesD(files, options);
    if (readProblems.length === 0) return config;
  } catch (err) {
    if (err instanceof ValidationError) {
      throw new ValidationError('INVALID_REGISTRIES_D', 'invalid registries.d configuration', [...readProblems, ...err.problems]);
    }
    throw err;
  }
  throw new ValidationError('INVALID_REGISTRIES_D', 'invalid registries.d configuration', readProblems);
}
