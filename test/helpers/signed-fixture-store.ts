/**
 * Puts the signed fixture image (test/fixtures/signatures: `registry.example/app:v1`, signature-1 by
 * the trusted key) into a store the way `pullguard serve` does — PullService over the real signature
 * phase and policy selection — without a registry or a lookaside server:
 *
 *   await pullSignedFixture(join(stateDir, 'store'), { globalPath: policy });
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { PolicySelector, type PolicySelectorOptions } from '../../src/config/policy-loader.js';
import type { Descriptor } from '../../src/domain/image.js';
import { parseReference, type ImageReference } from '../../src/domain/reference.js';
import type { SignatureFetchReport } from '../../src/domain/signature.js';
import type { BlobWriter, ImageSource, ResolvedImage, SignatureSource } from '../../src/pull/ports.js';
import { PullService } from '../../src/pull/pull-service.js';
import { signaturePhaseUnder } from '../../src/pull/signature-phase.js';
import { ConfiguredTrust, TrustConfigurationHolder } from '../../src/pull/trust-configuration.js';
import type { VerificationRecordV1 } from '../../src/pull/verification-record.js';
import { openStore } from '../../src/store/open-store.js';
import { MANIFEST_DIGEST, SIGNATURE_FIXTURES_DIR, SIGNED_IDENTITY, manifestFixture, signatureFixture } from '../fixtures/signatures/fixtures.js';

export const FIXTURE_IMAGE = SIGNED_IDENTITY;

const blob = (digest: string): Uint8Array => new Uint8Array(readFileSync(join(SIGNATURE_FIXTURES_DIR, 'image/blobs/sha256', digest.replace('sha256:', ''))));

/** The fixture image as a registry would serve it. */
class FixtureSource implements ImageSource {
  async resolve(reference: ImageReference): Promise<ResolvedImage> {
    const manifestBytes = manifestFixture();
    const manifest = JSON.parse(Buffer.from(manifestBytes).toString('utf8')) as { mediaType: string; config: Descriptor; layers: Descriptor[] };
    return {
      reference,
      physicalReference: reference,
      topDigest: MANIFEST_DIGEST,
      topMediaType: manifest.mediaType,
      manifestDigest: MANIFEST_DIGEST,
      manifestMediaType: manifest.mediaType,
      manifestBytes,
      config: manifest.config,
      layers: manifest.layers,
    };
  }

  async fetchBlob(_image: ResolvedImage, descriptor: Descriptor, writer: BlobWriter): Promise<void> {
    await writer.write(blob(descriptor.digest));
  }
}

/** signature-1 of the lookaside: the fixture signature by the trusted key. */
const lookaside: SignatureSource = {
  yields: 'simple-signing',
  fetch: async (): Promise<SignatureFetchReport> => ({
    signatures: [
      {
        location: { source: 'lookaside', index: 1, url: 'http://lookaside.invalid/app@sha256=x/signature-1' },
        format: 'simple-signing',
        bytes: signatureFixture('valid'),
      },
    ],
    troubles: [],
    end: 'not-found',
    notices: [],
    retriedIndices: [],
  }),
};

/** Pulls the fixture into the store at `storeDir` under `selection`; returns the verification record. */
export async function pullSignedFixture(storeDir: string, selection: PolicySelectorOptions, namespace?: string): Promise<VerificationRecordV1> {
  const trust = new ConfiguredTrust({
    policies: new PolicySelector(selection),
    ...(selection.namespaceDir !== undefined ? { namespaceDir: selection.namespaceDir } : {}),
    signatureSources: [lookaside],
  });
  const store = await openStore(storeDir);
  try {
    const pulls = new PullService({
      source: new FixtureSource(),
      signaturePhase: signaturePhaseUnder(new TrustConfigurationHolder(trust)),
      content: store.blobs,
      images: store.images,
      leases: store.blobs,
      clock: () => new Date('2026-01-01T00:00:00Z'),
      version: 'test',
    });
    const result = await pulls.pull({ image: FIXTURE_IMAGE, ...(namespace !== undefined ? { namespace } : {}) });
    return (result.record.verification as Record<string, VerificationRecordV1>)[parseReference(FIXTURE_IMAGE).name]!;
  } finally {
    await store.close();
  }
}
