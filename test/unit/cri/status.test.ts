import * as grpc from '@grpc/grpc-js';
import { describe, expect, it } from 'vitest';
import { parseDigest } from '../../../src/domain/digest.js';
import { PullguardError } from '../../../src/domain/errors.js';
import type { SignatureLocation, Verdict } from '../../../src/domain/signature.js';
import { loadRpcRoot } from '../../../src/transport/cri-proto.js';
import { describeFailure, encodeStatusDetails, toServiceError, warningsMetadata } from '../../../src/cri/status.js';
import { SignatureDeniedError } from '../../../src/pull/pull-errors.js';

const DIGEST = parseDigest(`sha256:${'c'.repeat(64)}`);
const loc = (index: number): SignatureLocation => ({
  source: 'lookaside',
  index,
  url: `http://127.0.0.1:1/sigs/app@sha256=${'c'.repeat(64)}/signature-${index}`,
});

function deniedVerdict(signatures: number, troubles: number): Verdict {
  return {
    allowed: false,
    scope: { policyFile: '/etc/containers/policy.json', scope: 'registry.example/app' },
    requirements: [
      {
        type: 'signedBy',
        description: 'signedBy GPGKeys (1 key, matchRepoDigestOrExact)',
        satisfied: false,
        reason: 'None of the signatures were accepted',
        rejections: Array.from({ length: signatures }, (_, i) => ({
          verdict: 'rejected' as const,
          location: loc(i + 1),
          kind: 'untrusted-key' as const,
          reason: `signature by key ${'AB'.repeat(20)} is not accepted`,
        })),
      },
    ],
    troubles: Array.from({ length: troubles }, (_, i) => ({
      location: loc(signatures + i + 1),
      kind: 'unrecognized-format' as const,
      message: 'unrecognized signature format, starting with binary 0x3c',
      httpStatus: 200,
      contentType: 'text/html',
      attempts: 2,
    })),
    warnings: [],
    denial: 'None of the signatures were accepted, reasons: …; additionally 1 signature could not be read: …',
  };
}

function decodeDetails(buf: Buffer): { code: number; message: string; details: { type_url: string; value: Uint8Array }[] } {
  const Status = loadRpcRoot().lookupType('google.rpc.Status');
  return Status.toObject(Status.decode(buf), { defaults: true }) as never;
}

describe('status translator', () => {
  it('maps a policy denial to UNKNOWN + SignatureValidationFailed with the same code and message in the details', () => {
    const err = new SignatureDeniedError('registry.example/app:v1', DIGEST, deniedVerdict(1, 1));
    const serviceError = toServiceError(err);
    expect(serviceError.code).toBe(grpc.status.UNKNOWN);
    expect(serviceError.details.startsWith('SignatureValidationFailed: Source image rejected: None of the signatures')).toBe(true);
    const status = decodeDetails(serviceError.metadata.get('grpc-status-details-bin')[0] as Buffer);
    expect(status.code).toBe(serviceError.code);
    expect(status.message).toBe(serviceError.details);
    const root = loadRpcRoot();
    const info = root.lookupType('google.rpc.ErrorInfo').decode(status.details[0]!.value) as unknown as {
      reason: string;
      domain: string;
      metadata: Record<string, string>;
    };
    expect(info).toMatchObject({ reason: 'SIGNATURE_VALIDATION_FAILED', domain: 'pullguard' });
    expect(info.metadata).toMatchObject({
      image: 'registry.example/app:v1',
      manifestDigest: DIGEST,
      policyFile: '/etc/containers/policy.json',
      scope: 'registry.example/app',
    });
    const failure = root.lookupType('google.rpc.PreconditionFailure').decode(status.details[1]!.value) as unknown as {
      violations: { type: string; subject: string }[];
    };
    expect(failure.violations.map((v) => v.type)).toEqual(['SIGNATURE_REJECTED', 'SIGNATURE_UNREADABLE']);
    expect(failure.violations[1]!.subject).toMatch(/^signature-2 /);
  });

  it('keeps a 128-signature denial trailer small and summarises the rest', () => {
    const err = new SignatureDeniedError('registry.example/app:v1', DIGEST, deniedVerdict(100, 28));
    const bytes = encodeStatusDetails(describeFailure(err));
    expect(bytes.length).toBeLessThan(16 * 1024);
    const status = decodeDetails(bytes);
    const failure = loadRpcRoot().lookupType('google.rpc.PreconditionFailure').decode(status.details[1]!.value) as unknown as {
      violations: { type: string; description: string }[];
    };
    expect(failure.violations.at(-1)).toMatchObject({ type: 'TRUNCATED', description: '88 more violations not shown' });
  });

  it('maps registry unreachability to RegistryUnavailable and bad references to INVALID_ARGUMENT', () => {
    const unavailable = describeFailure(new PullguardError('REGISTRY_UNAVAILABLE', 'connection refused to 127.0.0.1:9', { facts: { host: '127.0.0.1:9' } }));
    expect(unavailable).toMatchObject({ code: grpc.status.UNKNOWN, reason: 'REGISTRY_UNAVAILABLE' });
    expect(unavailable.message).toBe('RegistryUnavailable: connection refused to 127.0.0.1:9');
    expect(describeFailure(new PullguardError('INVALID_REFERENCE', 'invalid image reference "A"')).code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(describeFailure(new PullguardError('REGISTRY_NOT_FOUND', 'manifest unknown')).message).toBe('manifest unknown');
  });

  it('produces one-line, bounded messages', () => {
    const failure = describeFailure(new PullguardError('REGISTRY_PROTOCOL', `line one\nline two ${'x'.repeat(5000)}`));
    expect(failure.message).not.toMatch(/\n/);
    expect(failure.message.length).toBeLessThanOrEqual(2048);
  });

  it('keeps host, index, kind and facts of an unreadable signature with a 300-character URL', () => {
    const url = `http://lookaside.example:8080/${'mirror/'.repeat(25)}ab/sigs/app@sha256=${'c'.repeat(64)}/signature-2`;
    expect(url).toHaveLength(300);
    const verdict: Verdict = {
      ...deniedVerdict(0, 0),
      troubles: [
        {
          location: { source: 'lookaside', index: 2, url },
          kind: 'unrecognized-format',
          // A producer without `detail`: the URL inside the message must not push the facts out.
          message: `parsing signature ${url}: unrecognized signature format, starting with binary 0x3c`,
          httpStatus: 200,
          contentType: 'text/html; charset=UTF-8',
          firstByte: 0x3c,
          attempts: 2,
        },
      ],
    };
    const failure = describeFailure(new SignatureDeniedError('registry.example/app:v1', DIGEST, verdict));
    const unreadable = failure.violations.find((v) => v.type === 'SIGNATURE_UNREADABLE')!;
    expect(unreadable.subject).toMatch(/^signature-2 http:\/\/lookaside\.example:8080\/….*\/signature-2$/);
    expect(unreadable.description).toMatch(
      /^unrecognized-format: .*starting with binary 0x3c \(HTTP 200, Content-Type text\/html; charset=UTF-8, 2 attempts\)$/,
    );
    expect(unreadable.description.length).toBeLessThanOrEqual(300);
  });

  it('puts warnings in printable ASCII trailing metadata', () => {
    const md = warningsMetadata([{ code: 'PGW001', message: 'signature-2 could not be read: “HTML”' }]);
    expect(md?.get('pullguard-warnings')).toEqual(['PGW001 signature-2 could not be read: ?HTML?']);
    expect(warningsMetadata([])).toBeUndefined();
  });
});
