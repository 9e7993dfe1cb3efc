/**
 * sigstoreSigned `fulcio` and `pki` trust, after containers/image `signature/fulcio_cert.go` and
 * `signature/pki_cert.go` (container-libs image/v5.35+): the signature's certificate
 * (`dev.sigstore.cosign/certificate`) must chain to the configured roots — through the intermediates
 * of the `dev.sigstore.cosign/chain` annotation (all but its last certificate, which is the root
 * cosign was given) and, for pki, the configured intermediates — allow code signing, and name the
 * required identity. Its public key then verifies the payload (verify.ts).
 *
 * - fulcio: the chain is verified at the Rekor SET's integrated time (the caller verified the SET);
 *   the OIDC issuer extension (v1 1.3.6.1.4.1.57264.1.1 raw, or v2 …1.8 UTF8String; both must agree)
 *   must equal `oidcIssuer`; `subjectEmail` must be one of the rfc822Name SANs. A critical SAN
 *   without names Go knows (GitHub workflow identities) is tolerated, as upstream.
 * - pki: the chain is verified at the verification time the caller passes (upstream: now);
 *   `subjectEmail` must be one of the rfc822Name SANs, `subjectHostname` must match a DNS (or IP) SAN.
 *
 * Pure functions; every rejection is a CertificateTrustError with upstream's text.
 */
import { CertificateError, OID, certificatePoolFromPem, parseCertificatesFromPem, type Certificate } from './certificate.js';
import { DerError, decodeString, readOnly } from './der.js';
import { ChainError, goQuote, goQuoteList, verifyCertificateChain, verifyHostname } from './x509-chain.js';

/** A signature whose certificate is not trusted (upstream's InvalidSignatureError). */
export class CertificateTrustError extends Error {}

export interface FulcioTrustRoot {
  readonly caCertificates: readonly Certificate[];
  readonly oidcIssuer: string;
  readonly subjectEmail: string;
}

export interface PkiTrustRoot {
  readonly caRootsCertificates: readonly Certificate[];
  /** Present when caIntermediatesPath/Data is configured. */
  readonly caIntermediateCertificates?: readonly Certificate[];
  readonly subjectEmail?: string;
  readonly subjectHostname?: string;
}

/** Configuration errors (policy load time): plain Errors with upstream's texts. */
export function loadFulcioTrustRoot(caPem: Uint8Array, oidcIssuer: string, subjectEmail: string): FulcioTrustRoot {
  const caCertificates = certificatePoolFromPem(caPem);
  if (caCertificates.length === 0) throw new Error('error loading Fulcio CA certificates');
  if (oidcIssuer === '') throw new Error('Internal inconsistency: Fulcio use set up without OIDC issuer');
  if (subjectEmail === '') throw new Error('Internal inconsistency: Fulcio use set up without subject email');
  return Object.freeze({ caCertificates: Object.freeze(caCertificates), oidcIssuer, subjectEmail });
}

export function loadPkiTrustRoot(
  rootsPem: Uint8Array,
  intermediatesPem: Uint8Array | undefined,
  identity: { readonly subjectEmail?: string; readonly subjectHostname?: string },
): PkiTrustRoot {
  const caRootsCertificates = certificatePoolFromPem(rootsPem);
  if (caRootsCertificates.length === 0) throw new Error('error loading PKI CA Roots certificates');
  let caIntermediateCertificates: Certificate[] | undefined;
  if (intermediatesPem !== undefined) {
    try {
      caIntermediateCertificates = parseCertificatesFromPem(intermediatesPem);
    } catch (err) {
      throw new Error(`loading trusted intermediate certificates: ${(err as Error).message}`);
    }
  }
  const subjectEmail = identity.subjectEmail ?? '';
  const subjectHostname = identity.subjectHostname ?? '';
  if (subjectEmail === '' && subjectHostname === '') throw new Error('Internal inconsistency: PKI use set up without subject email or subject hostname');
  return Object.freeze({
    caRootsCertificates: Object.freeze(caRootsCertificates),
    ...(caIntermediateCertificates !== undefined ? { caIntermediateCertificates: Object.freeze(caIntermediateCertificates) } : {}),
    ...(subjectEmail !== '' ? { subjectEmail } : {}),
    ...(subjectHostname !== '' ? { subjectHostname } : {}),
  });
}

/** The certificates of the chain annotation that may serve as intermediates: all but the last. */
function untrustedIntermediates(chainPem: string | undefined): Certificate[] | undefined {
  if (chainPem === undefined || chainPem.length === 0) return undefined;
  let chain: Certificate[];
  try {
    chain = parseCertificatesFromPem(chainPem);
  } catch (err) {
    throw new CertificateTrustError(`loading certificate chain: ${(err as Error).message}`);
  }
  return chain.slice(0, -1);
}

/** upstream parseLeafCertFromPEM. */
export function parseLeafCertificate(certPem: string): Certificate {
  let certs: Certificate[];
  try {
    certs = parseCertificatesFromPem(certPem);
  } catch (err) {
    throw new CertificateTrustError(`parsing leaf certificate: ${(err as Error).message}`);
  }
  if (certs.length === 0) throw new CertificateTrustError('no certificate found in signature certificate data');
  if (certs.length > 1) throw new CertificateTrustError('unexpected multiple certificates present in signature certificate data');
  return certs[0] as Certificate;
}

function verifyChain(
  leaf: Certificate,
  roots: readonly Certificate[],
  intermediates: readonly Certificate[],
  time: number,
  ignoreLeafCriticalSan: boolean,
): void {
  try {
    verifyCertificateChain(leaf, { roots, intermediates, time, extKeyUsage: OID.ekuCodeSigning, ignoreLeafCriticalSan });
  } catch (err) {
    if (!(err instanceof ChainError)) throw err;
    // Upstream's spelling, kept: operators grep for it.
    throw new CertificateTrustError(`veryfing leaf certificate failed: ${err.message}`);
  }
}

function requireEmail(leaf: Certificate, email: string): void {
  const emails = leaf.subjectAltNames?.emails ?? [];
  if (!emails.includes(email)) throw new CertificateTrustError(`Required email ${goQuote(email)} not found (got ${goQuoteList(emails)})`);
}

/** The OIDC issuer Fulcio recorded in the certificate (fulcioIssuerInCertificate). */
export function fulcioIssuerInCertificate(cert: Certificate): string {
  const v1 = cert.extensions.find((e) => e.oid === OID.fulcioIssuerV1);
  const v2 = cert.extensions.find((e) => e.oid === OID.fulcioIssuerV2);
  let issuer1: string | undefined;
  let issuer2: string | undefined;
  if (v1 !== undefined) issuer1 = Buffer.from(v1.value).toString('utf8');
  if (v2 !== undefined) {
    try {
      issuer2 = decodeString(readOnly(v2.value, 'OIDC issuer v2 extension'));
    } catch (err) {
      if (err instanceof DerError && err.message.startsWith('trailing data'))
        throw new CertificateTrustError('invalid ASN.1 in OIDC issuer v2 extension, trailing data');
      throw new CertificateTrustError(`invalid ASN.1 in OIDC issuer v2 extension: ${(err as Error).message}`);
    }
  }
  if (issuer1 !== undefined && issuer2 !== undefined) {
    if (issuer1 !== issuer2) throw new CertificateTrustError(`inconsistent OIDC issuer extension values: v1 ${goQuote(issuer1)}, v2 ${goQuote(issuer2)}`);
    return issuer1;
  }
  const issuer = issuer1 ?? issuer2;
  if (issuer === undefined) throw new CertificateTrustError('Fulcio certificate is missing the issuer extension');
  return issuer;
}

/**
 * verifyFulcioCertificateAtTime: `time` (ms) is the Rekor SET's integrated time. Returns the
 * certificate whose key must verify the payload; throws CertificateTrustError.
 */
export function verifyFulcioCertificate(trust: FulcioTrustRoot, time: number, certPem: string, chainPem: string | undefined): Certificate {
  const intermediates = untrustedIntermediates(chainPem) ?? [];
  const leaf = parseLeafCertificate(certPem);
  verifyChain(leaf, trust.caCertificates, intermediates, time, true);
  const issuer = fulcioIssuerInCertificate(leaf);
  if (issuer !== trust.oidcIssuer) throw new CertificateTrustError(`Unexpected Fulcio OIDC issuer ${goQuote(issuer)}`);
  requireEmail(leaf, trust.subjectEmail);
  return leaf;
}

/** verifyPKI, at `time` (ms; upstream uses the current time). Throws CertificateTrustError. */
export function verifyPkiCertificate(trust: PkiTrustRoot, time: number, certPem: string, chainPem: string | undefined): Certificate {
  const intermediates = [...(trust.caIntermediateCertificates ?? []), ...(untrustedIntermediates(chainPem) ?? [])];
  const leaf = parseLeafCertificate(certPem);
  verifyChain(leaf, trust.caRootsCertificates, intermediates, time, false);
  if (trust.subjectEmail !== undefined) requireEmail(leaf, trust.subjectEmail);
  if (trust.subjectHostname !== undefined) {
    try {
      verifyHostname(leaf, trust.subjectHostname);
    } catch (err) {
      if (!(err instanceof ChainError)) throw err;
      throw new CertificateTrustError(`Unexpected subject hostname: ${err.message}`);
    }
  }
  return leaf;
}

export { CertificateError };
