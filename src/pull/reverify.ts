/**
 * Re-evaluates the current policy against the signatures stored with an image — offline, no registry
 * and no lookaside — as CRI-O re-checks at container creation. Only the stored (accepted and other
 * parsed) signatures count; there are no troubles, so the verdict says whether what was kept still
 * satisfies the policy on its own.
 */
import { PullguardError } from '../domain/errors.js';
import { MEDIA_TYPES } from '../domain/image.js';
import { parseReference, type ImageReference } from '../domain/reference.js';
import type { SignatureFetchReport, UntrustedSignatureBlob, Verdict } from '../domain/signature.js';
import type { ContentStore, LoadedPolicy, ResolvedImage, SignatureSource } from './ports.js';
import { runSignaturePhase } from './signature-phase.js';
import { verificationRecordFor, type VerificationRecordV1 } from './verification-record.js';
import type { ImageRecord } from '../domain/image-record.js';

const MAX_STORED_BYTES = 4 * 1024 * 1024;

export async function reverifyStoredImage(input: {
  readonly record: ImageRecord;
  /** The name the user gave (its tag or digest is the identity the policy matches). */
  readonly name: string;
  readonly content: ContentStore;
  readonly policy: LoadedPolicy;
  readonly now?: Date;
  /** As the server: deny what the policy would accept without verifying any signature. */
  readonly requireSignatureVerification?: boolean;
}): Promise<Verdict> {
  const { record, content } = input;
  const named = repositoryNamed(input.name);
  const verification = verificationRecordFor(record.verification, named?.name);
  const reference = referenceFor(input.name, record, verification);
  const manifestBytes = await content.readAll(record.manifestDigest, MAX_STORED_BYTES);
  const signatures: UntrustedSignatureBlob[] = [];
  for (const stored of verification?.signatures ?? []) {
    const bytes = await content.readAll(stored.blob as never, MAX_STORED_BYTES);
    signatures.push({
      location: stored.location,
      format: stored.format === 'sigstore' ? 'sigstore' : 'simple-signing',
      bytes,
      ...(stored.mimeType !== undefined ? { untrustedMimeType: stored.mimeType } : {}),
      ...(stored.annotations !== undefined ? { untrustedAnnotations: stored.annotations } : {}),
    });
  }
  const storedSource: SignatureSource = {
    yields: 'simple-signing',
    fetch: async (): Promise<SignatureFetchReport> => ({ signatures, troubles: [], end: 'not-found', notices: [], retriedIndices: [] }),
  };
  const image: ResolvedImage = {
    reference,
    physicalReference: reference,
    topDigest: record.topDigest,
    topMediaType: record.topMediaType,
    manifestDigest: record.manifestDigest,
    manifestMediaType: record.manifestMediaType,
    manifestBytes,
    config: { digest: record.configDigest, size: 0, mediaType: MEDIA_TYPES.ociConfig },
    layers: [],
  };
  const { verdict } = await runSignaturePhase({
    policy: input.policy,
    image,
    sources: [storedSource],
    ...(input.now !== undefined ? { now: input.now } : {}),
    ...(input.requireSignatureVerification === true ? { requireSignatureVerification: true } : {}),
  });
  return verdict;
}

/** The repository a name refers to, or undefined for an id or id prefix. */
export function repositoryNamed(name: string): ImageReference | undefined {
  if (/^(?:sha256:)?[0-9a-f]{6,64}$/.test(name)) return undefined;
  try {
    return parseReference(name);
  } catch {
    return undefined;
  }
}

/** A name given as an id has no repository: use the one the image was pulled as. */
function referenceFor(name: string, record: ImageRecord, verification: VerificationRecordV1 | undefined): ImageReference {
  const candidates = [name, verification?.image, record.repoTags[0], record.repoDigests[0]];
  for (const candidate of candidates) {
    if (candidate === undefined || /^(?:sha256:)?[0-9a-f]{6,64}$/.test(candidate)) continue;
    try {
      return parseReference(candidate);
    } catch {
      // try the next name
    }
  }
  throw new PullguardError('INVALID_ARGUMENT', `image ${record.id} has no repository name to verify against`);
}
