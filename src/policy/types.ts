/**
 * containers-policy.json(5) as parsed data. Produced by parse-policy.ts, consumed by scope lookup,
 * identity matching and decide. Every object is frozen; requirement objects are unique, so the config
 * loader can key loaded key material on them.
 */

/** `signedIdentity` variants (policy_reference_match.go). */
export type SignedIdentity =
  | { readonly type: 'matchExact' }
  | { readonly type: 'matchRepoDigestOrExact' }
  | { readonly type: 'matchRepository' }
  | { readonly type: 'exactReference'; readonly dockerReference: string }
  | { readonly type: 'exactRepository'; readonly dockerRepository: string }
  | { readonly type: 'remapIdentity'; readonly prefix: string; readonly signedPrefix: string };

/** Where GPG (or sigstore public) keys come from. Paths are absolute (the parser enforces it). */
export type KeySource =
  | { readonly kind: 'path'; readonly path: string }
  | { readonly kind: 'paths'; readonly paths: readonly string[] }
  | { readonly kind: 'data'; readonly data: Uint8Array }
  | { readonly kind: 'datas'; readonly datas: readonly Uint8Array[] };

export type SignedByKeyType = 'GPGKeys' | 'signedByGPGKeys' | 'X509Certificates' | 'signedByX509CAs';

export interface InsecureAcceptAnythingRequirement {
  readonly type: 'insecureAcceptAnything';
}

export interface RejectRequirement {
  readonly type: 'reject';
}

export interface SignedByRequirement {
  readonly type: 'signedBy';
  readonly keyType: SignedByKeyType;
  readonly keys: Extract<KeySource, { kind: 'path' | 'paths' | 'data' }>;
  readonly signedIdentity: SignedIdentity;
}

export interface SignedBaseLayerRequirement {
  readonly type: 'signedBaseLayer';
  readonly baseLayerIdentity: SignedIdentity;
}

/** Either a path or inline data (`caPath` / `caData`, …). */
export type PathOrData = { readonly kind: 'path'; readonly path: string } | { readonly kind: 'data'; readonly data: Uint8Array };

export interface FulcioTrust {
  readonly ca: PathOrData;
  readonly oidcIssuer: string;
  readonly subjectEmail: string;
}

export interface PkiTrust {
  readonly caRoots: PathOrData;
  readonly caIntermediates?: PathOrData;
  readonly subjectEmail?: string;
  readonly subjectHostname?: string;
}

/** Parsed fully so it can be evaluated later; evaluation currently always denies (never accepts). */
export interface SigstoreSignedRequirement {
  readonly type: 'sigstoreSigned';
  readonly trust:
    | { readonly kind: 'keys'; readonly keys: KeySource }
    | { readonly kind: 'fulcio'; readonly fulcio: FulcioTrust }
    | { readonly kind: 'pki'; readonly pki: PkiTrust };
  readonly rekorPublicKeys?: KeySource;
  readonly signedIdentity: SignedIdentity;
}

export type PolicyRequirement =
  | InsecureAcceptAnythingRequirement
  | RejectRequirement
  | SignedByRequirement
  | SignedBaseLayerRequirement
  | SigstoreSignedRequirement;

export interface Policy {
  /** The file the policy was read from, or `<embedded>`. */
  readonly source: string;
  readonly default: readonly PolicyRequirement[];
  /** transport name → scope → requirements, in file order. */
  readonly transports: ReadonlyMap<string, ReadonlyMap<string, readonly PolicyRequirement[]>>;
}
