/**
 * fulcio and pki certificate trust (certificate-trust.ts, x509-chain.ts) against test CAs made here
 * with node:crypto. Every verification is at an explicit time: nothing depends on today's date.
 */
import { describe, expect, test } from 'vitest';
import { parseCertificate, parseCertificatesFromPem } from '../../../../src/signature/sigstore/certificate.js';
import {
  CertificateTrustError,
  fulcioIssuerInCertificate,
  loadFulcioTrustRoot,
  loadPkiTrustRoot,
  verifyFulcioCertificate,
  verifyPkiCertificate,
  type PkiTrustRoot,
} from '../../../../src/signature/sigstore/certificate-trust.js';
import {
  CODE_SIGNING,
  DAY,
  EKU_ANY,
  SERVER_AUTH,
  issueCertificate,
  newKeyPair,
  seq,
  testPki,
  tlv,
  toPem,
  utf8,
  type CertificateSpec,
} from '../../../fixtures/sigstore/test-ca.js';

/** The signing time every case is built around: 2030-06-01, far from any real date. */
const AT = Date.UTC(2030, 5, 1);
const pem = (s: string) => Buffer.from(s);
const pkiTrust = (rootsPem: string, identity: { subjectEmail?: string; subjectHostname?: string }, intermediatesPem?: string): PkiTrustRoot =>
  loadPkiTrustRoot(pem(rootsPem), intermediatesPem === undefined ? undefined : pem(intermediatesPem), identity);
const rejection = (f: () => unknown): string => {
  try {
    f();
  } catch (err) {
    expect(err).toBeInstanceOf(CertificateTrustError);
    return (err as Error).message;
  }
  throw new Error('expected a CertificateTrustError');
};

describe('pki', () => {
  const { root, intermediate, leaf, chainPem } = testPki(AT, { emails: ['builder@example.com'], dnsNames: ['build.example.com', '*.ci.example.com'] });
  const trust = pkiTrust(root.pem, { subjectEmail: 'builder@example.com' });

  test("a leaf that chains through the annotation's intermediates to the configured root, naming the email", () => {
    const cert = verifyPkiCertificate(trust, AT, leaf.pem, chainPem);
    expect(cert.spki).toEqual(new Uint8Array(leaf.publicKey.export({ format: 'der', type: 'spki' })));
  });

  test('configured intermediates stand in for a missing chain annotation', () => {
    expect(() => verifyPkiCertificate(pkiTrust(root.pem, { subjectEmail: 'builder@example.com' }, intermediate.pem), AT, leaf.pem, undefined)).not.toThrow();
  });

  test('without intermediates, or with a chain of one certificate (its last is taken for the root and dropped): unknown authority', () => {
    expect(rejection(() => verifyPkiCertificate(trust, AT, leaf.pem, undefined))).toBe(
      'veryfing leaf certificate failed: x509: certificate signed by unknown authority',
    );
    expect(rejection(() => verifyPkiCertificate(trust, AT, leaf.pem, intermediate.pem))).toBe(
      'veryfing leaf certificate failed: x509: certificate signed by unknown authority',
    );
  });

  test("another CA's roots: unknown authority, naming the candidate that failed", () => {
    const other = testPki(AT, {}, { root: 'pullguard test root', intermediate: 'other intermediate' });
    // Same root name, different key: the candidate is found by name and its signature fails.
    expect(rejection(() => verifyPkiCertificate(pkiTrust(other.root.pem, { subjectEmail: 'builder@example.com' }), AT, leaf.pem, chainPem))).toBe(
      'veryfing leaf certificate failed: x509: certificate signed by unknown authority (possibly because of "x509: ECDSA verification failure" while trying to verify candidate authority certificate "pullguard test root")',
    );
  });

  test('validity is checked at the given time, for the leaf and for the CAs', () => {
    expect(rejection(() => verifyPkiCertificate(trust, AT + 31 * DAY, leaf.pem, chainPem))).toBe(
      'veryfing leaf certificate failed: x509: certificate has expired or is not yet valid: current time 2030-07-02T00:00:00Z is after 2030-07-01T00:00:00Z',
    );
    expect(rejection(() => verifyPkiCertificate(trust, AT - 2 * DAY, leaf.pem, chainPem))).toMatch(
      /current time 2030-05-30T00:00:00Z is before 2030-05-31T00:00:00Z$/,
    );
    const young = testPki(AT, { notBefore: AT - 20 * DAY, emails: ['builder@example.com'] });
    // The CAs start 10 days before AT: at AT - 15 days the leaf is valid and its issuer is not.
    expect(
      rejection(() => verifyPkiCertificate(pkiTrust(young.root.pem, { subjectEmail: 'builder@example.com' }), AT - 15 * DAY, young.leaf.pem, young.chainPem)),
    ).toMatch(
      /^veryfing leaf certificate failed: x509: certificate has expired or is not yet valid: current time 2030-05-17T00:00:00Z is before 2030-05-22T00:00:00Z$/,
    );
  });

  test('subjectEmail must be one of the email SANs; subjectHostname must match a DNS SAN (leading wildcard label allowed)', () => {
    expect(rejection(() => verifyPkiCertificate(pkiTrust(root.pem, { subjectEmail: 'other@example.com' }), AT, leaf.pem, chainPem))).toBe(
      'Required email "other@example.com" not found (got ["builder@example.com"])',
    );
    for (const host of ['build.example.com', 'BUILD.example.com', 'a.ci.example.com']) {
      expect(() => verifyPkiCertificate(pkiTrust(root.pem, { subjectHostname: host }), AT, leaf.pem, chainPem)).not.toThrow();
    }
    expect(rejection(() => verifyPkiCertificate(pkiTrust(root.pem, { subjectHostname: 'a.b.ci.example.com' }), AT, leaf.pem, chainPem))).toBe(
      'Unexpected subject hostname: x509: certificate is valid for build.example.com, *.ci.example.com, not a.b.ci.example.com',
    );
    expect(
      rejection(() =>
        verifyPkiCertificate(pkiTrust(root.pem, { subjectEmail: 'builder@example.com', subjectHostname: 'evil.example.com' }), AT, leaf.pem, chainPem),
      ),
    ).toMatch(/^Unexpected subject hostname: /);
    const ip = testPki(AT, { ips: ['192.0.2.7', '2001:db8::7'] });
    expect(() => verifyPkiCertificate(pkiTrust(ip.root.pem, { subjectHostname: '2001:db8:0::7' }), AT, ip.leaf.pem, ip.chainPem)).not.toThrow();
    expect(rejection(() => verifyPkiCertificate(pkiTrust(ip.root.pem, { subjectHostname: '192.0.2.8' }), AT, ip.leaf.pem, ip.chainPem))).toBe(
      'Unexpected subject hostname: x509: certificate is valid for 192.0.2.7, 2001:db8::7, not 192.0.2.8',
    );
  });

  test('the chain must allow code signing: leaf or intermediate restricted to another usage fails; no EKU or anyExtendedKeyUsage passes', () => {
    const email = { subjectEmail: 'a@example.com' };
    const serverLeaf = testPki(AT, { emails: ['a@example.com'], extKeyUsage: [SERVER_AUTH] });
    expect(rejection(() => verifyPkiCertificate(pkiTrust(serverLeaf.root.pem, email), AT, serverLeaf.leaf.pem, serverLeaf.chainPem))).toBe(
      'veryfing leaf certificate failed: x509: certificate specifies an incompatible key usage',
    );
    for (const extKeyUsage of [undefined, [EKU_ANY]]) {
      const { root: r, intermediate: i } = testPki(AT);
      const l = issueCertificate({
        subject: 'x',
        issuer: i,
        emails: ['a@example.com'],
        notBefore: AT - DAY,
        notAfter: AT + DAY,
        ...(extKeyUsage ? { extKeyUsage } : {}),
      });
      expect(() => verifyPkiCertificate(pkiTrust(r.pem, email), AT, l.pem, i.pem + r.pem)).not.toThrow();
    }
    const r = issueCertificate({ subject: 'root', ca: {}, notBefore: AT - DAY, notAfter: AT + DAY });
    const i = issueCertificate({ subject: 'server-only CA', issuer: r, ca: {}, extKeyUsage: [SERVER_AUTH], notBefore: AT - DAY, notAfter: AT + DAY });
    const l = issueCertificate({ subject: 'x', issuer: i, emails: ['a@example.com'], extKeyUsage: [CODE_SIGNING], notBefore: AT - DAY, notAfter: AT + DAY });
    expect(rejection(() => verifyPkiCertificate(pkiTrust(r.pem, email), AT, l.pem, i.pem + r.pem))).toMatch(/incompatible key usage$/);
  });

  test('CA constraints: an intermediate that is no CA, a path length exceeded, a CA without keyCertSign', () => {
    const email = { subjectEmail: 'a@example.com' };
    const window = { notBefore: AT - DAY, notAfter: AT + DAY };
    const r = issueCertificate({ subject: 'root', ca: {}, ...window });
    const leafOf = (issuer: ReturnType<typeof issueCertificate>) => issueCertificate({ subject: 'x', issuer, emails: ['a@example.com'], ...window });
    const notCa = issueCertificate({ subject: 'not a CA', issuer: r, ca: false, ...window });
    expect(rejection(() => verifyPkiCertificate(pkiTrust(r.pem, email), AT, leafOf(notCa).pem, notCa.pem + r.pem))).toMatch(
      /unknown authority \(possibly because of "x509: invalid signature: parent certificate cannot sign this kind of certificate" while trying to verify candidate authority certificate "not a CA"\)$/,
    );
    const limited = issueCertificate({ subject: 'root pathlen 0', ca: { pathLen: 0 }, ...window });
    const mid = issueCertificate({ subject: 'mid', issuer: limited, ca: {}, ...window });
    expect(rejection(() => verifyPkiCertificate(pkiTrust(limited.pem, email), AT, leafOf(mid).pem, mid.pem + limited.pem))).toBe(
      'veryfing leaf certificate failed: x509: too many intermediates for path length constraint',
    );
    const noSign = issueCertificate({ subject: 'crl only', issuer: r, ca: {}, keyUsage: ['cRLSign'], ...window });
    expect(rejection(() => verifyPkiCertificate(pkiTrust(r.pem, email), AT, leafOf(noSign).pem, noSign.pem + r.pem))).toMatch(
      /parent certificate cannot sign this kind of certificate/,
    );
  });

  test('refused: unhandled critical extensions, a critical SAN without names, SHA-1 signatures, name constraints', () => {
    const email = { subjectEmail: 'a@example.com' };
    const window = { notBefore: AT - DAY, notAfter: AT + DAY };
    const r = issueCertificate({ subject: 'root', ca: {}, ...window });
    const leaf1 = (spec: Partial<CertificateSpec>) => issueCertificate({ subject: 'x', issuer: r, emails: ['a@example.com'], ...window, ...spec });
    const trustR = pkiTrust(r.pem, email);
    expect(
      rejection(() =>
        verifyPkiCertificate(trustR, AT, leaf1({ extraExtensions: [{ oid: '1.2.3.4', critical: true, value: Buffer.from([5, 0]) }] }).pem, undefined),
      ),
    ).toBe('veryfing leaf certificate failed: x509: unhandled critical extension');
    expect(() =>
      verifyPkiCertificate(trustR, AT, leaf1({ extraExtensions: [{ oid: '1.2.3.4', critical: false, value: Buffer.from([5, 0]) }] }).pem, undefined),
    ).not.toThrow();
    expect(rejection(() => verifyPkiCertificate(trustR, AT, leaf1({ emails: [], otherNameSan: true, sanCritical: true }).pem, undefined))).toMatch(
      /unhandled critical extension$/,
    );
    expect(rejection(() => verifyPkiCertificate(trustR, AT, leaf1({ sha1: true }).pem, undefined))).toMatch(/insecure algorithm ECDSA-SHA1/);
    const constrained = issueCertificate({ subject: 'constrained root', ca: {}, nameConstraints: true, ...window });
    const l = issueCertificate({ subject: 'x', issuer: constrained, emails: ['a@example.com'], ...window });
    expect(rejection(() => verifyPkiCertificate(pkiTrust(constrained.pem, email), AT, l.pem, undefined))).toMatch(/name constraints are not supported/);
  });

  test('RSA and Ed25519 CAs', () => {
    for (const type of ['rsa', 'ed25519'] as const) {
      const window = { notBefore: AT - DAY, notAfter: AT + DAY };
      const r = issueCertificate({ subject: `${type} root`, key: newKeyPair(type).privateKey, ca: {}, ...window });
      const l = issueCertificate({ subject: 'x', issuer: r, emails: ['a@example.com'], ...window });
      expect(() => verifyPkiCertificate(pkiTrust(r.pem, { subjectEmail: 'a@example.com' }), AT, l.pem, undefined)).not.toThrow();
    }
  });

  test('a v1 root (no extensions) can issue; the leaf itself may be a trusted root', () => {
    const window = { notBefore: AT - DAY, notAfter: AT + DAY };
    const v1 = issueCertificate({ subject: 'v1 root', v1: true, ...window });
    const l = issueCertificate({ subject: 'x', issuer: v1, emails: ['a@example.com'], ...window });
    expect(() => verifyPkiCertificate(pkiTrust(v1.pem, { subjectEmail: 'a@example.com' }), AT, l.pem, undefined)).not.toThrow();
    expect(() => verifyPkiCertificate(pkiTrust(l.pem, { subjectEmail: 'a@example.com' }), AT, l.pem, undefined)).not.toThrow();
  });

  test('malformed certificate annotations', () => {
    expect(rejection(() => verifyPkiCertificate(trust, AT, 'not pem', chainPem))).toBe('parsing leaf certificate: error during PEM decoding');
    expect(rejection(() => verifyPkiCertificate(trust, AT, '', chainPem))).toBe('no certificate found in signature certificate data');
    expect(rejection(() => verifyPkiCertificate(trust, AT, leaf.pem + leaf.pem, chainPem))).toBe(
      'unexpected multiple certificates present in signature certificate data',
    );
    expect(rejection(() => verifyPkiCertificate(trust, AT, toPem(Buffer.from('3003020101', 'hex')), chainPem))).toMatch(
      /^parsing leaf certificate: x509: malformed certificate/,
    );
    expect(rejection(() => verifyPkiCertificate(trust, AT, leaf.pem, `${chainPem}junk`))).toBe('loading certificate chain: error during PEM decoding');
  });

  test('configuration: roots must hold a certificate; intermediates must all parse; an identity is required', () => {
    expect(() => loadPkiTrustRoot(pem('nothing here'), undefined, { subjectEmail: 'a@b' })).toThrow('error loading PKI CA Roots certificates');
    expect(() => loadPkiTrustRoot(pem(root.pem), pem('junk'), { subjectEmail: 'a@b' })).toThrow(
      'loading trusted intermediate certificates: error during PEM decoding',
    );
    expect(() => loadPkiTrustRoot(pem(root.pem), undefined, {})).toThrow('Internal inconsistency: PKI use set up without subject email or subject hostname');
    // Go's AppendCertsFromPEM skips blocks that are not certificates.
    expect(
      loadPkiTrustRoot(pem(`-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n${root.pem}`), undefined, { subjectEmail: 'a@b' }).caRootsCertificates,
    ).toHaveLength(1);
  });
});

describe('fulcio', () => {
  const ISSUER = 'https://oidc.example.com';
  const fulcioLeaf = (spec: Partial<CertificateSpec> = {}) =>
    testPki(AT, {
      emails: ['dev@example.com'],
      sanCritical: true,
      fulcioIssuerV1: ISSUER,
      fulcioIssuerV2: ISSUER,
      notBefore: AT - 60_000,
      notAfter: AT + 9 * 60_000,
      ...spec,
    });
  const ca = fulcioLeaf();
  const trust = loadFulcioTrustRoot(pem(ca.root.pem), ISSUER, 'dev@example.com');

  test('a short-lived certificate, valid at the integrated time, with the issuer and email: accepted', () => {
    expect(verifyFulcioCertificate(trust, AT, ca.leaf.pem, ca.chainPem).fingerprint).toMatch(/^[0-9A-F]{64}$/);
  });

  test('the integrated time decides, not the verification date: 11 minutes later the certificate has expired', () => {
    expect(rejection(() => verifyFulcioCertificate(trust, AT + 11 * 60_000, ca.leaf.pem, ca.chainPem))).toMatch(
      /certificate has expired or is not yet valid: current time 2030-06-01T00:11:00Z is after 2030-06-01T00:09:00Z$/,
    );
  });

  test('the OIDC issuer: v1 or v2 alone, both agreeing; disagreeing, missing or another issuer is refused', () => {
    for (const spec of [{ fulcioIssuerV2: undefined }, { fulcioIssuerV1: undefined }]) {
      const c = fulcioLeaf(spec);
      expect(() => verifyFulcioCertificate(loadFulcioTrustRoot(pem(c.root.pem), ISSUER, 'dev@example.com'), AT, c.leaf.pem, c.chainPem)).not.toThrow();
    }
    const check = (spec: Partial<CertificateSpec>) => {
      const c = fulcioLeaf(spec);
      return rejection(() => verifyFulcioCertificate(loadFulcioTrustRoot(pem(c.root.pem), ISSUER, 'dev@example.com'), AT, c.leaf.pem, c.chainPem));
    };
    expect(check({ fulcioIssuerV2: 'https://evil.example' })).toBe(
      'inconsistent OIDC issuer extension values: v1 "https://oidc.example.com", v2 "https://evil.example"',
    );
    expect(check({ fulcioIssuerV1: undefined, fulcioIssuerV2: undefined })).toBe('Fulcio certificate is missing the issuer extension');
    expect(check({ fulcioIssuerV1: 'https://accounts.example', fulcioIssuerV2: 'https://accounts.example' })).toBe(
      'Unexpected Fulcio OIDC issuer "https://accounts.example"',
    );
    expect(
      check({
        fulcioIssuerV2: undefined,
        extraExtensions: [{ oid: '1.3.6.1.4.1.57264.1.8', critical: false, value: Buffer.concat([utf8(ISSUER), Buffer.from([0])]) }],
      }),
    ).toBe('invalid ASN.1 in OIDC issuer v2 extension, trailing data');
  });

  test('subjectEmail must be an email SAN; a critical SAN naming only an otherName is tolerated for Fulcio', () => {
    expect(rejection(() => verifyFulcioCertificate(loadFulcioTrustRoot(pem(ca.root.pem), ISSUER, 'else@example.com'), AT, ca.leaf.pem, ca.chainPem))).toBe(
      'Required email "else@example.com" not found (got ["dev@example.com"])',
    );
    const workflow = fulcioLeaf({ emails: [], otherNameSan: true });
    expect(
      rejection(() =>
        verifyFulcioCertificate(loadFulcioTrustRoot(pem(workflow.root.pem), ISSUER, 'dev@example.com'), AT, workflow.leaf.pem, workflow.chainPem),
      ),
    ).toBe('Required email "dev@example.com" not found (got [])');
  });

  test('a certificate from another Fulcio CA', () => {
    const other = fulcioLeaf();
    expect(rejection(() => verifyFulcioCertificate(trust, AT, other.leaf.pem, other.chainPem))).toMatch(
      /^veryfing leaf certificate failed: x509: certificate signed by unknown authority/,
    );
  });

  test('configuration errors', () => {
    expect(() => loadFulcioTrustRoot(pem('junk'), ISSUER, 'a@b')).toThrow('error loading Fulcio CA certificates');
  });

  test('fulcioIssuerInCertificate reads a certificate the parser accepted', () => {
    expect(fulcioIssuerInCertificate(parseCertificate(ca.leaf.der))).toBe(ISSUER);
  });
});

describe('certificate parsing', () => {
  test('duplicate extensions are refused as Go does', () => {
    const dup = issueCertificate({
      subject: 'x',
      notBefore: AT,
      notAfter: AT + DAY,
      extraExtensions: [
        { oid: '1.2.3.4', critical: false, value: seq() },
        { oid: '1.2.3.4', critical: false, value: seq() },
      ],
    });
    expect(() => parseCertificate(dup.der)).toThrow('x509: certificate contains duplicate extensions');
  });
  test('times past 2049 use GeneralizedTime; PEM bundles keep their order', () => {
    const late = issueCertificate({ subject: 'late', notBefore: Date.UTC(2049, 11, 31), notAfter: Date.UTC(2051, 0, 1, 12, 30, 5) });
    expect(parseCertificate(late.der)).toMatchObject({ notBefore: Date.UTC(2049, 11, 31), notAfter: Date.UTC(2051, 0, 1, 12, 30, 5), displayName: 'late' });
    const early = issueCertificate({ subject: 'early', notBefore: AT, notAfter: AT + DAY });
    expect(parseCertificatesFromPem(`\n${late.pem}\n\n${early.pem}`).map((c) => c.displayName)).toEqual(['late', 'early']);
  });
  test('a SAN that is not ASCII is malformed', () => {
    const bad = issueCertificate({
      subject: 'x',
      notBefore: AT,
      notAfter: AT + DAY,
      extraExtensions: [{ oid: '2.5.29.17', critical: false, value: seq(tlv(0x81, Buffer.from('é@example.com'))) }],
    });
    expect(() => parseCertificate(bad.der)).toThrow('x509: SAN rfc822Name is malformed');
  });
});
