/**
 * The trust configuration behind the TrustConfiguration port: what one (re)load of the daemon's
 * configuration produced, and the holder a reload swaps it in.
 */
import { join } from 'node:path';
import type { LoadedPolicy, LoadedTrust, SelectedPolicy, SignatureSource, TrustConfiguration, TrustInForce } from './ports.js';
import { policySourceOf } from './verification-record.js';

/** Chooses the loaded policy for a namespace (src/config/policy-loader.ts PolicySelector). */
export interface PolicyChooser {
  policyForNamespace(namespace: string | undefined): Promise<LoadedPolicy>;
}

/** The policies and signature sources of one loaded configuration. */
export class ConfiguredTrust implements LoadedTrust {
  readonly signatureSources: readonly SignatureSource[];
  readonly requireSignatureVerification: boolean;
  readonly #policies: PolicyChooser;
  readonly #namespaceDir: string | undefined;

  constructor(options: {
    readonly policies: PolicyChooser;
    /** `--signature-policy-dir`: a namespace's policy comes from `<dir>/<namespace>.json` when it exists. */
    readonly namespaceDir?: string;
    readonly signatureSources: readonly SignatureSource[];
    /** Deny images the policy would accept without verifying any signature. Default false. */
    readonly requireSignatureVerification?: boolean;
  }) {
    this.#policies = options.policies;
    this.#namespaceDir = options.namespaceDir;
    this.signatureSources = options.signatureSources;
    this.requireSignatureVerification = options.requireSignatureVerification === true;
  }

  async policyFor(namespace: string | undefined): Promise<SelectedPolicy> {
    const policy = await this.#policies.policyForNamespace(namespace);
    // The chooser falls back to the global policy; the file it came from says which one decided.
    const namespaceFile =
      namespace !== undefined && namespace !== '' && this.#namespaceDir !== undefined
        ? { name: namespace, file: join(this.#namespaceDir, `${namespace}.json`) }
        : undefined;
    return { policy, source: policySourceOf({ embedded: policy.embedded, file: policy.policy.source }, namespaceFile) };
  }
}

/**
 * Holds the trust configuration in force. A reload replaces it whole, and only with one that loaded
 * cleanly; a pull already in its signature phase finishes under the one it started with. Each
 * configuration it holds is a new revision (what the verdict cache and shared flights go by).
 */
export class TrustConfigurationHolder implements TrustConfiguration {
  readonly #clock: () => Date;
  #current: TrustInForce;

  constructor(initial: LoadedTrust, options: { readonly clock?: () => Date } = {}) {
    this.#clock = options.clock ?? (() => new Date());
    this.#current = { trust: initial, revision: { number: 1, loadedAt: this.#clock() } };
  }

  current(): TrustInForce {
    return this.#current;
  }

  replace(next: LoadedTrust): void {
    this.#current = { trust: next, revision: { number: this.#current.revision.number + 1, loadedAt: this.#clock() } };
  }
}
