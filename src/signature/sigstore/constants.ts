/**
 * Sigstore (cosign) attachment constants, as in c/image `internal/signature/sigstore.go`, and the
 * cosign payload type (`signature/internal/sigstore_payload.go`).
 */

/** Layer media type of a cosign signature; other layers of an attachment are attestations etc. */
export const SIGSTORE_SIGNATURE_MIME_TYPE = 'application/vnd.dev.cosign.simplesigning.v1+json';
/** Base64 signature over the raw layer (payload) bytes. */
export const SIGSTORE_SIGNATURE_ANNOTATION = 'dev.cosignproject.cosign/signature';
/** Rekor SET bundle (JSON). */
export const SIGSTORE_SET_ANNOTATION = 'dev.sigstore.cosign/bundle';
export const SIGSTORE_CERTIFICATE_ANNOTATION = 'dev.sigstore.cosign/certificate';
export const SIGSTORE_INTERMEDIATE_CHAIN_ANNOTATION = 'dev.sigstore.cosign/chain';
/** `critical.type` of a cosign payload. */
export const SIGSTORE_SIGNATURE_TYPE = 'cosign container image signature';
/** The only manifest type c/image accepts for an attachment. */
export const SIGSTORE_ATTACHMENT_MANIFEST_TYPE = 'application/vnd.oci.image.manifest.v1+json';
/** Per-layer read cap (c/image `iolimits.MaxSignatureBodySize`). */
export const MAX_SIGSTORE_LAYER_BYTES = 4 * 1024 * 1024;

/** The attachment tag of a manifest digest: `sha256:abc…` → `sha256-abc….sig`. */
export function sigstoreAttachmentTag(manifestDigest: string): string {
  return `${manifestDigest.replace(':', '-')}.sig`;
}
