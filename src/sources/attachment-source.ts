/**
 * The sigstore attachment SignatureSource: when registries.d enables `use-sigstore-attachments` for
 * the image's physical repository, reads the OCI manifest tagged `sha256-<hex>.sig` (the *instance*
 * manifest digest) beside the image, then every layer (4 MiB cap, digest-checked) as a sigstore blob.
 *
 * Unlike c/image (where any failure is fatal for the whole signature read), every layer that cannot
 * be read is a trouble at its 1-based layer index, and a failure to read the attachment manifest is a
 * trouble at index 0; the policy core then applies partial sufficiency. A missing attachment, in any
 * "manifest unknown" dialect, is simply no signatures. Never throws except CANCELLED.
 */
import type { RegistriesD } from '../config/registries-d.js';
import { isDigest } from '../domain/digest.js';
import { PullguardError, isPullguardError } from '../domain/errors.js';
import type { Descriptor } from '../domain/image.js';
import type { SignatureFetchReport, SignatureLocation, SignatureTrouble, TroubleKind, UntrustedSignatureBlob } from '../domain/signature.js';
import type { RegistryCredentials, ResolvedImage, SignatureSource } from '../pull/ports.js';
import type { ImageArtifactReader } from '../registry/client.js';
import { MAX_SIGSTORE_LAYER_BYTES, SIGSTORE_ATTACHMENT_MANIFEST_TYPE, sigstoreAttachmentTag } from '../signature/sigstore/constants.js';
import { isManifestUnknown, summarizeErrorBody } from './manifest-unknown.js';

/** Layers read per attachment at most (c/image has no limit; 128 matches the lookaside cap). */
export const MAX_SIGSTORE_ATTACHMENT_LAYERS = 128;

export interface SigstoreAttachmentSourceOptions {
  readonly registriesD: RegistriesD;
  /** The registry client (createRegistryClient): auth, TLS, mirrors' endpoints and retries are its. */
  readonly registry: ImageArtifactReader;
  /** The whole attachment read of one image. Default 30 000. */
  readonly budgetMs?: number;
  readonly maxLayers?: number;
  readonly maxLayerBytes?: number;
}

/** A SignatureSource that only ever yields sigstore blobs (the signature phase skips it when nothing uses them). */
export interface SigstoreAttachmentSource extends SignatureSource {
  readonly yields: 'sigstore';
}

interface ParsedLayer {
  readonly descriptor?: Descriptor;
  /** Why the descriptor is unusable. */
  readonly problem?: string;
}

function parseAttachmentManifest(bytes: Uint8Array): ParsedLayer[] {
  const doc: unknown = JSON.parse(Buffer.from(bytes).toString('utf8'));
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) throw new Error('not a JSON object');
  const layers = (doc as { layers?: unknown }).layers;
  if (layers === undefined || layers === null) return [];
  if (!Array.isArray(layers)) throw new Error('"layers" is not an array');
  return layers.map((raw: unknown): ParsedLayer => {
    const l = raw as { mediaType?: unknown; digest?: unknown; size?: unknown; annotations?: unknown } | null;
    if (typeof l !== 'object' || l === null) return { problem: 'layer descriptor is not an object' };
    if (typeof l.digest !== 'string' || !isDigest(l.digest)) return { problem: `invalid layer digest ${JSON.stringify(l.digest ?? null)}` };
    if (typeof l.size !== 'number' || !Number.isSafeInteger(l.size) || l.size < 0) return { problem: `invalid size of layer ${l.digest}` };
    const annotations =
      typeof l.annotations === 'object' && l.annotations !== null && !Array.isArray(l.annotations)
        ? Object.fromEntries(Object.entries(l.annotations as Record<string, unknown>).filter((e): e is [string, string] => typeof e[1] === 'string'))
        : undefined;
    return {
      descriptor: {
        mediaType: typeof l.mediaType === 'string' ? l.mediaType : '',
        digest: l.digest,
        size: l.size,
        ...(annotations !== undefined ? { annotations } : {}),
      },
    };
  });
}

function troubleKind(err: unknown): { kind: TroubleKind; httpStatus?: number } {
  if (!isPullguardError(err)) return { kind: 'io' };
  const status = typeof err.facts.status === 'number' ? err.facts.status : undefined;
  if (err.code === 'TOO_LARGE') return { kind: 'too-large' };
  if (err.code === 'REGISTRY_UNAVAILABLE' && typeof err.facts.transport === 'string') {
    return { kind: err.facts.transport.includes('timeout') ? 'timeout' : 'transport' };
  }
  if (status !== undefined) return { kind: 'http-status', httpStatus: status };
  return { kind: 'io' };
}

function positiveInt(name: string, value: number): number {
  if (!Number.isInteger(value) || value < 1)
    throw new PullguardError('INVALID_CONFIG', `sigstore attachment option ${name} must be an integer >= 1, got ${value}`);
  return value;
}

export function createSigstoreAttachmentSource(options: SigstoreAttachmentSourceOptions): SigstoreAttachmentSource {
  const budgetMs = positiveInt('budgetMs', options.budgetMs ?? 30_000);
  const maxLayers = positiveInt('maxLayers', options.maxLayers ?? MAX_SIGSTORE_ATTACHMENT_LAYERS);
  const maxLayerBytes = positiveInt('maxLayerBytes', options.maxLayerBytes ?? MAX_SIGSTORE_LAYER_BYTES);

  async function fetch(
    image: ResolvedImage,
    fetchOptions: { readonly signal?: AbortSignal; readonly credentials?: RegistryCredentials },
  ): Promise<SignatureFetchReport> {
    const signatures: UntrustedSignatureBlob[] = [];
    const troubles: SignatureTrouble[] = [];
    const notices: string[] = [];
    const report = (end: SignatureFetchReport['end']): SignatureFetchReport =>
      Object.freeze({
        signatures: Object.freeze(signatures),
        troubles: Object.freeze(troubles),
        end,
        notices: Object.freeze(notices),
        retriedIndices: Object.freeze([]),
      });
    const physical = image.physicalReference;
    if (!options.registriesD.useSigstoreAttachmentsFor(physical)) return report('not-configured');

    const tag = sigstoreAttachmentTag(image.manifestDigest);
    const attachmentRef = `${physical.name}:${tag}`;
    const manifestLocation: SignatureLocation = { source: 'sigstore-attachment', index: 0, url: `docker://${attachmentRef}` };
    const callerSignal = fetchOptions.signal;
    const budget = new AbortController();
    const timer = setTimeout(() => budget.abort(new PullguardError('CANCELLED', 'sigstore attachment budget exhausted')), budgetMs);
    timer.unref?.();
    const signal = callerSignal === undefined ? budget.signal : AbortSignal.any([callerSignal, budget.signal]);
    const opts = { signal, ...(fetchOptions.credentials !== undefined ? { credentials: fetchOptions.credentials } : {}) };
    /** Throws CANCELLED for the caller's cancellation; true when the budget ran out. */
    const stopped = (err: unknown): boolean => {
      if (callerSignal?.aborted === true) throw new PullguardError('CANCELLED', 'sigstore attachment fetch cancelled', { cause: err });
      return budget.signal.aborted;
    };
    const budgetTrouble = (location: SignatureLocation): SignatureTrouble => ({
      location,
      kind: 'budget',
      message: `reading sigstore attachments exceeded the ${budgetMs} ms budget`,
      attempts: 1,
    });

    try {
      let answer;
      try {
        answer = await options.registry.fetchManifestByTag(image, tag, opts);
      } catch (err) {
        if (stopped(err)) {
          troubles.push(budgetTrouble(manifestLocation));
          return report('budget');
        }
        troubles.push({
          location: manifestLocation,
          ...troubleKind(err),
          message: `reading manifest ${tag} in ${physical.name}: ${(err as Error).message}`,
          attempts: 1,
        });
        return report('consecutive-troubles');
      }
      if (answer.kind === 'client-error') {
        if (isManifestUnknown(answer.status, answer.body)) return report('not-found');
        const { code, message } = summarizeErrorBody(answer.body);
        const detail =
          code !== undefined
            ? `${code.toLowerCase().replace(/_/g, ' ')}${message !== undefined ? `: ${message}` : ''}`
            : `received unexpected HTTP status: ${answer.status}`;
        troubles.push({
          location: manifestLocation,
          kind: 'http-status',
          httpStatus: answer.status,
          message: `reading manifest ${tag} in ${physical.name}: ${detail}`,
          attempts: 1,
        });
        return report('consecutive-troubles');
      }
      const mimeType = answer.contentType?.split(';')[0]?.trim() ?? '';
      if (mimeType !== SIGSTORE_ATTACHMENT_MANIFEST_TYPE) {
        troubles.push({
          location: manifestLocation,
          kind: 'unrecognized-format',
          message: `unexpected MIME type for sigstore attachment manifest ${attachmentRef}: ${JSON.stringify(mimeType)}`,
          ...(answer.contentType !== undefined ? { contentType: answer.contentType } : {}),
          attempts: 1,
        });
        return report('consecutive-troubles');
      }
      let layers: ParsedLayer[];
      try {
        layers = parseAttachmentManifest(answer.bytes);
      } catch (err) {
        troubles.push({
          location: manifestLocation,
          kind: 'unrecognized-format',
          message: `parsing manifest ${attachmentRef}: ${(err as Error).message}`,
          attempts: 1,
        });
        return report('consecutive-troubles');
      }
      let end: SignatureFetchReport['end'] = 'not-found';
      if (layers.length > maxLayers) {
        notices.push(`sigstore attachment ${attachmentRef} has ${layers.length} layers; only the first ${maxLayers} were read`);
        layers = layers.slice(0, maxLayers);
        end = 'cap';
      }
      for (const [i, layer] of layers.entries()) {
        const index = i + 1;
        const d = layer.descriptor;
        const location: SignatureLocation = {
          source: 'sigstore-attachment',
          index,
          url: d !== undefined ? `docker://${physical.name}@${d.digest}` : `docker://${attachmentRef}#layer-${index}`,
        };
        if (budget.signal.aborted) {
          troubles.push(budgetTrouble(location));
          end = 'budget';
          continue;
        }
        if (d === undefined) {
          troubles.push({
            location,
            kind: 'unrecognized-format',
            message: `parsing manifest ${attachmentRef}: ${layer.problem ?? 'invalid layer'}`,
            attempts: 1,
          });
          continue;
        }
        if (d.size > maxLayerBytes) {
          troubles.push({
            location,
            kind: 'too-large',
            message: `reading blob ${d.digest} in ${physical.name}: exceeded maximum allowed size of ${maxLayerBytes} bytes`,
            attempts: 1,
          });
          continue;
        }
        let bytes: Uint8Array;
        try {
          bytes = await options.registry.fetchBlobBytes(image, d, opts, maxLayerBytes);
        } catch (err) {
          if (stopped(err)) {
            troubles.push(budgetTrouble(location));
            end = 'budget';
            continue;
          }
          const actual = isPullguardError(err, 'DIGEST_MISMATCH') ? err.facts.actual : undefined;
          troubles.push({
            location,
            ...troubleKind(err),
            message:
              typeof actual === 'string'
                ? `digest mismatch, expected ${JSON.stringify(d.digest)}, got ${JSON.stringify(actual)}`
                : `reading blob ${d.digest} in ${physical.name}: ${(err as Error).message}`,
            attempts: 1,
          });
          continue;
        }
        signatures.push(
          Object.freeze({
            location,
            format: 'sigstore',
            bytes,
            untrustedMimeType: d.mediaType,
            untrustedAnnotations: Object.freeze({ ...(d.annotations ?? {}) }),
          }),
        );
      }
      return report(end);
    } finally {
      clearTimeout(timer);
    }
  }

  return Object.freeze({ fetch, yields: 'sigstore' as const });
}
