import { describe, expect, test } from 'vitest';
import type { Digest } from '../../../src/domain/digest.js';
import { parseReference } from '../../../src/domain/reference.js';
import type { SignatureCheck, SignatureLocation, SignatureTrouble } from '../../../src/domain/signature.js';
import { describeFailure, toServiceError } from '../../../src/cri/status.js';
import { boundMessage, describePullWarnings } from '../../../src/events/event-object.js';
import { decide, MAX_DENIAL_CHARS, shortenUrl, type RequirementChecks } from '../../../src/policy/decide.js';
import { SignatureDeniedError } from '../../../src/pull/pull-errors.js';
import { parsePolicy } from '../../../src/policy/parse-policy.js';
import type { PolicyRequirement } from '../../../src/policy/types.js';

const DIGEST = `sha256:${'a'.repeat(64)}` as Digest;
const OTHER = `sha256:${'b'.repeat(64)}` as Digest;
const FPR = 'C410DBD12BFE86658A3D684094F969598CC10D95';
const REF = parseReference('registry.example/app:v1');
const SCOPE = { policyFile: '/etc/containers/policy.json', scope: 'registry.example' };
const BASE = `http://127.0.0.1:5555/sigs/app@sha256=${'a'.repeat(64)}`;

const loc = (index: number): SignatureLocation => ({ source: 'lookaside', index, url: `${BASE}/signature-${index}` });
const accepted = (index: number): SignatureCheck => ({
  verdict: 'accepted',
  location: loc(index),
  signer: { keyFingerprint: FPR, primaryKeyFingerprint: FPR },
  signedDockerReference: 'registry.example/app:v1',
  signedManifestDigest: DIGEST,
});
const rejected = (index: number, kind: Extract<SignatureCheck, { verdict: 'rejected' }>['kind'], reason: string): SignatureCheck => ({
  verdict: 'rejected',
  location: loc(index),
  kind,
  reason,
});
const untrustedKey = (i: number) => rejected(i, 'untrusted-key', 'signature by key C5C04D52E93DEDE7F9218B2AC89C165589390E8A is not accepted');
const tampered = (i: number) => rejected(i, 'invalid-signature', 'signature error: Signed digest did not match');
const wrongIdentity = (i: number) => rejected(i, 'identity-mismatch', 'Signature for identity "registry.example/other:v1" is not accepted');
const wrongDigest = (i: number) => rejected(i, 'digest-mismatch', `Signature for digest ${OTHER} does not match`);
const asciiArmored = (i: number): SignatureTrouble =>
  trouble(i, 'unrecognized-format', 'unrecognized signature format, starting with binary 0x2d', { httpStatus: 200, firstByte: 0x2d });

function trouble(index: number, kind: SignatureTrouble['kind'], message: string, extra: Partial<SignatureTrouble> = {}): SignatureTrouble {
  return { location: loc(index), kind, message, attempts: 1, ...extra };
}

const html = (i: number) =>
  trouble(i, 'unrecognized-format', 'unrecognized signature format, starting with binary 0x3c', { httpStatus: 200, contentType: 'text/html', firstByte: 0x3c });
// As read-signature.ts reports it: upstream's message names the URL, `detail` is the same without it.
const status = (i: number, code: number, text: string) =>
  trouble(i, 'http-status', `reading signature from ${BASE}/signature-${i}: received unexpected HTTP status: ${code} ${text}`, {
    detail: `received unexpected HTTP status: ${code} ${text}`,
    httpStatus: code,
    attempts: 3,
  });
const reset = (i: number) => trouble(i, 'transport', 'read ECONNRESET');
const empty = (i: number) => trouble(i, 'empty', 'empty signature blob', { httpStatus: 200 });
const huge = (i: number) => trouble(i, 'too-large', 'exceeded maximum allowed size of 4194304 bytes', { httpStatus: 200, bytesRead: 4194305 });
const stall = (i: number) => trouble(i, 'timeout', 'reading signature timed out after 10000 ms');

const SIGNED_BY: PolicyRequirement = {
  type: 'signedBy',
  keyType: 'GPGKeys',
  keys: { kind: 'path', path: '/etc/pki/key.gpg' },
  signedIdentity: { type: 'matchRepoDigestOrExact' },
};

function run(requirements: readonly RequirementChecks[], troubles: readonly SignatureTrouble[] = []) {
  return decide({ scope: SCOPE, reference: REF, requirements, troubles });
}
const signedBy = (...checks: SignatureCheck[]): RequirementChecks => ({ requirement: SIGNED_BY, checks });

describe('decide: valid signature plus a trouble or a bad signature is allowed, with warnings', () => {
  const cases: { name: string; checks: SignatureCheck[]; troubles: SignatureTrouble[]; codes: string[] }[] = [
    { name: 'valid + HTML page', checks: [accepted(1)], troubles: [html(2)], codes: ['PGW001'] },
    { name: 'valid + 500', checks: [accepted(1)], troubles: [status(2, 500, 'Internal Server Error')], codes: ['PGW001'] },
    { name: 'valid + 403', checks: [accepted(1)], troubles: [status(2, 403, 'Forbidden')], codes: ['PGW001'] },
    { name: 'valid + 503', checks: [accepted(1)], troubles: [status(2, 503, 'Service Unavailable')], codes: ['PGW001'] },
    { name: 'valid + connection reset', checks: [accepted(1)], troubles: [reset(2)], codes: ['PGW001'] },
    { name: 'valid + empty body', checks: [accepted(1)], troubles: [empty(2)], codes: ['PGW001'] },
    { name: 'valid + 5 MiB body', checks: [accepted(1)], troubles: [huge(2)], codes: ['PGW001'] },
    { name: 'valid + ASCII-armoured copy', checks: [accepted(1)], troubles: [asciiArmored(2)], codes: ['PGW001'] },
    { name: 'valid + stall', checks: [accepted(1)], troubles: [stall(2)], codes: ['PGW001'] },
    { name: 'HTML + valid (trouble first)', checks: [accepted(2)], troubles: [html(1)], codes: ['PGW001'] },
    { name: 'untrusted key + valid', checks: [untrustedKey(1), accepted(2)], troubles: [], codes: ['PGW002'] },
    { name: 'tampered + valid', checks: [tampered(1), accepted(2)], troubles: [], codes: ['PGW002'] },
    { name: 'wrong identity + valid', checks: [wrongIdentity(1), accepted(2)], troubles: [], codes: ['PGW002'] },
    { name: 'wrong digest + valid', checks: [wrongDigest(1), accepted(2)], troubles: [], codes: ['PGW002'] },
  ];
  test.each(cases)('$name', ({ checks, troubles, codes }) => {
    const verdict = run([signedBy(...checks)], troubles);
    expect(verdict.allowed).toBe(true);
    expect(verdict.denial).toBeUndefined();
    expect(verdict.warnings.map((w) => w.code)).toEqual(codes);
    expect(verdict.requirements[0]?.satisfiedBy?.verdict).toBe('accepted');
    expect(verdict.troubles).toEqual(troubles);
    // Each warning names the signature that stood in for the broken one, and its key.
    const by = verdict.requirements[0]!.satisfiedBy!;
    for (const w of verdict.warnings) expect(w.message).toContain(`satisfied by signature-${by.location.index} (key ${by.signer.primaryKeyFingerprint}): `);
  });

  test('the trouble warning names index, URL, status and Content-Type', () => {
    const verdict = run([signedBy(accepted(1))], [html(2)]);
    expect(verdict.warnings[0]).toMatchObject({ code: 'PGW001', location: loc(2) });
    expect(verdict.warnings[0]?.message).toContain(
      `signature-2 (${BASE}/signature-2): unrecognized signature format, starting with binary 0x3c (HTTP 200, Content-Type text/html)`,
    );
  });
});

describe('decide: the same troubles without a valid signature are denied with both parts', () => {
  const troubleCases = [
    { name: 'HTML page', t: html(2), text: 'starting with binary 0x3c (HTTP 200, Content-Type text/html)' },
    { name: '500', t: status(2, 500, 'Internal Server Error'), text: '500 Internal Server Error (HTTP 500, 3 attempts)' },
    { name: '403', t: status(2, 403, 'Forbidden'), text: '403 Forbidden' },
    { name: '503', t: status(2, 503, 'Service Unavailable'), text: '503 Service Unavailable' },
    { name: 'reset', t: reset(2), text: 'read ECONNRESET' },
    { name: 'empty body', t: empty(2), text: 'empty signature blob' },
    { name: '5 MiB body', t: huge(2), text: 'exceeded maximum allowed size of 4194304 bytes' },
    { name: 'ASCII-armoured', t: asciiArmored(2), text: 'starting with binary 0x2d' },
    { name: 'stall', t: stall(2), text: 'timed out' },
  ];
  test.each(troubleCases)('untrusted key + $name', ({ t, text }) => {
    const verdict = run([signedBy(untrustedKey(1))], [t]);
    expect(verdict.allowed).toBe(false);
    expect(verdict.warnings).toEqual([]);
    const shown = t.detail ?? t.message;
    expect(verdict.denial).toBe(
      `signature by key C5C04D52E93DEDE7F9218B2AC89C165589390E8A is not accepted; additionally 1 signature could not be read: ${'signature-2'} (${BASE}/signature-2): ${shown}${verdict.denial!.slice(verdict.denial!.indexOf(shown) + shown.length)}`,
    );
    expect(verdict.denial).toContain(text);
  });

  test('no readable signature at all: upstream first clause plus the trouble', () => {
    const verdict = run([signedBy()], [html(1)]);
    expect(verdict.denial).toBe(
      `A signature was required, but no signature exists; additionally 1 signature could not be read: signature-1 (${BASE}/signature-1): unrecognized signature format, starting with binary 0x3c (HTTP 200, Content-Type text/html)`,
    );
  });

  test('two rejections and two troubles: None of the signatures were accepted + plural appendix', () => {
    const verdict = run([signedBy(tampered(1), wrongIdentity(3))], [html(2), reset(4)]);
    expect(verdict.denial).toBe(
      'None of the signatures were accepted, reasons: signature error: Signed digest did not match; Signature for identity "registry.example/other:v1" is not accepted' +
        `; additionally 2 signatures could not be read: signature-2 (${BASE}/signature-2): unrecognized signature format, starting with binary 0x3c (HTTP 200, Content-Type text/html); signature-4 (${BASE}/signature-4): read ECONNRESET`,
    );
  });

  test.each([
    ['untrusted key', untrustedKey(1)],
    ['tampered', tampered(1)],
    ['wrong identity', wrongIdentity(1)],
    ['wrong digest', wrongDigest(1)],
  ] as const)('a single %s rejection passes its text through', (_name, check) => {
    const verdict = run([signedBy(check)]);
    expect(verdict.allowed).toBe(false);
    expect(verdict.denial).toBe((check as Extract<SignatureCheck, { verdict: 'rejected' }>).reason);
  });

  test('a gap (404 at 1, valid at 2 never fetched) is "no signature exists"', () => {
    const verdict = run([signedBy()]);
    expect(verdict).toMatchObject({ allowed: false, denial: 'A signature was required, but no signature exists', warnings: [] });
  });

  test('many troubles stay bounded (~1 KiB) and are counted', () => {
    const troubles = Array.from({ length: 128 }, (_, i) => html(i + 1));
    const checks = Array.from({ length: 128 }, (_, i) => tampered(i + 200));
    const verdict = run([signedBy(...checks)], troubles);
    expect(verdict.denial!.length).toBeLessThan(1500);
    expect(verdict.denial).toContain('; and 124 more');
    expect(verdict.denial).toContain('additionally 128 signatures could not be read');
    expect(verdict.denial).toContain('; and 125 more');
    expect(verdict.troubles).toHaveLength(128);
  });
});

describe('decide: requirement types', () => {
  const policy = parsePolicy(
    JSON.stringify({
      default: [{ type: 'reject' }],
      transports: {
        docker: {
          a: [{ type: 'insecureAcceptAnything' }],
          b: [{ type: 'signedBaseLayer', baseLayerIdentity: { type: 'matchRepository' } }],
          c: [{ type: 'signedBy', keyType: 'X509Certificates', keyPath: '/k' }],
          d: [{ type: 'sigstoreSigned', keyPath: '/k' }],
        },
      },
    }),
    { source: 'p.json' },
  );
  const req = (scope: string) => policy.transports.get('docker')!.get(scope)![0]!;

  test('insecureAcceptAnything allows without signatures, even with troubles (no warnings about troubles it never needed)', () => {
    const verdict = run([{ requirement: req('a'), checks: [] }]);
    expect(verdict).toMatchObject({ allowed: true, warnings: [] });
  });
  test('reject names the image', () => {
    const verdict = run([{ requirement: policy.default[0]!, checks: [] }]);
    expect(verdict.denial).toBe('Running image docker://registry.example/app:v1 is rejected by policy.');
  });
  test('signedBaseLayer always denies', () => {
    expect(run([{ requirement: req('b'), checks: [] }]).denial).toBe('signedBaseLayer not implemented yet!');
  });
  test('other signedBy keyTypes are unimplemented', () => {
    expect(run([{ requirement: req('c'), checks: [accepted(1)] }]).denial).toBe('Unimplemented "keyType" value "X509Certificates"');
  });
  test('sigstoreSigned (keys) is satisfied by an accepted check; with nothing evaluated it names what was skipped', () => {
    expect(run([{ requirement: req('d'), checks: [accepted(1)] }]).allowed).toBe(true);
    const verdict = run([{ requirement: req('d'), checks: [], skipped: { nonSigstore: 2, nonSignatureAttachments: 1 } }]);
    expect(verdict.denial).toBe('A signature was required, but no signature exists (2 non-sigstore signatures, 1 sigstore non-signature attachments)');
  });
  test('requirements are ANDed; the first denial is reported', () => {
    const verdict = run([signedBy(accepted(1)), { requirement: policy.default[0]!, checks: [] }]);
    expect(verdict.allowed).toBe(false);
    expect(verdict.requirements.map((r) => r.satisfied)).toEqual([true, false]);
    expect(verdict.denial).toBe('Running image docker://registry.example/app:v1 is rejected by policy.');
  });
  test('two signedBy requirements each satisfied by a different signature: no PGW002 for the cross rejections', () => {
    const other: PolicyRequirement = { ...SIGNED_BY, keys: { kind: 'path', path: '/other.gpg' } } as PolicyRequirement;
    const verdict = run([signedBy(accepted(1), untrustedKey(2)), { requirement: other, checks: [untrustedKey(1), accepted(2)] }]);
    expect(verdict).toMatchObject({ allowed: true, warnings: [] });
  });
  test('an empty requirement list denies', () => {
    expect(run([]).denial).toBe('List of verification policy requirements must not be empty');
  });
  test('retries and notices become PGW003 / PGW004 on allowed verdicts', () => {
    const verdict = decide({
      scope: SCOPE,
      reference: REF,
      requirements: [signedBy(accepted(1))],
      troubles: [],
      retried: [loc(1)],
      notices: ['signature-1 was served as text/html but parsed'],
    });
    expect(verdict.warnings.map((w) => w.code)).toEqual(['PGW003', 'PGW004']);
  });
  test('deterministic and frozen', () => {
    const input = [signedBy(tampered(1), accepted(2))];
    expect(run(input, [html(3)])).toEqual(run(input, [html(3)]));
    expect(Object.isFrozen(run(input))).toBe(true);
  });
});

describe('decide: the decisive facts survive every bound', () => {
  // A 300-character lookaside URL (a deep base path), as a real configuration may produce.
  const LONG_BASE = `http://lookaside.example:8080/${'mirror/'.repeat(25)}ab/sigs/app@sha256=${'a'.repeat(64)}`;
  const longLoc = (index: number): SignatureLocation => ({ source: 'lookaside', index, url: `${LONG_BASE}/signature-${index}` });
  const longHtml = (i: number): SignatureTrouble => ({
    location: longLoc(i),
    kind: 'unrecognized-format',
    message: `parsing signature ${longLoc(i).url}: unrecognized signature format, starting with binary 0x3c`,
    detail: 'unrecognized signature format, starting with binary 0x3c',
    httpStatus: 200,
    contentType: 'text/html; charset=UTF-8',
    firstByte: 0x3c,
    attempts: 2,
  });
  const long503 = (i: number): SignatureTrouble => ({
    location: longLoc(i),
    kind: 'http-status',
    message: `reading signature from ${longLoc(i).url}: received unexpected HTTP status: 503 Service Unavailable`,
    detail: 'received unexpected HTTP status: 503 Service Unavailable',
    httpStatus: 503,
    attempts: 3,
  });
  const refused = (i: number, extra: Partial<SignatureTrouble> = {}): SignatureTrouble => ({
    location: loc(i),
    kind: 'transport',
    message: `Get "${loc(i).url}": connect ECONNREFUSED 127.0.0.1:5555`,
    detail: 'connect ECONNREFUSED 127.0.0.1:5555',
    errorCode: 'ECONNREFUSED',
    attempts: 1,
    ...extra,
  });
  const occurrences = (text: string, part: string): number => text.split(part).length - 1;
  const IMAGE = 'registry.example/app:v1';

  test('the lookaside URL is 300 characters long', () => {
    expect(longLoc(2).url).toHaveLength(300);
  });

  test('the denial keeps 0x3c and the HTTP status, and names each (shortened) URL once', () => {
    const verdict = run([signedBy(untrustedKey(1))], [longHtml(2), long503(3)]);
    const denial = verdict.denial!;
    expect(denial).toContain('unrecognized signature format, starting with binary 0x3c');
    expect(denial).toContain('503 Service Unavailable');
    expect(denial).toContain('HTTP 503');
    expect(occurrences(denial, 'lookaside.example')).toBe(2);
    expect(denial).toContain(
      `signature-2 (${shortenUrl(longLoc(2).url)}): unrecognized signature format, starting with binary 0x3c (HTTP 200, Content-Type text/html; charset=UTF-8, 2 attempts)`,
    );
    expect(denial).toContain(`signature-3 (${shortenUrl(longLoc(3).url)}): received unexpected HTTP status: 503 Service Unavailable (HTTP 503, 3 attempts)`);
  });

  test('the PGW001 warnings keep 0x3c and the HTTP status, and name each URL once', () => {
    const verdict = run([signedBy(accepted(1))], [longHtml(2), long503(3)]);
    expect(verdict.warnings.map((w) => w.code)).toEqual(['PGW001', 'PGW001']);
    const [html2, unavailable3] = verdict.warnings.map((w) => w.message);
    expect(html2).toContain('starting with binary 0x3c');
    expect(unavailable3).toContain('503 Service Unavailable');
    for (const message of [html2!, unavailable3!]) expect(occurrences(message, 'lookaside.example')).toBe(1);
  });

  test('the gRPC status kubelet sees keeps them too (message, details and violations)', () => {
    const verdict = run([signedBy(untrustedKey(1))], [longHtml(2), long503(3)]);
    const err = new SignatureDeniedError(IMAGE, DIGEST, verdict);
    const failure = describeFailure(err, { image: IMAGE });
    expect(failure.message).toMatch(/^SignatureValidationFailed: Source image rejected: /);
    expect(failure.message).toContain('starting with binary 0x3c');
    expect(failure.message).toContain('503 Service Unavailable');
    expect(toServiceError(err).details).toBe(failure.message);
    const unreadable = failure.violations.filter((v) => v.type === 'SIGNATURE_UNREADABLE');
    // The subject names the location within its 300 characters: host and index survive.
    expect(unreadable.map((v) => v.subject)).toEqual([
      expect.stringMatching(/^signature-2 http:\/\/lookaside\.example:8080\/.*….*\/signature-2$/),
      expect.stringMatching(/^signature-3 http:\/\/lookaside\.example:8080\/.*….*\/signature-3$/),
    ]);
    for (const v of unreadable) expect(v.subject.length).toBeLessThanOrEqual(300);
    expect(unreadable[0]!.description).toContain('0x3c');
    expect(unreadable[1]!.description).toContain('503 Service Unavailable');
  });

  test('the Event message keeps them too', () => {
    const verdict = run([signedBy(accepted(1))], [longHtml(2), long503(3)]);
    // As the event recorder builds it: the image, then the warnings, bounded to 1 KiB.
    const message = boundMessage(`Image "${IMAGE}": ${describePullWarnings(verdict.warnings)}`);
    expect(message).toContain('0x3c');
    expect(message).toContain('503 Service Unavailable');
  });

  test('a denial at every bound at once still ends with the facts of the troubles it lists', () => {
    const longReasons = Array.from({ length: 128 }, (_, i) => rejected(i + 200, 'invalid-signature', `signature error: ${'x'.repeat(400)}`));
    const troubles = Array.from({ length: 128 }, (_, i) => ({
      ...long503(i + 1),
      detail: `${'y'.repeat(400)} received unexpected HTTP status: 503 Service Unavailable`,
      contentType: 'z'.repeat(500),
    }));
    const verdict = run([signedBy(...longReasons)], troubles);
    expect(verdict.denial!.length).toBeLessThanOrEqual(MAX_DENIAL_CHARS);
    expect(occurrences(verdict.denial!, '(HTTP 503, Content-Type ')).toBe(3);
    const message = describeFailure(new SignatureDeniedError(IMAGE, DIGEST, verdict)).message;
    expect(message.endsWith('; and 125 more')).toBe(true);
  });

  test('one enormous upstream reason is cut, never the troubles after it', () => {
    const identity = rejected(1, 'identity-mismatch', `Signature for identity "registry.example/${'n'.repeat(5000)}:v1" is not accepted`);
    const verdict = run([signedBy(identity)], [longHtml(2)]);
    expect(verdict.denial!.length).toBeLessThanOrEqual(MAX_DENIAL_CHARS);
    expect(verdict.denial).toMatch(
      /…; additionally 1 signature could not be read: signature-2 .*0x3c \(HTTP 200, Content-Type text\/html; charset=UTF-8, 2 attempts\)$/,
    );
    expect(describeFailure(new SignatureDeniedError(IMAGE, DIGEST, verdict)).message).toContain('0x3c');
  });

  test('the first byte is added to the facts when the free text that named it was cut', () => {
    const verdict = run([signedBy()], [{ ...longHtml(1), detail: `${'w'.repeat(300)} starting with binary 0x3c` }]);
    expect(verdict.denial).toMatch(/…\s?\(HTTP 200, Content-Type text\/html; charset=UTF-8, first byte 0x3c, 2 attempts\)$/);
  });

  test('a message that names the URL itself (no detail) names it once, shortened', () => {
    const { detail: _omitted, ...withoutDetail } = long503(2);
    const verdict = run([signedBy()], [withoutDetail]);
    expect(occurrences(verdict.denial!, 'lookaside.example')).toBe(1);
    expect(verdict.denial).toContain(
      `signature-2: reading signature from ${shortenUrl(longLoc(2).url)}: received unexpected HTTP status: 503 Service Unavailable (HTTP 503, 3 attempts)`,
    );
  });

  test('server down: signature-1 could not be reached, the read stopped after 3 failures; -2 and -3 are not listed', () => {
    const verdict = run([signedBy()], [refused(1), refused(2), refused(3, { stoppedReadAfter: 3 })]);
    expect(verdict.denial).toBe(
      `A signature was required, but no signature exists; additionally 1 signature could not be read: signature-1 (${BASE}/signature-1) could not be reached: connect ECONNREFUSED 127.0.0.1:5555; the read stopped after 3 consecutive failures`,
    );
    expect(verdict.troubles).toHaveLength(3); // the record keeps every request that failed
  });

  test('a stopping run that failed in different ways lists each, then says the read stopped', () => {
    const verdict = run([signedBy()], [status(1, 503, 'Service Unavailable'), reset(2), { ...empty(3), stoppedReadAfter: 3 }]);
    expect(verdict.denial).toMatch(
      /additionally 3 signatures could not be read: signature-1 .*503 Service Unavailable.*; signature-2 .*read ECONNRESET; signature-3 .*empty signature blob \(HTTP 200\); the read stopped after 3 consecutive failures$/,
    );
  });

  test('on an allowed verdict a stopping run is one PGW001 about its first index', () => {
    const verdict = run([signedBy(accepted(1))], [html(2), html(3), { ...html(4), stoppedReadAfter: 3 }]);
    expect(verdict.warnings).toHaveLength(1);
    expect(verdict.warnings[0]).toMatchObject({ code: 'PGW001', location: loc(2) });
    expect(verdict.warnings[0]!.message).toMatch(/signature-2 .*0x3c .*; the read stopped after 3 consecutive failures$/);
  });

  test('shortenUrl keeps host and final segment, cuts the middle, leaves short URLs alone', () => {
    expect(shortenUrl(`${BASE}/signature-1`)).toBe(`${BASE}/signature-1`);
    const short = shortenUrl(longLoc(12).url);
    expect(short.length).toBeLessThanOrEqual(128);
    expect(short).toMatch(/^http:\/\/lookaside\.example:8080\/…\/app@sha256=a+\/signature-12$/);
    expect(shortenUrl(longLoc(12).url, 64)).toMatch(/^http:\/\/lookaside\.example:8080\/…\/app@sha256=a+…\/signature-12$/);
    expect(shortenUrl(`/var/lib/containers/sigstore/${'d/'.repeat(100)}app@sha256=${'b'.repeat(64)}/signature-3`)).toBe(
      `/…/app@sha256=${'b'.repeat(64)}/signature-3`,
    );
  });
});

describe('decide: requireSignatureVerification ("must verify something")', () => {
  const ACCEPT_ANYTHING: RequirementChecks = { requirement: { type: 'insecureAcceptAnything' }, checks: [] };
  const required = (requirements: readonly RequirementChecks[], troubles: readonly SignatureTrouble[] = []) =>
    decide({ scope: SCOPE, reference: REF, requirements, troubles, requireSignatureVerification: true });

  test('off by default: insecureAcceptAnything allows', () => {
    expect(run([ACCEPT_ANYTHING]).allowed).toBe(true);
    expect(decide({ scope: SCOPE, reference: REF, requirements: [ACCEPT_ANYTHING], troubles: [], requireSignatureVerification: false }).allowed).toBe(true);
  });

  test('on: a policy that would allow without verifying any signature denies, troubles appended', () => {
    expect(required([ACCEPT_ANYTHING])).toMatchObject({
      allowed: false,
      warnings: [],
      denial: 'Signature verification is required, but the policy accepts this image without verifying any signature',
    });
    expect(required([ACCEPT_ANYTHING, ACCEPT_ANYTHING], [html(1)]).denial).toMatch(
      /^Signature verification is required, .*; additionally 1 signature could not be read: signature-1/,
    );
  });

  test('on: a verified signature anywhere in the requirements is enough (insecureAcceptAnything beside signedBy is `&& true`)', () => {
    expect(required([signedBy(accepted(1))]).allowed).toBe(true);
    expect(required([ACCEPT_ANYTHING, signedBy(untrustedKey(1), accepted(2))])).toMatchObject({
      allowed: true,
      warnings: [expect.objectContaining({ code: 'PGW002' })],
    });
  });

  test('on: denials keep their own reason (the first denying requirement), as without the mode', () => {
    expect(required([signedBy(untrustedKey(1))]).denial).toBe(run([signedBy(untrustedKey(1))]).denial);
    expect(required([{ requirement: { type: 'reject' }, checks: [] }]).denial).toBe('Running image docker://registry.example/app:v1 is rejected by policy.');
  });
});
