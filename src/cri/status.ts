/**
 * The ONE place that knows gRPC codes. Every RPC failure becomes a status whose message kubelet can
 * classify (kubelet's evalCRIPullErr in pkg/kubelet/images reads only the message prefix
 * `SignatureValidationFailed` / `RegistryUnavailable`, and cri-client unwraps the status only for
 * code UNKNOWN), plus a google.rpc.Status in `grpc-status-details-bin` with the SAME code
 * and message (grpc-go turns a mismatch into INTERNAL). Messages are one line, bounded, deterministic
 * and free of credentials (errors never carry them; this layer also never adds request data).
 */
import * as grpc from '@grpc/grpc-js';
import { isPullguardError, type ErrorCode, type PullguardError } from '../domain/errors.js';
import type { SignatureLocation, SignatureTrouble, Verdict, Warning } from '../domain/signature.js';
import { describeLocation, describeTroubleCause } from '../policy/decide.js';
import { isSignatureDeniedError } from '../pull/pull-errors.js';
import { loadRpcRoot } from '../transport/cri-proto.js';

export const ERROR_DOMAIN = 'pullguard';
/** kubelet's sentinels (k8s.io/cri-api/pkg/errors). */
export const SIGNATURE_VALIDATION_FAILED = 'SignatureValidationFailed';
export const REGISTRY_UNAVAILABLE = 'RegistryUnavailable';

// decide() bounds a denial (MAX_DENIAL_CHARS) so that with its prefix the message is never cut
// here: the troubles and their facts (HTTP status, first byte) sit at the end of it.
const MAX_MESSAGE_LENGTH = 2048;
const MAX_VIOLATIONS = 40;
const MAX_DESCRIPTION_LENGTH = 300;
export const WARNINGS_METADATA_KEY = 'pullguard-warnings';
const MAX_WARNING_VALUES = 16;

export interface GrpcFailure {
  readonly code: grpc.status;
  readonly message: string;
  readonly reason: string;
  readonly metadata: Record<string, string>;
  readonly violations: readonly Violation[];
}

interface Violation {
  readonly type: string;
  readonly subject: string;
  readonly description: string;
}

const INVALID_ARGUMENT_CODES: ReadonlySet<ErrorCode> = new Set(['INVALID_REFERENCE', 'INVALID_DIGEST', 'INVALID_ARGUMENT']);

/** Decides code, message, ErrorInfo reason and violations for any thrown value. */
export function describeFailure(err: unknown, context: { image?: string } = {}): GrpcFailure {
  // The image name is request data of any length: bounded like every other metadata value, or a
  // 64 KiB name makes the trailer exceed the client's metadata limit and the call never completes.
  const image = truncate(context.image ?? '', MAX_DESCRIPTION_LENGTH);
  if (isSignatureDeniedError(err)) {
    const verdict = err.verdict;
    return {
      code: grpc.status.UNKNOWN,
      message: oneLine(`${SIGNATURE_VALIDATION_FAILED}: ${err.message}`),
      reason: 'SIGNATURE_VALIDATION_FAILED',
      metadata: {
        image: truncate(err.image, MAX_DESCRIPTION_LENGTH),
        manifestDigest: err.manifestDigest,
        policyFile: verdict.scope.policyFile,
        scope: verdict.scope.scope,
        troubles: String(verdict.troubles.length),
      },
      violations: verdictViolations(verdict),
    };
  }
  if (!isPullguardError(err)) {
    return {
      code: grpc.status.UNKNOWN,
      message: oneLine(`internal error: ${err instanceof Error ? err.message : String(err)}`),
      reason: 'INTERNAL',
      metadata: { image },
      violations: [],
    };
  }
  const facts = factsMetadata(err, image);
  if (INVALID_ARGUMENT_CODES.has(err.code)) {
    return { code: grpc.status.INVALID_ARGUMENT, message: oneLine(err.message), reason: err.code, metadata: facts, violations: [] };
  }
  switch (err.code) {
    case 'REGISTRY_UNAVAILABLE':
      return {
        code: grpc.status.UNKNOWN,
        message: oneLine(`${REGISTRY_UNAVAILABLE}: ${err.message}`),
        reason: 'REGISTRY_UNAVAILABLE',
        metadata: facts,
        violations: [],
      };
    case 'SHUTTING_DOWN':
    case 'BACKEND_UNAVAILABLE':
      return { code: grpc.status.UNAVAILABLE, message: oneLine(err.message), reason: err.code, metadata: facts, violations: [] };
    case 'CANCELLED':
      return { code: grpc.status.CANCELLED, message: oneLine(err.message), reason: err.code, metadata: facts, violations: [] };
    default:
      // Plain, specific message with code UNKNOWN: kubelet shows it verbatim (reason ErrImagePull).
      return { code: grpc.status.UNKNOWN, message: oneLine(err.message), reason: err.code, metadata: facts, violations: [] };
  }
}

/** A grpc-js ServiceError carrying the status and its rich details. */
export function toServiceError(err: unknown, context: { image?: string } = {}): grpc.ServiceError {
  const failure = describeFailure(err, context);
  const metadata = new grpc.Metadata();
  metadata.set('grpc-status-details-bin', encodeStatusDetails(failure));
  return Object.assign(new Error(failure.message), {
    code: failure.code,
    details: failure.message,
    metadata,
  }) as grpc.ServiceError;
}

/** Serialises google.rpc.Status{code, message, [ErrorInfo, PreconditionFailure]}. */
export function encodeStatusDetails(failure: GrpcFailure): Buffer {
  const root = loadRpcRoot();
  const Status = root.lookupType('google.rpc.Status');
  const ErrorInfo = root.lookupType('google.rpc.ErrorInfo');
  const PreconditionFailure = root.lookupType('google.rpc.PreconditionFailure');
  const details = [
    {
      type_url: 'type.googleapis.com/google.rpc.ErrorInfo',
      value: ErrorInfo.encode(ErrorInfo.fromObject({ reason: failure.reason, domain: ERROR_DOMAIN, metadata: failure.metadata })).finish(),
    },
  ];
  if (failure.violations.length > 0) {
    details.push({
      type_url: 'type.googleapis.com/google.rpc.PreconditionFailure',
      value: PreconditionFailure.encode(PreconditionFailure.fromObject({ violations: failure.violations })).finish(),
    });
  }
  return Buffer.from(Status.encode(Status.fromObject({ code: failure.code, message: failure.message, details })).finish());
}

/** Trailing metadata for a successful pull that needed partial sufficiency or retries. */
export function warningsMetadata(warnings: readonly Warning[]): grpc.Metadata | undefined {
  if (warnings.length === 0) return undefined;
  const metadata = new grpc.Metadata();
  const shown = warnings.slice(0, MAX_WARNING_VALUES);
  for (const warning of shown) metadata.add(WARNINGS_METADATA_KEY, asciiHeaderValue(`${warning.code} ${warning.message}`));
  if (warnings.length > shown.length) metadata.add(WARNINGS_METADATA_KEY, `PGW000 and ${warnings.length - shown.length} more warnings`);
  return metadata;
}

/** One violation per signature index and per trouble, bounded (a 128-signature denial must fit a trailer). */
function verdictViolations(verdict: Verdict): Violation[] {
  const all: Violation[] = [];
  for (const requirement of verdict.requirements) {
    if (!requirement.satisfied && requirement.rejections.length === 0) {
      all.push({ type: 'REQUIREMENT_UNSATISFIED', subject: requirement.description, description: requirement.reason ?? 'not satisfied' });
    }
    for (const rejection of requirement.rejections) {
      all.push({ type: `SIGNATURE_REJECTED`, subject: subjectOf(rejection.location), description: `${rejection.kind}: ${rejection.reason}` });
    }
  }
  for (const trouble of verdict.troubles) {
    all.push({ type: 'SIGNATURE_UNREADABLE', subject: subjectOf(trouble.location), description: troubleDescription(trouble) });
  }
  const kept = all.slice(0, MAX_VIOLATIONS).map((v) => ({ ...v, description: truncate(oneLineRaw(v.description), MAX_DESCRIPTION_LENGTH) }));
  if (all.length > kept.length) {
    kept.push({ type: 'TRUNCATED', subject: 'violations', description: `${all.length - kept.length} more violations not shown` });
  }
  return kept;
}

/** `signature-2 http://host/…/signature-2`: a long URL is cut in the middle, keeping host and index. */
function subjectOf(location: SignatureLocation): string {
  return truncate(oneLineRaw(describeLocation(location, MAX_DESCRIPTION_LENGTH)), MAX_DESCRIPTION_LENGTH);
}

/** The subject names the location: the description is the kind, the free text and the facts, within the bound. */
function troubleDescription(trouble: SignatureTrouble): string {
  return `${trouble.kind}: ${describeTroubleCause(trouble, MAX_DESCRIPTION_LENGTH - trouble.kind.length - 2)}`;
}

function factsMetadata(err: PullguardError, image: string): Record<string, string> {
  const out: Record<string, string> = {};
  if (image !== '') out.image = image;
  for (const [key, value] of Object.entries(err.facts)) if (value !== undefined) out[key] = truncate(String(value), MAX_DESCRIPTION_LENGTH);
  return out;
}

function oneLineRaw(text: string): string {
  return text.replace(/[\r\n\t]+/g, ' ');
}

function oneLine(text: string): string {
  return truncate(oneLineRaw(text), MAX_MESSAGE_LENGTH);
}

function truncate(text: string, max: number): string {
  return text.length <= max ? text : `${text.slice(0, max - 1)}…`;
}

/** Metadata values must be printable ASCII. */
function asciiHeaderValue(text: string): string {
  return truncate(text.replace(/[^\x20-\x7e]/g, '?'), 1024);
}
