/** Signature formats and simple-signing verification (CPU only). */
export { sniffSignatureFormat, formatByteGo, type SniffResult } from './sniff.js';
export { loadGpgKeys, type GpgKeySet } from './gpg-keys.js';
export { verifySimpleSigning, parseUntrustedPayload, SIGNATURE_TYPE, type SimpleSigningExpectations } from './simple-signing.js';
