/**
 * "Must verify something" (upstream's RequireSignatureVerification) through the signature phase and
 * the trust configuration: off by default; on, an image the policy would accept without verifying
 * any signature is denied, and one whose policy verified a signature is still allowed.
 */
import { describe, expect, test } from 'vitest';
import { loadPolicyFromText } from '../../../src/config/policy-loader.js';
import type { SignatureFetchReport, UntrustedSignatureBlob } from '../../../src/domain/signature.js';
import type { SignatureSource } from '../../../src/pull/ports.js';
import { runSignaturePhase, signaturePhaseUnder } from '../../../src/pull/signature-phase.js';
import { ConfiguredTrust, TrustConfigurationHolder } from '../../../src/pull/trust-configuration.js';
import * as fx from '../../fixtures/signatures/fixtures.js';

const image = fx.resolvedFixtureImage();
const valid: UntrustedSignatureBlob = {
  location: { source: 'lookaside', index: 1, url: 'file:///sigs/signature-1' },
  format: 'simple-signing',
  bytes: fx.signatureFixture('valid'),
};
const lookaside: SignatureSource = {
  yields: 'simple-signing',
  fetch: async (): Promise<SignatureFetchReport> => ({ signatures: [valid], troubles: [], end: 'not-found', notices: [], retriedIndices: [] }),
};
const load = (requirements: unknown[]) => loadPolicyFromText(JSON.stringify({ default: requirements }), 'policy.json');
const signedBy = { type: 'signedBy', keyType: 'GPGKeys', keyData: Buffer.from(fx.keyFixture('trusted.gpg')).toString('base64') };

describe('requireSignatureVerification', () => {
  test('runSignaturePhase: insecureAcceptAnything alone is denied when required, allowed otherwise', async () => {
    const policy = await load([{ type: 'insecureAcceptAnything' }]);
    expect((await runSignaturePhase({ policy, image, sources: [lookaside] })).verdict.allowed).toBe(true);
    expect((await runSignaturePhase({ policy, image, sources: [lookaside], requireSignatureVerification: true })).verdict).toMatchObject({
      allowed: false,
      denial: 'Signature verification is required, but the policy accepts this image without verifying any signature',
    });
  });

  test('runSignaturePhase: a verified signedBy satisfies it, even beside insecureAcceptAnything', async () => {
    const policy = await load([{ type: 'insecureAcceptAnything' }, signedBy]);
    expect((await runSignaturePhase({ policy, image, sources: [lookaside], requireSignatureVerification: true })).verdict.allowed).toBe(true);
  });

  test('the trust configuration carries it to every pull (default off)', async () => {
    const policy = await load([{ type: 'insecureAcceptAnything' }]);
    const trust = (requireSignatureVerification?: boolean) =>
      new TrustConfigurationHolder(
        new ConfiguredTrust({
          policies: { policyForNamespace: async () => policy },
          signatureSources: [lookaside],
          ...(requireSignatureVerification !== undefined ? { requireSignatureVerification } : {}),
        }),
      );
    expect((await signaturePhaseUnder(trust())({ image })).verdict.allowed).toBe(true);
    expect((await signaturePhaseUnder(trust(true))({ image })).verdict.allowed).toBe(false);
  });
});
