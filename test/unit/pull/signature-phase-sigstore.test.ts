import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { loadPolicyFromText } from '../../../src/config/policy-loader.js';
import { parseReference } from '../../../src/domain/reference.js';
import type { SignatureFetchReport, SignatureTrouble, UntrustedSignatureBlob } from '../../../src/domain/signature.js';
import type { LoadedPolicy, ResolvedImage, SignatureSource } from '../../../src/pull/ports.js';
import { runSignaturePhase } from '../../../src/pull/signature-phase.js';
import type { SigstoreAttachmentSource } from '../../../src/sources/attachment-source.js';
import { signedLayer, sigstoreKey, type AttachmentLayer } from '../../fixtures/sigstore/cosign.js';
import { testPki } from '../../fixtures/sigstore/test-ca.js';
import * as fx from '../../fixtures/signatures/fixtures.js';

const reference = parseReference(fx.SIGNED_IDENTITY);
const image: ResolvedImage = fx.resolvedFixtureImage();
const cosign = sigstoreKey('cosign');
const goodLayer = signedLayer(cosign, { digest: fx.MANIFEST_DIGEST, reference: reference.name });

const gpgSig: UntrustedSignatureBlob = {
  location: { source: 'lookaside', index: 1, url: 'file:///sigs/signature-1' },
  format: 'simple-signing',
  bytes: fx.signatureFixture('valid'),
};
const attachment = (index: number, layer: AttachmentLayer): UntrustedSignatureBlob => ({
  location: { source: 'sigstore-attachment', index, url: `docker://${reference.name}@sha256:${index}` },
  format: 'sigstore',
  bytes: layer.bytes,
  untrustedMimeType: layer.mediaType,
  untrustedAnnotations: layer.annotations,
});
const unreadable = (index: number): SignatureTrouble => ({
  location: { source: 'sigstore-attachment', index, url: `docker://${reference.name}@sha256:${index}` },
  kind: 'http-status',
  httpStatus: 500,
  message: 'reading blob: HTTP 500',
  attempts: 1,
});

function staticSource<T extends object>(report: Partial<SignatureFetchReport>, extra: T): SignatureSource & T & { calls: number } {
  const source = Object.assign(
    {
      yields: 'simple-signing' as 'simple-signing' | 'sigstore',
      calls: 0,
      async fetch() {
        source.calls++;
        return { signatures: [], troubles: [], end: 'not-found', notices: [], retriedIndices: [], ...report } as SignatureFetchReport;
      },
    },
    extra,
  );
  return source;
}
const lookaside = (signatures: UntrustedSignatureBlob[] = [gpgSig]) => staticSource({ signatures }, {});
const attachments = (signatures: UntrustedSignatureBlob[], troubles: SignatureTrouble[] = []) =>
  staticSource({ signatures, troubles }, { yields: 'sigstore' as const }) as SigstoreAttachmentSource & { calls: number };

let dir: string;
let load: (requirements: unknown[]) => Promise<LoadedPolicy>;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'pullguard-sigstore-phase-'));
  await writeFile(join(dir, 'trusted.gpg'), fx.keyFixture('trusted.gpg'));
  load = (requirements) => loadPolicyFromText(JSON.stringify({ default: requirements }), 'policy.json');
});
afterAll(async () => rm(dir, { recursive: true, force: true }));

const signedBy = () => ({ type: 'signedBy', keyType: 'GPGKeys', keyPath: join(dir, 'trusted.gpg') });
const sigstoreSigned = (extra: object = {}) => ({ type: 'sigstoreSigned', keyPath: cosign.publicPath, signedIdentity: { type: 'matchRepository' }, ...extra });

describe('signature phase with sigstoreSigned', () => {
  test('mixed policy: each requirement is satisfied by its own kind of signature', async () => {
    const { verdict } = await runSignaturePhase({
      policy: await load([signedBy(), sigstoreSigned()]),
      image,
      sources: [lookaside(), attachments([attachment(1, goodLayer)])],
    });
    expect(verdict).toMatchObject({ allowed: true, warnings: [] });
    expect(verdict.requirements.map((r) => r.satisfiedBy?.location.source)).toEqual(['lookaside', 'sigstore-attachment']);
  });

  test('mixed policy without an attachment: sigstoreSigned counts the simple-signing signature as non-sigstore', async () => {
    const attestation: AttachmentLayer = { ...goodLayer, mediaType: 'application/vnd.dsse.envelope.v1+json' };
    const { verdict } = await runSignaturePhase({
      policy: await load([signedBy(), sigstoreSigned()]),
      image,
      sources: [lookaside(), attachments([attachment(1, attestation)])],
    });
    expect(verdict.requirements.map((r) => r.satisfied)).toEqual([true, false]);
    expect(verdict.denial).toBe('A signature was required, but no signature exists (1 non-sigstore signatures, 1 sigstore non-signature attachments)');
  });

  test('signedBy ignores sigstore signatures, and attachments are not even fetched for it', async () => {
    const sigstoreOnly = attachments([attachment(1, goodLayer)]);
    const { verdict } = await runSignaturePhase({ policy: await load([signedBy()]), image, sources: [lookaside([]), sigstoreOnly] });
    expect(verdict.denial).toBe('A signature was required, but no signature exists');
    expect(sigstoreOnly.calls).toBe(0);
  });

  test('partial sufficiency: an unreadable layer beside a valid one → allowed with PGW001 naming the attachment', async () => {
    const { verdict } = await runSignaturePhase({
      policy: await load([sigstoreSigned()]),
      image,
      sources: [lookaside([]), attachments([attachment(1, goodLayer)], [unreadable(2)])],
    });
    expect(verdict.allowed).toBe(true);
    expect(verdict.warnings).toEqual([
      expect.objectContaining({
        code: 'PGW001',
        message: expect.stringContaining(`sigstore-attachment-2 (docker://${reference.name}@sha256:2): reading blob: HTTP 500 (HTTP 500)`),
      }),
    ]);
  });

  test('no valid signature: denied with the rejection and the trouble', async () => {
    const forged = signedLayer(cosign, { digest: fx.MANIFEST_DIGEST, reference: reference.name }, { signWith: sigstoreKey('other') });
    const { verdict } = await runSignaturePhase({
      policy: await load([sigstoreSigned()]),
      image,
      sources: [attachments([attachment(1, forged)], [unreadable(2)])],
    });
    expect(verdict.denial).toBe(
      `cryptographic signature verification failed: invalid signature when validating ASN.1 encoded signature; additionally 1 signature could not be read: sigstore-attachment-2 (docker://${reference.name}@sha256:2): reading blob: HTTP 500 (HTTP 500)`,
    );
  });

  test('a throwing attachment source is a sigstore-attachment trouble at index 0', async () => {
    const broken: SigstoreAttachmentSource = { yields: 'sigstore', fetch: async () => Promise.reject(new Error('boom')) };
    const { verdict } = await runSignaturePhase({ policy: await load([sigstoreSigned()]), image, sources: [lookaside([]), broken] });
    expect(verdict.troubles).toEqual([
      expect.objectContaining({ location: expect.objectContaining({ source: 'sigstore-attachment', index: 0 }), message: 'reading signatures: boom' }),
    ]);
    expect(verdict.allowed).toBe(false);
  });
});

describe('policy loader: sigstore keys', () => {
  test('loads keyPath / keyDatas / rekor keys once per load', async () => {
    const pem = (name: 'cosign' | 'ed25519' | 'rekor') => Buffer.from(sigstoreKey(name).publicPem).toString('base64');
    const loaded = await load([sigstoreSigned(), { type: 'sigstoreSigned', keyDatas: [pem('cosign'), pem('ed25519')], rekorPublicKeyData: pem('rekor') }]);
    const sets = [...(loaded.sigstoreKeys?.values() ?? [])];
    expect(sets.map((s) => [s.publicKeys.length, s.rekorKeys?.length])).toEqual([
      [1, undefined],
      [2, 1],
    ]);
  });
  test('fulcio/pki: CA certificates are loaded with the policy; CA data without a certificate is a configuration error; bad key files are reported together', async () => {
    const ca = testPki(Date.UTC(2030, 0, 1)).root.pem;
    const b64 = (text: string) => Buffer.from(text).toString('base64');
    const rekorPublicKeyData = b64(sigstoreKey('rekor').publicPem);
    const loaded = await load([
      { type: 'sigstoreSigned', fulcio: { caData: b64(ca), oidcIssuer: 'https://issuer', subjectEmail: 'a@b' }, rekorPublicKeyData },
      { type: 'sigstoreSigned', pki: { caRootsData: b64(ca), caIntermediatesData: b64(ca), subjectHostname: 'build.example' } },
    ]);
    expect(
      [...(loaded.sigstoreKeys?.values() ?? [])].map((s) => [s.fulcio?.caCertificates.length, s.rekorKeys?.length, s.pki?.caIntermediateCertificates?.length]),
    ).toEqual([
      [1, 1, undefined],
      [undefined, undefined, 1],
    ]);
    await expect(
      load([{ type: 'sigstoreSigned', fulcio: { caData: 'Y2E=', oidcIssuer: 'https://issuer', subjectEmail: 'a@b' }, rekorPublicKeyData }]),
    ).rejects.toMatchObject({ code: 'KEY_LOAD_FAILED', message: expect.stringContaining('fulcio caData: error loading Fulcio CA certificates') });
    await expect(load([{ type: 'sigstoreSigned', pki: { caRootsPath: join(dir, 'missing.pem'), subjectEmail: 'a@b' } }])).rejects.toMatchObject({
      code: 'KEY_LOAD_FAILED',
      message: expect.stringContaining(`reading PKI CA roots file "${join(dir, 'missing.pem')}"`),
    });
    const err = await load([sigstoreSigned({ keyPath: join(dir, 'missing.pub') }), sigstoreSigned({ keyPath: join(dir, 'trusted.gpg') })]).catch(
      (e: unknown) => e,
    );
    expect(err).toMatchObject({ code: 'KEY_LOAD_FAILED' });
    expect((err as Error).message).toContain('missing.pub');
    expect((err as Error).message).toContain('trusted.gpg');
  });
});
