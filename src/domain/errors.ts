/**
 * Coded errors. Every layer throws PullguardError with a code from ERROR_CODES; callers match on
 * `code`, never on `instanceof` or message text. The one place that turns codes into gRPC status is
 * src/cri/status.ts.
 */
export const ERROR_CODES = [
  // request validation (INVALID_ARGUMENT)
  'INVALID_REFERENCE',
  'INVALID_DIGEST',
  'INVALID_ARGUMENT',
  // configuration, at load time
  'INVALID_CONFIG',
  'INVALID_POLICY',
  'INVALID_REGISTRIES_D',
  'INVALID_REGISTRIES_CONF',
  'KEY_LOAD_FAILED',
  // registry
  'REGISTRY_UNAVAILABLE', // connection refused, DNS, timeouts, 5xx after retries
  'REGISTRY_NOT_FOUND', // manifest or blob unknown
  'REGISTRY_UNAUTHORIZED',
  'REGISTRY_DENIED',
  'REGISTRY_TOO_MANY_REQUESTS',
  'REGISTRY_PROTOCOL', // unexpected status / malformed response
  'REGISTRY_TLS', // the registry's certificate could not be verified (a trust configuration problem)
  'MANIFEST_INVALID',
  'MANIFEST_UNSUPPORTED', // schema1, unknown media type
  'PLATFORM_NOT_FOUND',
  'DIGEST_MISMATCH',
  'SIZE_MISMATCH',
  'TOO_LARGE',
  // signatures and policy
  'SIGNATURE_VALIDATION_FAILED', // the policy denied the image; carries a Verdict
  'POLICY_EVALUATION_FAILED', // could not evaluate (not a denial)
  // store
  'STORE_IO',
  'STORE_FULL',
  'IMAGE_NOT_FOUND',
  'IMAGE_ID_CONFLICT', // another manifest with the same config (CRI image id) is already stored
  // server lifecycle
  'SHUTTING_DOWN',
  'CANCELLED',
  'BACKEND_UNAVAILABLE',
  'BACKEND_ERROR', // the container runtime (pullguard's CRI backend) answered with an error; its message is kept
  'INTERNAL',
] as const;

export type ErrorCode = (typeof ERROR_CODES)[number];

export class PullguardError<C extends ErrorCode = ErrorCode> extends Error {
  readonly code: C;
  /** Structured, credential-free facts for logs and error details. */
  readonly facts: Readonly<Record<string, string | number | boolean | undefined>>;

  constructor(code: C, message: string, options: { cause?: unknown; facts?: Record<string, string | number | boolean | undefined> } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'PullguardError';
    this.code = code;
    this.facts = Object.freeze({ ...(options.facts ?? {}) });
  }
}

export function isPullguardError(err: unknown, code?: ErrorCode): err is PullguardError {
  return (
    typeof err === 'object' &&
    err !== null &&
    (err as { name?: unknown }).name === 'PullguardError' &&
    typeof (err as { code?: unknown }).code === 'string' &&
    (code === undefined || (err as { code: string }).code === code)
  );
}

/** A validation failure that lists every problem found, not only the first. */
export class ValidationError<C extends ErrorCode = ErrorCode> extends PullguardError<C> {
  readonly problems: readonly string[];
  constructor(code: C, subject: string, problems: readonly string[], options: { cause?: unknown } = {}) {
    super(code, problems.length === 1 ? `${subject}: ${problems[0]}` : `${subject}: ${problems.join('; ')}`, options);
    this.problems = Object.freeze([...problems]);
  }
}
