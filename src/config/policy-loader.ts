/**
 * Loads containers-policy.json and its GPG key material at configuration time.
 *
 * - Key files are read and parsed once per load (not per signature, unlike upstream), so a missing
 *   or unreadable key file is a configuration error even when an image has no signatures.
 * - `keyPath`/`keyPaths` must be absolute. Upstream passes them to os.ReadFile, i.e. relative to
 *   the process working directory, which is meaningless for a daemon; the parser rejects them.
 * - An invalid policy never degrades to accepting: it throws INVALID_POLICY / KEY_LOAD_FAILED.
 * - Only when *no* policy file exists at all is the embedded default used (describeEmbeddedDefault).
 */
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { PullguardError, isPullguardError } from '../domain/errors.js';
import { parsePolicy } from '../policy/parse-policy.js';
import type { Policy, PolicyRequirement, SignedByRequirement } from '../policy/types.js';
import { loadGpgKeys, type GpgKeySet } from '../signature/gpg-keys.js';

export const EMBEDDED_POLICY_SOURCE = '<embedded>';

export interface LoadedPolicy {
  readonly policy: Policy;
  /** Keys for each GPGKeys `signedBy` requirement (keyed by the requirement object). */
  readonly gpgKeys: ReadonlyMap<SignedByRequirement, GpgKeySet>;
  /** True for the built-in fallback used when no policy file exists. */
  readonly embedded: boolean;
}

const EMBEDDED_POLICY_TEXT = '{"default":[{"type":"insecureAcceptAnything"}]}';

/**
 * Why the embedded default is `insecureAcceptAnything`: a node that has never been configured must
 * still be able to run its first pods (reject-by-default would make the first-run command fail with
 * nothing to show), and it is what the upstream sample policy ships. It is *only* used when no file
 * exists; an unreadable or invalid file is an error, never this default.
 */
export function describeEmbeddedDefault(): string {
  return (
    'WARNING: no signature policy file found; using the embedded default policy ' +
    '{"default":[{"type":"insecureAcceptAnything"}]}, which accepts every image WITHOUT verifying signatures. ' +
    'Write a containers-policy.json(5) file to enforce signatures.'
  );
}

function isNotFound(err: unknown): boolean {
  return typeof err === 'object' && err !== null && (err as { code?: unknown }).code === 'ENOENT';
}

function signedByRequirements(policy: Policy): SignedByRequirement[] {
  const all: PolicyRequirement[] = [...policy.default];
  for (const scopes of policy.transports.values()) for (const reqs of scopes.values()) all.push(...reqs);
  return all.filter((r): r is SignedByRequirement => r.type === 'signedBy' && r.keyType === 'GPGKeys');
}

/** Parses policy text (already read) and loads every key it names. */
export async function loadPolicyFromText(
  text: string,
  source: string,
  readKeyFile: (path: string) => Promise<Uint8Array> = (path) => readFile(path),
): Promise<LoadedPolicy> {
  const policy = parsePolicy(text, { source });
  const gpgKeys = new Map<SignedByRequirement, GpgKeySet>();
  const problems: string[] = [];
  const cache = new Map<string, Promise<Uint8Array>>();
  const read = (path: string): Promise<Uint8Array> => {
    let pending = cache.get(path);
    if (pending === undefined) {
      pending = readKeyFile(path);
      cache.set(path, pending);
    }
    return pending;
  };
  for (const requirement of signedByRequirements(policy)) {
    const keys = requirement.keys;
    try {
      const rings =
        keys.kind === 'data'
          ? [keys.data]
          : await Promise.all((keys.kind === 'path' ? [keys.path] : keys.paths).map(async (path) => {
              try {
                return await read(path);
              } catch (err) {
                throw new PullguardError('KEY_LOAD_FAILED', `reading key file ${JSON.stringify(path)}: ${(err as Error).message}`, { cause: err });
              }
            }));
      gpgKeys.set(requirement, await loadGpgKeys(rings));
    } catch (err) {
      if (!isPullguardError(err)) throw err;
      problems.push(err.message);
    }
  }
  if (problems.length > 0) {
    const unique = [...new Set(problems)];
    throw new PullguardError('KEY_LOAD_FAILED', `invalid policy in ${JSON.stringify(source)}: ${unique.join('; ')}`);
  }
  return Object.freeze({ policy, gpgKeys, embedded: false });
}

/** The embedded fallback; see describeEmbeddedDefault. */
export function embeddedDefaultPolicy(): LoadedPolicy {
  return Object.freeze({
    policy: parsePolicy(EMBEDDED_POLICY_TEXT, { source: EMBEDDED_POLICY_SOURCE }),
    gpgKeys: new Map(),
    embedded: true,
  });
}

/**
 * Loads the policy file at `path`. When it does not exist and `allowEmbeddedDefault` is set, returns
 * the embedded default (callers must log describeEmbeddedDefault()); any other failure throws.
 */
export async function loadPolicyFile(path: string, options: { readonly allowEmbeddedDefault?: boolean } = {}): Promise<LoadedPolicy> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    if (isNotFound(err) && options.allowEmbeddedDefault === true) return embeddedDefaultPolicy();
    throw new PullguardError('INVALID_POLICY', `reading policy file ${JSON.stringify(path)}: ${(err as Error).message}`, { cause: err });
  }
  return loadPolicyFromText(text, path);
}

/** A Kubernetes namespace name (RFC 1123 DNS label): never a path. */
const DNS_LABEL = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;

export interface PolicySelectorOptions {
  /** The global policy file (used when no per-namespace file exists). */
  readonly globalPath: string;
  /** `signature_policy_dir`; per-namespace files are `<dir>/<namespace>.json`. */
  readonly namespaceDir?: string;
  /** Use the embedded default when the global file does not exist. */
  readonly allowEmbeddedDefault?: boolean;
}

/**
 * Per-namespace policy selection (CRI-O `signature_policy_dir`): `<dir>/<namespace>.json` if it
 * exists, else the global policy. Files are loaded lazily and cached by (path, mtime, size), so
 * an edited policy is picked up on the next pull without a restart.
 */
export class PolicySelector {
  private readonly cache = new Map<string, { stamp: string; loaded: Promise<LoadedPolicy> }>();

  constructor(private readonly options: PolicySelectorOptions) {}

  async policyForNamespace(namespace: string | undefined): Promise<LoadedPolicy> {
    if (namespace !== undefined && namespace !== '' && this.options.namespaceDir !== undefined) {
      if (!DNS_LABEL.test(namespace)) {
        throw new PullguardError('INVALID_ARGUMENT', `invalid namespace ${JSON.stringify(namespace.slice(0, 80))}: not a DNS label`);
      }
      const path = join(this.options.namespaceDir, `${namespace}.json`);
      const found = await this.loadCached(path, false);
      if (found !== undefined) return found;
    }
    const global = await this.loadCached(this.options.globalPath, this.options.allowEmbeddedDefault === true);
    if (global === undefined) {
      throw new PullguardError('INVALID_POLICY', `no policy.json file found at ${JSON.stringify(this.options.globalPath)}`);
    }
    return global;
  }

  /** Undefined when the file does not exist (and no embedded default applies). */
  private async loadCached(path: string, allowEmbeddedDefault: boolean): Promise<LoadedPolicy | undefined> {
    let stamp: string;
    try {
      const s = await stat(path);
      stamp = `${s.mtimeMs}:${s.size}:${s.ino}`;
    } catch (err) {
      // Only ENOENT falls back; any other stat error is fatal (CRI-O does the same).
      if (!isNotFound(err)) {
        throw new PullguardError('INVALID_POLICY', `checking policy file ${JSON.stringify(path)}: ${(err as Error).message}`, { cause: err });
      }
      this.cache.delete(path);
      return allowEmbeddedDefault ? embeddedDefaultPolicy() : undefined;
    }
    const hit = this.cache.get(path);
    if (hit !== undefined && hit.stamp === stamp) return hit.loaded;
    const loaded = loadPolicyFile(path);
    this.cache.set(path, { stamp, loaded });
    // A failed load must not stay cached: the operator will fix the file and try again.
    loaded.catch(() => {
      if (this.cache.get(path)?.loaded === loaded) this.cache.delete(path);
    });
    return loaded;
  }
}
