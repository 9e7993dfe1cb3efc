/**
 * Partial sufficiency across signature kinds: a policy requiring both `signedBy` (simple signing,
 * lookaside) and `sigstoreSigned` (cosign attachments) is satisfied only when each requirement is
 * satisfied by a signature of its own kind that verified. Troubles from either source never help:
 * they are warnings on an allowed verdict and are appended to the denial otherwise. Each case runs
 * the real signature phase (real GPG fixtures, cosign-layout layers) and the pure decision.
 */
import { describe, expect, test } from 'vitest';
import { loadPolicyFromText } from '../../../src/config/policy-loader.js';
import { parseReference } from '../../../src/domain/reference.js';
import type { SignatureFetchReport, SignatureTrouble, UntrustedSignatureBlob } from '../../../src/domain/signature.js';
import type { LoadedPolicy, SignatureSource } from '../../../src/pull/ports.js';
import { runSignaturePhase } from '../../../src/pull/signature-phase.js';
import type { SigstoreAttachmentSource } from '../../../src/sources/attachment-source.js';
import * as fx from '../../fixtures/signatures/fixtures.js';
import { signedLayer, sigstoreKey, type AttachmentLayer } from '../../fixtures/sigstore/cosign.js';

const reference = parseReference(fx.SIGNED_IDENTITY);
const image = fx.resolvedFixtureImage();
const cosign = sigstoreKey('cosign');

const gpg = (index: number, name: fx.SignatureFixture): UntrustedSignatureBlob => ({
  location: { source: 'lookaside', index, url: `http://lookaside.example/app@sha256=x/signature-${index}` },
  format: 'simple-signing',
  bytes: fx.signatureFixture(name),
});
const cosignLayer = (index: number, forged = false): UntrustedSignatureBlob => {
  const layer: AttachmentLayer = signedLayer(
    cosign,
    { digest: fx.MANIFEST_DIGEST, reference: reference.name },
    forged ? { signWith: sigstoreKey('other') } : {},
  );
  return {
    location: { source: 'sigstore-attachment', index, url: `docker://${reference.name}@sha256:${index}` },
    format: 'sigstore',
    bytes: layer.bytes,
    untrustedMimeType: layer.mediaType,
    untrustedAnnotations: layer.annotations,
  };
};
const lookasideTrouble = (index: number): SignatureTrouble => ({
  location: { source: 'lookaside', index, url: `http://lookaside.example/app@sha256=x/signature-${index}` },
  kind: 'http-status',
  httpStatus: 503,
  message: 'received unexpected HTTP status: 503 Service Unavailable',
  attempts: 1,
});
const layerTrouble = (index: number): SignatureTrouble => ({
  location: { source: 'sigstore-attachment', index, url: `docker://${reference.name}@sha256:${index}` },
  kind: 'http-status',
  message: 'digest mismatch, expected "sha256:1", got "sha256:2"',
  attempts: 1,
});

function source(signatures: UntrustedSignatureBlob[], troubles: SignatureTrouble[], sigstore: boolean): SignatureSource {
  const report: SignatureFetchReport = { signatures, troubles, end: 'not-found', notices: [], retriedIndices: [] };
  const fetch = async (): Promise<SignatureFetchReport> => report;
  const attachments: SigstoreAttachmentSource = { fetch, yields: 'sigstore' };
  return sigstore ? attachments : { yields: 'simple-signing', fetch };
}

let loaded: LoadedPolicy | undefined;
async function policy(): Promise<LoadedPolicy> {
  loaded ??= await loadPolicyFromText(
    JSON.stringify({
      default: [
        { type: 'signedBy', keyType: 'GPGKeys', keyData: Buffer.from(fx.keyFixture('trusted.gpg')).toString('base64') },
        { type: 'sigstoreSigned', keyPath: cosign.publicPath, signedIdentity: { type: 'matchRepository' } },
      ],
    }),
    'policy.json',
  );
  return loaded;
}

async function verdictFor(lookaside: [UntrustedSignatureBlob[], SignatureTrouble[]], attachments: [UntrustedSignatureBlob[], SignatureTrouble[]]) {
  const { verdict } = await runSignaturePhase({ policy: await policy(), image, sources: [source(...lookaside, false), source(...attachments, true)] });
  return verdict;
}

describe('signedBy + sigstoreSigned: each requirement needs a verified signature of its own kind', () => {
  test('both verified: allowed without warnings', async () => {
    const verdict = await verdictFor([[gpg(1, 'valid')], []], [[cosignLayer(1)], []]);
    expect(verdict).toMatchObject({ allowed: true, warnings: [] });
    expect(verdict.requirements.map((r) => r.satisfiedBy?.location.source)).toEqual(['lookaside', 'sigstore-attachment']);
  });

  test('both verified, each beside a trouble of its own source: allowed, one PGW001 per trouble', async () => {
    const verdict = await verdictFor([[gpg(1, 'valid')], [lookasideTrouble(2)]], [[cosignLayer(2)], [layerTrouble(1)]]);
    expect(verdict.allowed).toBe(true);
    expect(verdict.warnings.map((w) => [w.code, w.location?.source, w.location?.index])).toEqual([
      ['PGW001', 'lookaside', 2],
      ['PGW001', 'sigstore-attachment', 1],
    ]);
  });

  test('simple signing verified, every attachment layer unreadable: denied by sigstoreSigned, naming the troubles', async () => {
    const verdict = await verdictFor([[gpg(1, 'valid')], []], [[], [layerTrouble(1), layerTrouble(2)]]);
    expect(verdict.allowed).toBe(false);
    expect(verdict.requirements.map((r) => r.satisfied)).toEqual([true, false]);
    expect(verdict.denial).toMatch(
      /^A signature was required, but no signature exists \(1 non-sigstore signatures, 0 sigstore non-signature attachments\); additionally 2 signatures could not be read: sigstore-attachment-1 .*sigstore-attachment-2/,
    );
  });

  test('cosign verified, the lookaside unreadable: denied by signedBy; the attachment that verified does not help it', async () => {
    const verdict = await verdictFor([[], [lookasideTrouble(1)]], [[cosignLayer(1)], []]);
    expect(verdict.requirements.map((r) => r.satisfied)).toEqual([false, true]);
    expect(verdict.denial).toMatch(/^A signature was required, but no signature exists; additionally 1 signature could not be read: signature-1 .*503/);
  });

  test('a rejected signature of one kind and a trouble of the other: denied with the rejection and the trouble', async () => {
    const verdict = await verdictFor([[gpg(1, 'untrusted-key')], []], [[cosignLayer(1)], [layerTrouble(2)]]);
    expect(verdict.denial).toMatch(/^signature by key [0-9A-F]+ is not accepted; additionally 1 signature could not be read: sigstore-attachment-2 /);
    const forged = await verdictFor([[gpg(1, 'valid')], [lookasideTrouble(2)]], [[cosignLayer(1, true)], []]);
    expect(forged.denial).toMatch(
      /^cryptographic signature verification failed: invalid signature when validating ASN\.1 encoded signature; additionally 1 signature could not be read: signature-2 /,
    );
  });
});
