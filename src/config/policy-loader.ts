/**
 * Loads containers-policy.json and its key material (GPG keys, sigstore keys and CA certificates) at
 * configuration time.
 *
 * - Key files are read and parsed once per load (not per signature, unlike upstream), so a missing
 *   or unreadable key file is a configuration error even when an image has no signatures.
 * - `keyPath`/`keyPaths` must be absolute. Upstream passes them to os.ReadFile, i.e. relative to
 *   the process working directory, which is meaningless for a daemon; the parser rejects them.
 * - An invalid policy never degrades to accepting: it throws INVALID_POLICY / KEY_LOAD_FAILED.
 * - Only when *no* policy file exists at all is the embedded default used (describeEmbeddedDefault).
 */
import { readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { PullguardError, isPullguardError } from '../domain/errors.js';
import { parsePolicy } from '../policy/parse-policy.js';
import type { KeySource, PathOrData, Policy, PolicyRequirement, SignedByRequirement, SigstoreSignedRequirement } from '../policy/types.js';
import { loadGpgKeys, type GpgKeySet } from '../signature/gpg-keys.js';
import { loadFulcioTrustRoot, loadPkiTrustRoot } from '../signature/sigstore/certificate-trust.js';
import { parseSigstorePublicKey, type SigstoreKeySet, type SigstorePublicKey } from '../signature/sigstore/public-keys.js';
import { EMBEDDED_POLICY_SOURCE, type LoadedPolicy } from '../pull/ports.js';

// What a load produces is defined by the pull's port; re-exported for the loader's callers.
export type { LoadedPolicy };

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

function allRequirements(policy: Policy): PolicyRequirement[] {
  const all: PolicyRequirement[] = [...policy.default];
  for (const scopes of policy.transports.values()) for (const reqs of scopes.values()) all.push(...reqs);
  return all;
}

function signedByRequirements(policy: Policy): SignedByRequirement[] {
  return allRequirements(policy).filter((r): r is SignedByRequirement => r.type === 'signedBy' && r.keyType === 'GPGKeys');
}

/**
 * Loads every key and trust root a sigstoreSigned requirement names: one PEM public key per
 * path or data item, and for fulcio/pki the CA certificates (certificate-trust.ts), so that a
 * missing or unusable file is a configuration error, never a per-pull surprise.
 */
async function loadSigstoreKeys(requirement: SigstoreSignedRequirement, read: (path: string) => Promise<Uint8Array>): Promise<SigstoreKeySet> {
  const readFileOf = (path: string, what: string): Promise<Uint8Array> =>
    read(path).catch((err: unknown) => {
      throw new PullguardError('KEY_LOAD_FAILED', `reading ${what} file ${JSON.stringify(path)}: ${(err as Error).message}`, { cause: err });
    });
  const load = async (source: KeySource, what: string, ecdsaOnly: boolean): Promise<SigstorePublicKey[]> => {
    const items: { bytes: Promise<Uint8Array>; where: string }[] =
      source.kind === 'data'
        ? [{ bytes: Promise.resolve(source.data), where: `${what}Data` }]
        : source.kind === 'datas'
          ? source.datas.map((data, i) => ({ bytes: Promise.resolve(data), where: `${what}Datas[${i}]` }))
          : (source.kind === 'path' ? [source.path] : source.paths).map((path) => ({
              bytes: readFileOf(path, 'key'),
              where: `key file ${JSON.stringify(path)}`,
            }));
    const keys: SigstorePublicKey[] = [];
    for (const item of items) keys.push(parseSigstorePublicKey(await item.bytes, item.where, { ecdsaOnly }));
    return keys;
  };
  const bytesOf = (source: PathOrData, what: string): Promise<Uint8Array> =>
    source.kind === 'data' ? Promise.resolve(source.data) : readFileOf(source.path, what);
  /** Trust-root problems name the requirement's field, as key problems name the key. */
  const trustRoot = <T>(where: string, make: () => T): T => {
    try {
      return make();
    } catch (err) {
      throw new PullguardError('KEY_LOAD_FAILED', `${where}: ${(err as Error).message}`, { cause: err });
    }
  };
  const rekorKeys = requirement.rekorPublicKeys !== undefined ? await load(requirement.rekorPublicKeys, 'rekorPublicKey', true) : undefined;
  const withRekor = rekorKeys !== undefined ? { rekorKeys: Object.freeze(rekorKeys) } : {};
  const trust = requirement.trust;
  switch (trust.kind) {
    case 'keys':
      return Object.freeze({ publicKeys: Object.freeze(await load(trust.keys, 'key', false)), ...withRekor });
    case 'fulcio': {
      const { ca, oidcIssuer, subjectEmail } = trust.fulcio;
      const caPem = await bytesOf(ca, 'Fulcio CA');
      const where = ca.kind === 'path' ? `fulcio CA file ${JSON.stringify(ca.path)}` : 'fulcio caData';
      return Object.freeze({
        publicKeys: Object.freeze([]),
        ...withRekor,
        fulcio: trustRoot(where, () => loadFulcioTrustRoot(caPem, oidcIssuer, subjectEmail)),
      });
    }
    case 'pki': {
      const { caRoots, caIntermediates, subjectEmail, subjectHostname } = trust.pki;
      const rootsPem = await bytesOf(caRoots, 'PKI CA roots');
      const intermediatesPem = caIntermediates !== undefined ? await bytesOf(caIntermediates, 'PKI CA intermediates') : undefined;
      const where = caRoots.kind === 'path' ? `pki CA roots file ${JSON.stringify(caRoots.path)}` : 'pki caRootsData';
      const identity = { ...(subjectEmail !== undefined ? { subjectEmail } : {}), ...(subjectHostname !== undefined ? { subjectHostname } : {}) };
      return Object.freeze({
        publicKeys: Object.freeze([]),
        ...withRekor,
        pki: trustRoot(where, () => loadPkiTrustRoot(rootsPem, intermediatesPem, identity)),
      });
    }
  }
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
          : await Promise.all(
              (keys.kind === 'path' ? [keys.path] : keys.paths).map(async (path) => {
                try {
                  return await read(path);
                } catch (err) {
                  throw new PullguardError('KEY_LOAD_FAILED', `reading key file ${JSON.stringify(path)}: ${(err as Error).message}`, { cause: err });
                }
              }),
            );
      gpgKeys.set(requirement, await loadGpgKeys(rings));
    } catch (err) {
      if (!isPullguardError(err)) throw err;
      problems.push(err.message);
    }
  }
  const sigstoreKeys = new Map<SigstoreSignedRequirement, SigstoreKeySet>();
  for (const requirement of allRequirements(policy)) {
    if (requirement.type !== 'sigstoreSigned') continue;
    try {
      sigstoreKeys.set(requirement, await loadSigstoreKeys(requirement, read));
    } catch (err) {
      if (!isPullguardError(err)) throw err;
      problems.push(err.message);
    }
  }
  if (problems.length > 0) {
    const unique = [...new Set(problems)];
    throw new PullguardError('KEY_LOAD_FAILED', `invalid policy in ${JSON.stringify(source)}: ${unique.join('; ')}`);
  }
  return Object.freeze({ policy, gpgKeys, sigstoreKeys, embedded: false });
}

/** The embedded fallback; see describeEmbeddedDefault. */
export function embeddedDefaultPolicy(): LoadedPolicy {
  return Object.freeze({
    policy: parsePolicy(EMBEDDED_POLICY_TEXT, { source: EMBEDDED_POLICY_SOURCE }),
    gpgKeys: new Map(),
    sigstoreKeys: new Map(),
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
  /**
   * `onChange` (default): a file edited on disk is reloaded at the next pull, as CRI-O re-reads it.
   * `explicit`: a file, once loaded, stays in force until a new selector replaces this one (the
   * daemon's SIGHUP), so an invalid edit never takes effect: the old policy keeps working.
   */
  readonly reload?: 'onChange' | 'explicit';
}

/**
 * Per-namespace policy selection (CRI-O `signature_policy_dir`): `<dir>/<namespace>.json` if it
 * exists, else the global policy. Files are loaded lazily and cached by (path, mtime, size), so
 * an edited policy is picked up on the next pull without a restart.
 */
export class PolicySelector {
  private readonly cache = new Map<string, { stamp: string; loaded: Promise<LoadedPolicy> }>();

  constructor(private readonly options: PolicySelectorOptions) {}

  /**
   * Loads the global policy and every `<namespaceDir>/*.json` now, so that an invalid file or a
   * missing key fails start-up (or a reload) instead of a later pull.
   */
  async preload(): Promise<LoadedPolicy> {
    const global = await this.policyForNamespace(undefined);
    if (this.options.namespaceDir !== undefined) {
      let names: string[] = [];
      try {
        names = await readdir(this.options.namespaceDir);
      } catch (err) {
        if (!isNotFound(err))
          throw new PullguardError('INVALID_POLICY', `reading policy directory ${JSON.stringify(this.options.namespaceDir)}: ${(err as Error).message}`, {
            cause: err,
          });
      }
      for (const name of names.filter((n) => n.endsWith('.json')).sort()) {
        const namespace = name.slice(0, -'.json'.length);
        if (DNS_LABEL.test(namespace)) await this.policyForNamespace(namespace);
      }
    }
    return global;
  }

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
    if (hit !== undefined && (hit.stamp === stamp || this.options.reload === 'explicit')) return hit.loaded;
    const loaded = loadPolicyFile(path);
    this.cache.set(path, { stamp, loaded });
    // A failed load must not stay cached: the operator will fix the file and try again.
    loaded.catch(() => {
      if (this.cache.get(path)?.loaded === loaded) this.cache.delete(path);
    });
    return loaded;
  }
}
