/** Images and artifacts: which is which, and the id CRI reports for each. */
import { describe, expect, it } from 'vitest';
import type { Digest } from '../../../src/domain/digest.js';
import { imageIdOf, isArtifact, MEDIA_TYPES } from '../../../src/domain/image.js';

const CONFIG = `sha256:${'c'.repeat(64)}` as Digest;
const MANIFEST = `sha256:${'m'.replace('m', 'a').repeat(64)}` as Digest;

describe('isArtifact / imageIdOf', () => {
  it('an OCI or Docker image config makes an image, named by its config digest', () => {
    for (const mediaType of [MEDIA_TYPES.ociConfig, MEDIA_TYPES.dockerConfig]) {
      expect(isArtifact({ mediaType })).toBe(false);
      expect(imageIdOf({ config: { mediaType, digest: CONFIG }, manifestDigest: MANIFEST })).toBe(CONFIG);
    }
  });

  it('the OCI empty config or a config of its own makes an artifact, named by its manifest digest', () => {
    for (const mediaType of ['application/vnd.oci.empty.v1+json', 'application/vnd.example.settings.v1+yaml', 'application/vnd.cncf.helm.config.v1+json']) {
      expect(isArtifact({ mediaType })).toBe(true);
      expect(imageIdOf({ config: { mediaType, digest: CONFIG }, manifestDigest: MANIFEST })).toBe(MANIFEST);
    }
  });
});
