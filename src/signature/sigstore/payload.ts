/**
 * The cosign payload (c/image `signature/internal/sigstore_payload.go`): the simple-signing shape
 * (src/signature/payload.ts) with type `cosign container image signature`, and `"optional": null`
 * accepted because cosign emits it.
 */
import type { PayloadFormat } from '../payload.js';
import { SIGSTORE_SIGNATURE_TYPE } from './constants.js';

export const SIGSTORE_PAYLOAD: PayloadFormat = Object.freeze({ type: SIGSTORE_SIGNATURE_TYPE, optionalMayBeNull: true });
