/**
 * The forensic record kept with every accepted image (the containers/image maintainers' suggestion):
 * which policy and scope were used, which signature satisfied each requirement, every other signature
 * that parsed, and every trouble. Signature bytes are stored as blobs; this record names them by digest.
 */
import type { Digest } from '../domain/digest.js';
import type { SignatureLocation, UntrustedSignatureBlob, Verdict } from '../domain/signature.js';
import { EMBEDDED_POLICY_SOURCE, type ResolvedImage, type VerdictDecision } from './ports.js';

/**
 * Where the policy that decided came from: the global file, the per-namespace file of the pod's
 * namespace, or the embedded default (no policy file existed).
 */
export type PolicySource =
  | { readonly kind: 'file'; readonly file: string }
  | { readonly kind: 'namespace'; readonly file: string; readonly namespace: string }
  | { readonly kind: 'embedded' };

export interface VerificationRecordV1 {
  readonly schemaVersion: 1;
  readonly time: string;
  readonly pullguardVersion: string;
  readonly image: string;
  readonly topDigest: string;
  readonly manifestDigest: string;
  /** The policy file (or `<embedded>`) and the scope of it that matched. */
  readonly policyFile: string;
  readonly scope: string;
  /** Absent in records written before it was kept (policyFile then says as much). */
  readonly policySource?: PolicySource;
  /** The pod namespace the pull was made for, when it had one (it picks a per-namespace policy). */
  readonly namespace?: string;
  /**
   * When the verdict was reached and under which (re)load of the trust configuration; `cached`
   * when this pull was answered from the verdict cache (so `decidedAt` is earlier than `time`).
   * Absent in records written before it was kept.
   */
  readonly decision?: {
    readonly decidedAt: string;
    readonly trustRevision: number;
    readonly trustLoadedAt: string;
    readonly cached: boolean;
  };
  readonly requirements: readonly {
    readonly type: string;
    readonly description: string;
    readonly satisfiedBy?: {
      readonly location: SignatureLocation;
      readonly signerKeyFingerprint: string;
      readonly signerPrimaryKeyFingerprint: string;
      readonly signedDockerReference: string;
      readonly blob?: string;
    };
  }[];
  readonly signatures: readonly {
    readonly location: SignatureLocation;
    readonly format: string;
    readonly blob: string;
    /** sigstore only: what re-verification needs besides the payload bytes. */
    readonly mimeType?: string;
    readonly annotations?: Readonly<Record<string, string>>;
  }[];
  readonly troubles: readonly { readonly location: SignatureLocation; readonly kind: string; readonly message: string }[];
  readonly warnings: readonly { readonly code: string; readonly message: string }[];
}

function sameLocation(a: SignatureLocation, b: SignatureLocation): boolean {
  return a.source === b.source && a.index === b.index;
}

export function toVerificationRecord(input: {
  time: Date;
  version: string;
  image: ResolvedImage;
  verdict: Verdict;
  signatures: readonly UntrustedSignatureBlob[];
  signatureDigests: readonly Digest[];
  policySource?: PolicySource;
  namespace?: string;
  decision?: VerdictDecision;
}): VerificationRecordV1 {
  const { image, verdict, signatures, signatureDigests } = input;
  const blobFor = (location: SignatureLocation): string | undefined => {
    const i = signatures.findIndex((s) => sameLocation(s.location, location));
    return i === -1 ? undefined : signatureDigests[i];
  };
  return {
    schemaVersion: 1,
    time: input.time.toISOString(),
    pullguardVersion: input.version,
    image: `${image.reference.name}${image.reference.tag !== undefined ? `:${image.reference.tag}` : ''}${image.reference.digest !== undefined ? `@${image.reference.digest}` : ''}`,
    topDigest: image.topDigest,
    manifestDigest: image.manifestDigest,
    policyFile: verdict.scope.policyFile,
    scope: verdict.scope.scope,
    ...(input.policySource !== undefined ? { policySource: input.policySource } : {}),
    ...(input.namespace !== undefined && input.namespace !== '' ? { namespace: input.namespace } : {}),
    ...(input.decision !== undefined
      ? {
          decision: {
            decidedAt: input.decision.decidedAt.toISOString(),
            trustRevision: input.decision.revision.number,
            trustLoadedAt: input.decision.revision.loadedAt.toISOString(),
            cached: input.decision.cache === 'hit',
          },
        }
      : {}),
    requirements: verdict.requirements.map((r) => {
      const by = r.satisfiedBy;
      const blob = by === undefined ? undefined : blobFor(by.location);
      return {
        type: r.type,
        description: r.description,
        ...(by !== undefined
          ? {
              satisfiedBy: {
                location: by.location,
                signerKeyFingerprint: by.signer.keyFingerprint,
                signerPrimaryKeyFingerprint: by.signer.primaryKeyFingerprint,
                signedDockerReference: by.signedDockerReference,
                ...(blob !== undefined ? { blob } : {}),
              },
            }
          : {}),
      };
    }),
    signatures: signatures.map((s, i) => ({
      location: s.location,
      format: s.format,
      blob: signatureDigests[i]!,
      ...(s.untrustedMimeType !== undefined ? { mimeType: s.untrustedMimeType } : {}),
      ...(s.untrustedAnnotations !== undefined ? { annotations: s.untrustedAnnotations } : {}),
    })),
    troubles: verdict.troubles.map((t) => ({ location: t.location, kind: t.kind, message: t.message })),
    warnings: verdict.warnings.map((w) => ({ code: w.code, message: w.message })),
  };
}

/**
 * The verification records of one image, by repository (`registry.example/app`). The same image
 * (same config digest) pulled from two repositories was verified twice, against two identities;
 * a later pull from one repository must not erase the record of the other.
 */
export type VerificationRecords = Readonly<Record<string, VerificationRecordV1>>;

function repositoryOfImage(image: string): string {
  const at = image.indexOf('@');
  const withoutDigest = at === -1 ? image : image.slice(0, at);
  const colon = withoutDigest.lastIndexOf(':');
  return colon > withoutDigest.lastIndexOf('/') ? withoutDigest.slice(0, colon) : withoutDigest;
}

/** Reads what the store kept (tolerating the single-record form written before records were keyed). */
export function readVerificationRecords(stored: unknown): VerificationRecords {
  if (typeof stored !== 'object' || stored === null) return {};
  if ((stored as { schemaVersion?: unknown }).schemaVersion === 1) {
    const record = stored as VerificationRecordV1;
    return { [repositoryOfImage(record.image)]: record };
  }
  return stored as VerificationRecords;
}

export function withVerificationRecord(stored: unknown, record: VerificationRecordV1): VerificationRecords {
  return { ...readVerificationRecords(stored), [repositoryOfImage(record.image)]: record };
}

/** The record for the repository `name` refers to; for an id (no repository), the latest one. */
export function verificationRecordFor(stored: unknown, repository: string | undefined): VerificationRecordV1 | undefined {
  const records = readVerificationRecords(stored);
  if (repository !== undefined && records[repository] !== undefined) return records[repository];
  if (repository !== undefined) return undefined;
  return Object.values(records).sort((a, b) => (a.time < b.time ? 1 : -1))[0];
}

/** Every signature blob any record names: what garbage collection must keep. */
export function signatureBlobsOf(records: VerificationRecords): Digest[] {
  return [...new Set(Object.values(records).flatMap((r) => r.signatures.map((s) => s.blob as Digest)))];
}

/**
 * The source of a loaded policy: embedded, the per-namespace file of `namespace` (when that is the
 * file the policy came from), or a policy file.
 */
export function policySourceOf(
  policy: { readonly embedded: boolean; readonly file: string },
  namespace?: { readonly name: string; readonly file: string },
): PolicySource {
  if (policy.embedded) return { kind: 'embedded' };
  if (namespace !== undefined && policy.file === namespace.file) return { kind: 'namespace', file: policy.file, namespace: namespace.name };
  return { kind: 'file', file: policy.file };
}

/** The source a record names; records written before policySource was kept name only the file. */
export function recordedPolicySource(record: VerificationRecordV1): PolicySource {
  if (record.policySource !== undefined) return record.policySource;
  return record.policyFile === EMBEDDED_POLICY_SOURCE ? { kind: 'embedded' } : { kind: 'file', file: record.policyFile };
}

/** `/etc/containers/policy.json`, `/etc/pullguard/ns/team-a.json (policy of namespace team-a)`, `the embedded default policy`. */
export function describePolicySource(source: PolicySource): string {
  switch (source.kind) {
    case 'embedded':
      return 'the embedded default policy (no policy file existed)';
    case 'namespace':
      return `${source.file} (policy of namespace ${source.namespace})`;
    case 'file':
      return source.file;
  }
}

export function samePolicySource(a: PolicySource, b: PolicySource): boolean {
  return (
    a.kind === b.kind &&
    (a.kind === 'embedded' || (a.file === (b as { file: string }).file && (a.kind !== 'namespace' || a.namespace === (b as { namespace: string }).namespace)))
  );
}
