import { beforeAll, describe, expect, test } from 'vitest';
import type { Digest } from '../../../src/domain/digest.js';
import { isPullguardError } from '../../../src/domain/errors.js';
import type { SignatureCheck, UntrustedSignatureBlob } from '../../../src/domain/signature.js';
import { loadGpgKeys, type GpgKeySet } from '../../../src/signature/gpg-keys.js';
import { verifySimpleSigning } from '../../../src/signature/simple-signing.js';
import * as fx from '../../fixtures/signatures/fixtures.js';
import { generateTestKey, signPayload, simpleSigningPayload, type TestKey } from '../../helpers/gpg.js';

const loc = { source: 'lookaside', index: 1, url: 'http://127.0.0.1/sigs/signature-1' } as const;
const blob = (bytes: Uint8Array): UntrustedSignatureBlob => ({ location: loc, format: 'simple-signing', bytes });
const HOUR_MS = 3_600_000;
/** The fixtures are verified an hour after gpg signed them, whatever today's date is. */
let fixturesCheckedAt: Date;
const expectFor = (overrides: { digest?: Digest; now?: Date } = {}) => ({
  manifestDigest: overrides.digest ?? fx.MANIFEST_DIGEST,
  matchesIdentity: (ref: string) => ref === fx.SIGNED_IDENTITY,
  now: overrides.now ?? fixturesCheckedAt,
});
const rejection = (check: SignatureCheck) => (check.verdict === 'rejected' ? { kind: check.kind, reason: check.reason } : check);

let trusted: GpgKeySet;
let keyring: GpgKeySet;
beforeAll(async () => {
  fixturesCheckedAt = new Date((await fx.signatureCreatedAt('valid')).getTime() + HOUR_MS);
  trusted = await loadGpgKeys([fx.keyFixture('trusted.gpg')]);
  keyring = await loadGpgKeys([fx.keyFixture('keyring.asc')]);
});

describe('loadGpgKeys', () => {
  test('binary and armoured keyrings give the same fingerprints; several keys per file', async () => {
    expect([...(await loadGpgKeys([fx.keyFixture('trusted.asc')])).primaryFingerprints]).toEqual([fx.TRUSTED_FPR]);
    expect([...trusted.primaryFingerprints]).toEqual([fx.TRUSTED_FPR]);
    expect([...keyring.primaryFingerprints].sort()).toEqual([fx.TRUSTED_FPR, fx.SUBKEY_PRIMARY_FPR].sort());
    expect(keyring.subkeyToPrimary.get(fx.SUBKEY_FPR)).toBe(fx.SUBKEY_PRIMARY_FPR);
  });
  test('no keys / garbage are KEY_LOAD_FAILED', async () => {
    await expect(loadGpgKeys([])).rejects.toSatisfy((e) => isPullguardError(e, 'KEY_LOAD_FAILED') && (e as Error).message === 'No public keys imported');
    await expect(loadGpgKeys([new Uint8Array([1, 2, 3])])).rejects.toSatisfy((e) => isPullguardError(e, 'KEY_LOAD_FAILED'));
  });
});

describe('verifySimpleSigning against real skopeo/gpg signatures', () => {
  test('skopeo signature by the trusted key is accepted with its payload', async () => {
    const check = await verifySimpleSigning(blob(fx.signatureFixture('valid')), trusted, expectFor());
    expect(check).toMatchObject({
      verdict: 'accepted',
      signer: { keyFingerprint: fx.TRUSTED_FPR, primaryKeyFingerprint: fx.TRUSTED_FPR },
      signedDockerReference: fx.SIGNED_IDENTITY,
      signedManifestDigest: fx.MANIFEST_DIGEST,
    });
    expect(check.verdict === 'accepted' && check.creator).toMatch(/^atomic /);
  });
  test('tagged storage form (00 simple-signing\\n…) is accepted too', async () => {
    const raw = fx.signatureFixture('valid');
    const tagged = new Uint8Array([0, ...new TextEncoder().encode('simple-signing\n'), ...raw]);
    expect((await verifySimpleSigning(blob(tagged), trusted, expectFor())).verdict).toBe('accepted');
  });
  test('signing subkey maps to its trusted primary', async () => {
    const check = await verifySimpleSigning(blob(fx.signatureFixture('subkey')), keyring, expectFor());
    expect(check).toMatchObject({ verdict: 'accepted', signer: { keyFingerprint: fx.SUBKEY_FPR, primaryKeyFingerprint: fx.SUBKEY_PRIMARY_FPR } });
  });
  test('untrusted key', async () => {
    expect(rejection(await verifySimpleSigning(blob(fx.signatureFixture('untrusted-key')), trusted, expectFor()))).toEqual({
      kind: 'untrusted-key',
      reason: `signature by key ${fx.UNTRUSTED_FPR} is not accepted`,
    });
  });
  test('subkey signature is not accepted by a keyring without its primary', async () => {
    const check = await verifySimpleSigning(blob(fx.signatureFixture('subkey')), trusted, expectFor());
    expect(rejection(check)).toMatchObject({ kind: 'untrusted-key' });
  });
  test('wrong identity', async () => {
    expect(rejection(await verifySimpleSigning(blob(fx.signatureFixture('wrong-identity')), trusted, expectFor()))).toEqual({
      kind: 'identity-mismatch',
      reason: `Signature for identity "${fx.WRONG_SIGNED_IDENTITY}" is not accepted`,
    });
  });
  test('wrong digest', async () => {
    const other = `sha256:${'0'.repeat(64)}` as Digest;
    expect(rejection(await verifySimpleSigning(blob(fx.signatureFixture('valid')), trusted, expectFor({ digest: other })))).toEqual({
      kind: 'digest-mismatch',
      reason: `Signature for digest ${fx.MANIFEST_DIGEST} does not match`,
    });
  });
  test('tampered payload fails cryptographically before the payload is read', async () => {
    const bytes = fx.signatureFixture('uncompressed');
    expect((await verifySimpleSigning(blob(bytes), trusted, expectFor())).verdict).toBe('accepted');
    const text = Buffer.from(bytes).toString('latin1');
    const at = text.indexOf(fx.MANIFEST_DIGEST) + 'sha256:'.length;
    const tampered = new Uint8Array(bytes);
    tampered[at] = tampered[at] === 0x30 ? 0x31 : 0x30;
    expect(rejection(await verifySimpleSigning(blob(tampered), trusted, expectFor()))).toMatchObject({ kind: 'invalid-signature' });
  });
  test('two signature packets', async () => {
    const keys = await loadGpgKeys([fx.keyFixture('trusted.gpg'), fx.keyFixture('untrusted.gpg')]);
    expect(rejection(await verifySimpleSigning(blob(fx.signatureFixture('two-signatures')), keys, expectFor()))).toEqual({
      kind: 'invalid-signature',
      reason: 'Unexpected GPG signature count 2',
    });
  });
  test('cleartext and detached signatures are refused', async () => {
    expect(rejection(await verifySimpleSigning(blob(fx.signatureFixture('cleartext')), trusted, expectFor()))).toMatchObject({ kind: 'invalid-signature' });
    expect(rejection(await verifySimpleSigning(blob(fx.signatureFixture('detached')), trusted, expectFor()))).toMatchObject({ kind: 'invalid-signature' });
  });
  test('a signature with a 1-day expiry is accepted within that day and expired two days after it was made', async () => {
    const bytes = fx.signatureFixture('expiring');
    const signedAt = (await fx.signatureCreatedAt('expiring')).getTime();
    expect((await verifySimpleSigning(blob(bytes), trusted, expectFor({ now: new Date(signedAt + HOUR_MS) }))).verdict).toBe('accepted');
    expect(rejection(await verifySimpleSigning(blob(bytes), trusted, expectFor({ now: new Date(signedAt + 48 * HOUR_MS) })))).toMatchObject({
      kind: 'expired',
    });
  });
  test('garbage that sniffs as OpenPGP is a rejection, not a throw', async () => {
    expect(rejection(await verifySimpleSigning(blob(new Uint8Array([0xa3, 1, 2, 3])), trusted, expectFor()))).toMatchObject({ kind: 'invalid-signature' });
    expect(rejection(await verifySimpleSigning(blob(new TextEncoder().encode('=quirk')), trusted, expectFor()))).toMatchObject({ kind: 'invalid-signature' });
  });
});

describe('strict payload (openpgp.js-signed)', () => {
  let key: TestKey;
  let keys: GpgKeySet;
  beforeAll(async () => {
    key = await generateTestKey();
    keys = await loadGpgKeys([key.publicKeyBytes]);
  });
  const D = fx.MANIFEST_DIGEST;
  const R = fx.SIGNED_IDENTITY;
  test.each([
    [
      'extra top-level key',
      `{"critical":{"type":"atomic container signature","image":{"docker-manifest-digest":"${D}"},"identity":{"docker-reference":"${R}"}},"optional":{},"x":1}`,
      'Unknown key "x"',
    ],
    [
      'missing optional',
      `{"critical":{"type":"atomic container signature","image":{"docker-manifest-digest":"${D}"},"identity":{"docker-reference":"${R}"}}}`,
      'Key "optional" missing in a JSON object',
    ],
    [
      'duplicate key',
      `{"critical":{"type":"atomic container signature","image":{"docker-manifest-digest":"${D}","docker-manifest-digest":"${D}"},"identity":{"docker-reference":"${R}"}},"optional":{}}`,
      'Duplicate key "docker-manifest-digest"',
    ],
    [
      'wrong type',
      simpleSigningPayload(D, R).replace('atomic container signature', 'cosign container image signature'),
      'Unrecognized signature type cosign container image signature',
    ],
    ['float timestamp', simpleSigningPayload(D, R, { timestamp: 1.5 }), 'Field optional.timestamp is not an integer'],
    ['bad digest', simpleSigningPayload('sha256:xyz', R), 'invalid docker-manifest-digest value "sha256:xyz"'],
    ['trailing data', `${simpleSigningPayload(D, R)}{}`, 'Unexpected data after JSON object'],
  ])('%s', async (_name, payload, reason) => {
    const check = await verifySimpleSigning(blob(await signPayload(key, payload)), keys, expectFor({ now: new Date() }));
    expect(check.verdict).toBe('rejected');
    expect(check.verdict === 'rejected' && check.kind).toBe('invalid-payload');
    expect(check.verdict === 'rejected' && check.reason).toContain(reason);
  });
  test('optional may hold anything else', async () => {
    const payload = simpleSigningPayload(D, R, { creator: 'x', timestamp: 1700000000, anything: [1, { y: null }] });
    expect(await verifySimpleSigning(blob(await signPayload(key, payload)), keys, expectFor({ now: new Date() }))).toMatchObject({
      verdict: 'accepted',
      timestamp: 1700000000,
      creator: 'x',
    });
  });
});
