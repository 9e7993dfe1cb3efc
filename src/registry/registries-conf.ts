/**
 * containers-registries.conf(5) version 2: `[[registry]]` tables with `prefix`, `location`,
 * `insecure`, `blocked`, `mirror-by-digest-only` and `[[registry.mirror]]` (`location`, `insecure`,
 * `pull-from-mirror`). Parsed strictly (unknown keys are problems; all problems reported at once).
 * `pullSources` turns a reference into the ordered endpoints to try: mirrors, then the source.
 */
import { parse as parseToml } from 'smol-toml';
import { ValidationError, PullguardError } from '../domain/errors.js';
import { formatReference, parseReference, type ImageReference } from '../domain/reference.js';

export interface MirrorEntry {
  readonly location: string;
  readonly insecure: boolean;
  readonly pullFromMirror: 'all' | 'digest-only' | 'tag-only';
}

export interface RegistryEntry {
  /** `host[:port][/path]` or `*.example.com`. */
  readonly prefix: string;
  /** Where the prefix is served; equals prefix when not rewritten (empty for wildcard prefixes). */
  readonly location: string;
  readonly insecure: boolean;
  readonly blocked: boolean;
  readonly mirrorByDigestOnly: boolean;
  readonly mirrors: readonly MirrorEntry[];
}

export interface RegistriesConfig {
  readonly registries: readonly RegistryEntry[];
}

export const EMPTY_REGISTRIES_CONFIG: RegistriesConfig = Object.freeze({ registries: [] });

/** One place to try: a physical reference and whether it speaks plain HTTP. */
export interface PullSource {
  readonly reference: ImageReference;
  readonly insecure: boolean;
  readonly mirror: boolean;
}

const TOP_KEYS = new Set(['registry', 'unqualified-search-registries', 'short-name-mode', 'aliases', 'credential-helpers']);
const REGISTRY_KEYS = new Set(['prefix', 'location', 'insecure', 'blocked', 'mirror-by-digest-only', 'mirror']);
const MIRROR_KEYS = new Set(['location', 'insecure', 'pull-from-mirror']);
const LOCATION_RE = /^(?:[a-zA-Z0-9.-]+|\[[0-9a-fA-F:.]+\])(?::[0-9]+)?(?:\/[a-z0-9._/-]+)?$/;
const WILDCARD_RE = /^\*(?:\.[a-zA-Z0-9-]+)+$/;

function isTable(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof Date);
}

function bool(table: Record<string, unknown>, key: string, where: string, problems: string[]): boolean {
  const v = table[key];
  if (v === undefined) return false;
  if (typeof v !== 'boolean') {
    problems.push(`${where}: "${key}" must be a boolean`);
    return false;
  }
  return v;
}

function location(v: unknown, where: string, problems: string[]): string | undefined {
  if (v === undefined) return undefined;
  if (typeof v !== 'string' || v === '') {
    problems.push(`${where}: "location" must be a non-empty string`);
    return undefined;
  }
  if (/^[a-z]+:\/\//i.test(v)) {
    problems.push(`${where}: "location" ${JSON.stringify(v)} must not contain a URL scheme`);
    return undefined;
  }
  if (!LOCATION_RE.test(v)) {
    problems.push(`${where}: "location" ${JSON.stringify(v)} is not host[:port][/path]`);
    return undefined;
  }
  return v.replace(/\/+$/, '');
}

export function parseRegistriesConf(text: string, source = 'registries.conf'): RegistriesConfig {
  let doc: Record<string, unknown>;
  try {
    doc = parseToml(text) as Record<string, unknown>;
  } catch (err) {
    throw new PullguardError('INVALID_REGISTRIES_CONF', `${source}: invalid TOML: ${(err as Error).message.split('\n')[0]}`, { cause: err });
  }
  const problems: string[] = [];
  for (const key of Object.keys(doc)) {
    if (key === 'registries') problems.push('version 1 format ("[registries.*]") is not supported; use [[registry]] tables');
    else if (!TOP_KEYS.has(key)) problems.push(`unknown key ${JSON.stringify(key)}`);
  }
  const raw = doc.registry ?? [];
  const registries: RegistryEntry[] = [];
  if (!Array.isArray(raw)) {
    problems.push('"registry" must be an array of tables ([[registry]])');
  } else {
    const seen = new Set<string>();
    raw.forEach((entry: unknown, i) => {
      const where = `registry[${i}]`;
      if (!isTable(entry)) {
        problems.push(`${where}: must be a table`);
        return;
      }
      for (const key of Object.keys(entry)) if (!REGISTRY_KEYS.has(key)) problems.push(`${where}: unknown key ${JSON.stringify(key)}`);
      const loc = location(entry.location, where, problems);
      let prefix: string | undefined;
      if (entry.prefix !== undefined) {
        if (typeof entry.prefix !== 'string' || entry.prefix === '') problems.push(`${where}: "prefix" must be a non-empty string`);
        else if (!WILDCARD_RE.test(entry.prefix) && !LOCATION_RE.test(entry.prefix.replace(/(?::[\w][\w.-]*|@sha256:[0-9a-f]{64})$/, ''))) {
          problems.push(`${where}: "prefix" ${JSON.stringify(entry.prefix)} is neither host[:port][/path] nor *.domain`);
        } else prefix = entry.prefix;
      }
      if (prefix === undefined && entry.prefix === undefined && loc === undefined && entry.location === undefined) {
        problems.push(`${where}: needs "prefix" or "location"`);
      }
      if (prefix !== undefined && WILDCARD_RE.test(prefix) && entry.location !== undefined) {
        problems.push(`${where}: a wildcard prefix ${JSON.stringify(prefix)} cannot have a "location"`);
      }
      const insecure = bool(entry, 'insecure', where, problems);
      const blocked = bool(entry, 'blocked', where, problems);
      const mirrorByDigestOnly = bool(entry, 'mirror-by-digest-only', where, problems);
      const mirrors: MirrorEntry[] = [];
      const rawMirrors = entry.mirror ?? [];
      if (!Array.isArray(rawMirrors)) problems.push(`${where}: "mirror" must be an array of tables ([[registry.mirror]])`);
      else {
        rawMirrors.forEach((m: unknown, j) => {
          const mw = `${where}.mirror[${j}]`;
          if (!isTable(m)) {
            problems.push(`${mw}: must be a table`);
            return;
          }
          for (const key of Object.keys(m)) if (!MIRROR_KEYS.has(key)) problems.push(`${mw}: unknown key ${JSON.stringify(key)}`);
          const mloc = location(m.location, mw, problems);
          if (m.location === undefined) problems.push(`${mw}: "location" is required`);
          const pfm = m['pull-from-mirror'] ?? 'all';
          if (pfm !== 'all' && pfm !== 'digest-only' && pfm !== 'tag-only') {
            problems.push(`${mw}: "pull-from-mirror" must be "all", "digest-only" or "tag-only"`);
          }
          const minsecure = bool(m, 'insecure', mw, problems);
          if (mloc !== undefined) mirrors.push({ location: mloc, insecure: minsecure, pullFromMirror: pfm as MirrorEntry['pullFromMirror'] });
        });
      }
      const effectivePrefix = prefix ?? loc;
      if (effectivePrefix === undefined) return;
      if (seen.has(effectivePrefix)) problems.push(`${where}: prefix ${JSON.stringify(effectivePrefix)} is defined more than once`);
      seen.add(effectivePrefix);
      registries.push(
        Object.freeze({
          prefix: effectivePrefix,
          location: loc ?? (WILDCARD_RE.test(effectivePrefix) ? '' : effectivePrefix),
          insecure,
          blocked,
          mirrorByDigestOnly,
          mirrors: Object.freeze(mirrors),
        }),
      );
    });
  }
  if (problems.length > 0) throw new ValidationError('INVALID_REGISTRIES_CONF', source, problems);
  return Object.freeze({ registries: Object.freeze(registries) });
}

/** The length of the match of `prefix` against `ref`, or -1. */
function matchLength(prefix: string, ref: ImageReference, full: string): number {
  if (WILDCARD_RE.test(prefix)) {
    const suffix = prefix.slice(1); // ".example.com"
    const host = ref.domain.replace(/:\d+$/, '');
    return host.endsWith(suffix) && host.length > suffix.length ? ref.domain.length : -1;
  }
  if (!full.startsWith(prefix)) return -1;
  const next = full.charAt(prefix.length);
  return next === '' || next === '/' || next === ':' || next === '@' ? prefix.length : -1;
}

/** The `[[registry]]` entry with the longest matching prefix, with how much of the reference it matched. */
export function findRegistry(config: RegistriesConfig, ref: ImageReference): { entry: RegistryEntry; matched: number } | undefined {
  const full = formatReference(ref);
  let best: { entry: RegistryEntry; matched: number } | undefined;
  for (const entry of config.registries) {
    const n = matchLength(entry.prefix, ref, full);
    // The domain alone must not match "host:port" as if ":port" were a tag.
    if (n > 0 && n < ref.domain.length) continue;
    if (n > 0 && (best === undefined || n > best.matched)) best = { entry, matched: n };
  }
  return best;
}

function rewrite(ref: ImageReference, matched: number, location: string): ImageReference {
  const full = formatReference(ref);
  return parseReference(location + full.slice(matched), { defaultTag: false });
}

/**
 * Ordered pull sources for `ref`: usable mirrors, then the (possibly relocated) source. Throws
 * REGISTRY_DENIED for a blocked registry. `insecureHosts` are extra plain-HTTP hosts.
 */
export function pullSources(config: RegistriesConfig, ref: ImageReference, insecureHosts: ReadonlySet<string>): PullSource[] {
  const found = findRegistry(config, ref);
  if (found === undefined) return [{ reference: ref, insecure: insecureHosts.has(ref.domain), mirror: false }];
  const { entry, matched } = found;
  if (entry.blocked) {
    throw new PullguardError('REGISTRY_DENIED', `registry ${ref.domain} is blocked by registries.conf (prefix ${JSON.stringify(entry.prefix)}): ${ref.name}`, {
      facts: { host: ref.domain, repository: ref.path, prefix: entry.prefix },
    });
  }
  const byDigest = ref.digest !== undefined;
  const sources: PullSource[] = [];
  for (const mirror of entry.mirrors) {
    if (entry.mirrorByDigestOnly && !byDigest) continue;
    if (mirror.pullFromMirror === 'digest-only' && !byDigest) continue;
    if (mirror.pullFromMirror === 'tag-only' && byDigest) continue;
    const reference = rewrite(ref, matched, mirror.location);
    sources.push({ reference, insecure: mirror.insecure || insecureHosts.has(reference.domain), mirror: true });
  }
  const reference = entry.location === '' ? ref : rewrite(ref, matched, entry.location);
  sources.push({ reference, insecure: entry.insecure || insecureHosts.has(reference.domain), mirror: false });
  return sources;
}

/** Whether any configuration marks `host` insecure (used for blob fetches from a resolved source). */
export function isInsecureHost(config: RegistriesConfig, host: string, insecureHosts: ReadonlySet<string>): boolean {
  if (insecureHosts.has(host)) return true;
  for (const entry of config.registries) {
    if (entry.insecure && entry.location.split('/')[0] === host) return true;
    if (entry.mirrors.some((m) => m.insecure && m.location.split('/')[0] === host)) return true;
  }
  return false;
}
