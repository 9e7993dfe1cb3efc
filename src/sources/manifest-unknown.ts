/**
 * "Manifest unknown" in all the dialects c/image accepts for a missing sigstore attachment
 * (`isManifestUnknownError`, docker_client.go): distribution MANIFEST_UNKNOWN; an UNKNOWN error whose
 * message is "Not Found" (registry.redhat.io) or contains "not found" (Harbor); a 404 whose body is
 * not a distribution error list. Error codes Go does not know decode as UNKNOWN, as in errcode.
 */

const DISTRIBUTION_CODES = new Set([
  'BLOB_UNKNOWN',
  'BLOB_UPLOAD_INVALID',
  'BLOB_UPLOAD_UNKNOWN',
  'DIGEST_INVALID',
  'MANIFEST_BLOB_UNKNOWN',
  'MANIFEST_INVALID',
  'MANIFEST_UNKNOWN',
  'MANIFEST_UNVERIFIED',
  'NAME_INVALID',
  'NAME_UNKNOWN',
  'SIZE_INVALID',
  'TAG_INVALID',
  'PAGINATION_NUMBER_INVALID',
  'RANGE_INVALID',
  'UNAUTHORIZED',
  'DENIED',
  'UNSUPPORTED',
  'TOOMANYREQUESTS',
  'UNKNOWN',
  'UNAVAILABLE',
]);

export interface RegistryErrorSummary {
  /** The first error's code as Go decodes it (unknown codes become UNKNOWN); undefined when the body is no error list. */
  readonly code?: string;
  readonly message?: string;
}

export function summarizeErrorBody(body: Uint8Array | undefined): RegistryErrorSummary {
  if (body === undefined || body.length === 0) return {};
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(body).toString('utf8'));
  } catch {
    return {};
  }
  const errors = (parsed as { errors?: unknown } | null)?.errors;
  if (!Array.isArray(errors) || errors.length === 0) return {};
  const first = errors[0] as { code?: unknown; message?: unknown } | null;
  const raw = typeof first?.code === 'string' ? first.code : '';
  return { code: DISTRIBUTION_CODES.has(raw) ? raw : 'UNKNOWN', ...(typeof first?.message === 'string' ? { message: first.message } : {}) };
}

export function isManifestUnknown(status: number, body: Uint8Array | undefined): boolean {
  const { code, message } = summarizeErrorBody(body);
  if (code === undefined) return status === 404;
  if (code === 'MANIFEST_UNKNOWN') return true;
  return code === 'UNKNOWN' && message !== undefined && (message === 'Not Found' || message.toLowerCase().includes('not found'));
}
