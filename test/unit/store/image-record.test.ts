import { describe, expect, it } from 'vitest';
import type { Digest } from '../../../src/domain/digest.js';
import type { ImageRecord } from '../../../src/domain/image-record.js';
import { referencedBlobs, validateImageRecord } from '../../../src/store/image-record.js';

const digest = (n: number): Digest => `sha256:${n.toString(16).padStart(64, '0')}` as Digest;

const record: ImageRecord = {
  id: digest(1),
  repoTags: ['registry.example/app:v1'],
  repoDigests: [`registry.example/app@${digest(2)}`],
  manifestDigest: digest(2),
  manifestMediaType: 'application/vnd.oci.image.manifest.v1+json',
  topDigest: digest(2),
  topMediaType: 'application/vnd.oci.image.manifest.v1+json',
  configDigest: digest(1),
  layers: [{ digest: digest(3), size: 10, mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip' }],
  size: 100,
  pulledAt: '2026-01-01T00:00:00.000Z',
  signatureBlobs: [digest(4)],
};

describe('what a record keeps in the store', () => {
  it('is everything of a pulled image', () => {
    expect(referencedBlobs(record).sort()).toEqual([digest(1), digest(2), digest(3), digest(4)]);
  });

  it('is manifests, config and signatures when the runtime fetched the layers', () => {
    expect(referencedBlobs({ ...record, layersStored: false }).sort()).toEqual([digest(1), digest(2), digest(4)]);
  });

  it("is manifests and signatures for a verification (containerd's image verifier)", () => {
    expect(referencedBlobs({ ...record, layersStored: false, configStored: false }).sort()).toEqual([digest(2), digest(4)]);
  });

  it('refuses a record that would keep layers without their config, with every problem at once', () => {
    expect(() => validateImageRecord({ ...record, configStored: false })).toThrow(/configStored is false only where layersStored is false/);
    expect(() => validateImageRecord({ ...record, configStored: true as unknown as false, layersStored: true as unknown as false })).toThrow(
      /layersStored is false or absent.*configStored is false or absent/s,
    );
    expect(() => validateImageRecord({ ...record, layersStored: false, configStored: false })).not.toThrow();
  });
});
