/**
 * containerd's config.toml as containerd 2.x reads it, for `pullguard doctor`: the main file and its
 * `imports` (relative to the importing file, `*` globs), each migrated to config version 3 on its own
 * (v1 plugin names → full URIs; v2's `io.containerd.grpc.v1.cri` keys → `io.containerd.cri.v1.images`,
 * as containerd's CRI images plugin migrates them), then merged as containerd merges them: a later
 * file's plugin table replaces the whole table, `disabled_plugins` accumulate.
 * Source: containerd v2.4 cmd/containerd/server/config/config.go, plugins/cri/images/plugin.go.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { basename, dirname, isAbsolute, join, normalize } from 'node:path';
import { parse as parseToml } from 'smol-toml';

export const CRI_IMAGES_PLUGIN = 'io.containerd.cri.v1.images';
export const VERIFIER_PLUGIN = 'io.containerd.image-verifier.v1.bindir';
export const TRANSFER_PLUGIN = 'io.containerd.transfer.v1.local';
const LEGACY_CRI_PLUGIN = 'io.containerd.grpc.v1.cri';

type Table = Record<string, unknown>;

export interface ContainerdConfig {
  /** Every file read, the main one first. */
  readonly files: readonly string[];
  /** The version of the main file (absent = 1, as containerd reads it). */
  readonly version: number;
  /** Plugin URI → its table, in version 3 form. */
  readonly plugins: Readonly<Record<string, Table>>;
  readonly disabledPlugins: readonly string[];
  /** Where each plugin's table came from (the file that set it last). */
  readonly pluginSource: Readonly<Record<string, string>>;
}

const isTable = (value: unknown): value is Table => typeof value === 'object' && value !== null && !Array.isArray(value) && !(value instanceof Date);

/** Reads and merges; throws with the file named when one does not parse. */
export function loadContainerdConfig(path: string, readFile: (path: string) => string = (p) => readFileSync(p, 'utf8')): ContainerdConfig {
  const files: string[] = [];
  const plugins: Record<string, Table> = {};
  const pluginSource: Record<string, string> = {};
  const disabled: string[] = [];
  let mainVersion = 1;
  const pending = [path];
  const loaded = new Set<string>();
  while (pending.length > 0) {
    const file = pending.shift()!;
    if (loaded.has(file)) continue;
    loaded.add(file);
    let parsed: Table;
    try {
      parsed = parseToml(readFile(file)) as Table;
    } catch (err) {
      throw new Error(`${file}: ${(err as Error).message.split('\n')[0]}`);
    }
    files.push(file);
    const version = typeof parsed['version'] === 'number' ? parsed['version'] : 1;
    if (file === path) mainVersion = version;
    for (const [uri, table] of Object.entries(migratePlugins(version, isTable(parsed['plugins']) ? parsed['plugins'] : {}))) {
      plugins[uri] = table;
      pluginSource[uri] = file;
    }
    if (Array.isArray(parsed['disabled_plugins'])) {
      for (const p of parsed['disabled_plugins']) if (typeof p === 'string') disabled.push(version < 2 ? v1PluginName(p) : p);
    }
    if (Array.isArray(parsed['imports'])) {
      for (const entry of parsed['imports']) if (typeof entry === 'string') pending.push(...resolveImport(file, entry));
    }
  }
  return { files, version: mainVersion, plugins, disabledPlugins: [...new Set(disabled)], pluginSource };
}

function resolveImport(parent: string, entry: string): string[] {
  const path = normalize(isAbsolute(entry) ? entry : join(dirname(parent), entry));
  if (!path.includes('*')) return [path];
  // containerd uses filepath.Glob; imports glob the file name (`/etc/containerd/conf.d/*.toml`).
  const pattern = new RegExp(
    `^${basename(path)
      .replace(/[.+^${}()|[\]\\]/g, '\\$&')
      .replace(/\*/g, '[^/]*')
      .replace(/\?/g, '[^/]')}$`,
  );
  try {
    return readdirSync(dirname(path))
      .filter((name) => pattern.test(name))
      .sort()
      .map((name) => join(dirname(path), name));
  } catch {
    return [];
  }
}

/** containerd's v1 plugin names (`cri`) → full URIs. */
function v1PluginName(name: string): string {
  if (name.includes('.')) return name;
  const core: Record<string, string> = {
    cri: LEGACY_CRI_PLUGIN,
    opt: 'io.containerd.internal.v1.opt',
    bolt: 'io.containerd.metadata.v1.bolt',
    scheduler: 'io.containerd.gc.v1.scheduler',
  };
  if (core[name] !== undefined) return core[name]!;
  if (name.endsWith('-service')) return `io.containerd.service.v1.${name}`;
  return `io.containerd.grpc.v1.${name}`;
}

/** One file's plugin tables in version 3 form. */
function migratePlugins(version: number, raw: Table): Record<string, Table> {
  const out: Record<string, Table> = {};
  for (const [name, table] of Object.entries(raw)) if (isTable(table)) out[version < 2 ? v1PluginName(name) : name] = table;
  if (version >= 3) return out;
  const cri = out[LEGACY_CRI_PLUGIN];
  if (cri === undefined) return out;
  const images: Table = { ...(out[CRI_IMAGES_PLUGIN] ?? {}) };
  for (const key of [
    'registry',
    'image_decryption',
    'max_concurrent_downloads',
    'image_pull_progress_timeout',
    'image_pull_with_sync_fs',
    'stats_collect_period',
  ]) {
    if (key in cri) images[key] = cri[key];
  }
  const containerd = cri['containerd'];
  if (isTable(containerd)) {
    for (const key of ['snapshotter', 'disable_snapshot_annotations', 'discard_unpacked_layers']) if (key in containerd) images[key] = containerd[key];
  }
  out[CRI_IMAGES_PLUGIN] = images;
  return out;
}

/** A Go duration (`10s`, `1m30s`, `500ms`) in milliseconds, or undefined. */
export function parseGoDuration(text: string): number | undefined {
  if (text === '0') return 0;
  const units: Record<string, number> = { ns: 1e-6, us: 1e-3, µs: 1e-3, μs: 1e-3, ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
  const match = /^([+-]?)((?:\d+(?:\.\d*)?|\.\d+)(?:ns|us|µs|μs|ms|s|m|h))+$/.exec(text);
  if (match === null) return undefined;
  let total = 0;
  for (const part of text.replace(/^[+-]/, '').matchAll(/(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)/g)) total += Number(part[1]) * units[part[2]!]!;
  return match[1] === '-' ? -total : total;
}
