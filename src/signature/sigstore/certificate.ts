/**
 * X.509 certificates for sigstoreSigned `fulcio` and `pki` trust. node:crypto's X509Certificate
 * parses the certificate (OpenSSL) and checks signatures; the DER reader (der.ts) adds what Go's
 * crypto/x509 — which containers/image relies on — looks at and node does not expose: every
 * extension with its criticality (Fulcio's OIDC issuer, unhandled critical extensions), exact
 * validity times, the raw subject and issuer names chains are built on, basic constraints with the
 * path length, the key usage bits, the extended key usages and the SAN lists.
 *
 * Parsing is strict where Go's is (duplicate extensions, malformed SANs): a certificate Go refuses to
 * parse is refused here too.
 */
import { X509Certificate, createHash, type KeyObject } from 'node:crypto';
import { isIP } from 'node:net';
import { DerError, TAG, children, decodeBoolean, decodeOid, decodeSmallInteger, decodeTime, expectTag, readOnly, type Tlv } from './der.js';

export class CertificateError extends Error {}

export const OID = Object.freeze({
  subjectKeyId: '2.5.29.14',
  keyUsage: '2.5.29.15',
  subjectAltName: '2.5.29.17',
  basicConstraints: '2.5.29.19',
  nameConstraints: '2.5.29.30',
  crlDistributionPoints: '2.5.29.31',
  certificatePolicies: '2.5.29.32',
  policyMappings: '2.5.29.33',
  authorityKeyId: '2.5.29.35',
  policyConstraints: '2.5.29.36',
  extKeyUsage: '2.5.29.37',
  inhibitAnyPolicy: '2.5.29.54',
  ekuAny: '2.5.29.37.0',
  ekuCodeSigning: '1.3.6.1.5.5.7.3.3',
  /** Fulcio's OIDC issuer, v1: the raw extension value is the issuer URL (deprecated, still accepted). */
  fulcioIssuerV1: '1.3.6.1.4.1.57264.1.1',
  /** Fulcio's OIDC issuer, v2: a DER UTF8String. */
  fulcioIssuerV2: '1.3.6.1.4.1.57264.1.8',
});

/** Critical extensions Go's crypto/x509 understands (anything else critical makes Verify fail). */
const HANDLED_CRITICAL: ReadonlySet<string> = new Set([
  OID.subjectKeyId,
  OID.keyUsage,
  OID.subjectAltName,
  OID.basicConstraints,
  OID.nameConstraints,
  OID.crlDistributionPoints,
  OID.certificatePolicies,
  OID.policyMappings,
  OID.authorityKeyId,
  OID.policyConstraints,
  OID.extKeyUsage,
  OID.inhibitAnyPolicy,
]);

/** Signature algorithms Go refuses to verify certificates with (MD2/MD5/SHA-1 based). */
const INSECURE_SIGNATURE_ALGORITHMS: ReadonlyMap<string, string> = new Map([
  ['1.2.840.113549.1.1.2', 'MD2-RSA'],
  ['1.2.840.113549.1.1.4', 'MD5-RSA'],
  ['1.2.840.113549.1.1.5', 'SHA1-RSA'],
  ['1.3.14.3.2.29', 'SHA1-RSA'],
  ['1.2.840.10040.4.3', 'DSA-SHA1'],
  ['1.2.840.10045.4.1', 'ECDSA-SHA1'],
]);

export interface CertificateExtension {
  readonly oid: string;
  readonly critical: boolean;
  readonly value: Uint8Array;
}

export interface SubjectAltNames {
  readonly critical: boolean;
  readonly emails: readonly string[];
  readonly dnsNames: readonly string[];
  /** Textual IP addresses (dotted IPv4, or IPv6 as node formats it). */
  readonly ipAddresses: readonly string[];
  readonly uris: readonly string[];
}

export interface Certificate {
  readonly der: Uint8Array;
  readonly x509: X509Certificate;
  readonly publicKey: KeyObject;
  /** DER SubjectPublicKeyInfo. */
  readonly spki: Uint8Array;
  /** Uppercase hex SHA-256 of the SPKI (as sigstore keys are named). */
  readonly fingerprint: string;
  /** 1, 2 or 3. */
  readonly version: number;
  readonly rawSubject: Uint8Array;
  readonly rawIssuer: Uint8Array;
  /** The subject's commonName (or first organization), for messages; may be ''. */
  readonly displayName: string;
  readonly notBefore: number;
  readonly notAfter: number;
  /** The certificate's own signature algorithm OID. */
  readonly signatureAlgorithm: string;
  readonly extensions: readonly CertificateExtension[];
  readonly basicConstraints?: { readonly ca: boolean; readonly maxPathLen?: number };
  /** Key usage bits, Go's numbering: 1 << 5 is keyCertSign. 0 when absent. */
  readonly keyUsage: number;
  /** Extended key usage OIDs; empty when absent. */
  readonly extKeyUsage: readonly string[];
  readonly subjectAltNames?: SubjectAltNames;
  readonly subjectKeyId?: Uint8Array;
  readonly authorityKeyId?: Uint8Array;
  /** OIDs of critical extensions Go would not handle (SAN included when it names nothing Go knows). */
  readonly unhandledCritical: readonly string[];
}

export const KEY_USAGE_CERT_SIGN = 1 << 5;

function ia5(tlv: Tlv, what: string): string {
  for (const b of tlv.value) if (b > 0x7f) throw new CertificateError(`x509: SAN ${what} is malformed`);
  return Buffer.from(tlv.value).toString('latin1');
}

function formatIp(bytes: Uint8Array): string {
  if (bytes.length === 4) return [...bytes].join('.');
  if (bytes.length === 16) {
    const groups: string[] = [];
    for (let i = 0; i < 16; i += 2) groups.push((((bytes[i] as number) << 8) | (bytes[i + 1] as number)).toString(16));
    return canonicalIp(groups.join(':')) ?? groups.join(':');
  }
  throw new CertificateError(`x509: cannot parse IP address of length ${bytes.length}`);
}

/** The canonical text of an IP literal (IPv6 compressed, lowercase, no brackets), or undefined. */
export function canonicalIp(text: string): string | undefined {
  if (isIP(text) === 4) return text.split('.').map(Number).join('.');
  if (isIP(text) !== 6) return undefined;
  const host = new URL(`http://[${text}]/`).hostname;
  return host.slice(1, -1);
}

function parseSubjectAltNames(value: Uint8Array, critical: boolean): SubjectAltNames {
  const names = expectTag(readOnly(value, 'subjectAltName'), TAG.SEQUENCE, 'subjectAltName');
  const emails: string[] = [];
  const dnsNames: string[] = [];
  const ipAddresses: string[] = [];
  const uris: string[] = [];
  for (const name of children(names)) {
    switch (name.tag) {
      case 0x81:
        emails.push(ia5(name, 'rfc822Name'));
        break;
      case 0x82:
        dnsNames.push(ia5(name, 'dNSName'));
        break;
      case 0x86:
        uris.push(ia5(name, 'uniformResourceIdentifier'));
        break;
      case 0x87:
        ipAddresses.push(formatIp(name.value));
        break;
      default:
        // otherName, x400Address, directoryName, ediPartyName, registeredID: kept out, as Go does.
        break;
    }
  }
  return { critical, emails, dnsNames, ipAddresses, uris };
}

function parseBasicConstraints(value: Uint8Array): { ca: boolean; maxPathLen?: number } {
  const fields = children(expectTag(readOnly(value, 'basicConstraints'), TAG.SEQUENCE, 'basicConstraints'));
  let i = 0;
  let ca = false;
  if (fields[i]?.tag === TAG.BOOLEAN) ca = decodeBoolean(fields[i++] as Tlv);
  let maxPathLen: number | undefined;
  if (fields[i]?.tag === TAG.INTEGER) maxPathLen = decodeSmallInteger(fields[i++] as Tlv);
  if (i !== fields.length) throw new CertificateError('x509: invalid basic constraints');
  return maxPathLen === undefined ? { ca } : { ca, maxPathLen };
}

function parseKeyUsage(value: Uint8Array): number {
  const bits = expectTag(readOnly(value, 'keyUsage'), TAG.BIT_STRING, 'keyUsage').value;
  if (bits.length === 0) throw new CertificateError('x509: invalid key usage');
  let usage = 0;
  for (let i = 0; i < 9; i++) {
    const byte = bits[1 + (i >> 3)];
    if (byte !== undefined && byte & (0x80 >> (i & 7))) usage |= 1 << i;
  }
  return usage;
}

function parseExtKeyUsage(value: Uint8Array): string[] {
  return children(expectTag(readOnly(value, 'extKeyUsage'), TAG.SEQUENCE, 'extKeyUsage')).map((oid) => decodeOid(expectTag(oid, TAG.OID, 'extKeyUsage').value));
}

function parseAuthorityKeyId(value: Uint8Array): Uint8Array | undefined {
  const fields = children(expectTag(readOnly(value, 'authorityKeyIdentifier'), TAG.SEQUENCE, 'authorityKeyIdentifier'));
  return fields.find((f) => f.tag === 0x80)?.value;
}

/** CN, else the first O, of a Name (for messages, as Go's UnknownAuthorityError names a candidate). */
function displayNameOf(x509: X509Certificate): string {
  const lines = (x509.subject ?? '').split('\n');
  const cn = lines.find((l) => l.startsWith('CN='));
  if (cn !== undefined) return cn.slice(3);
  const o = lines.find((l) => l.startsWith('O='));
  return o !== undefined ? o.slice(2) : `serial:${BigInt(`0x${x509.serialNumber}`).toString()}`;
}

/** Parses one DER certificate; throws CertificateError. */
export function parseCertificate(der: Uint8Array): Certificate {
  let x509: X509Certificate;
  try {
    x509 = new X509Certificate(der);
  } catch (err) {
    throw new CertificateError(`x509: malformed certificate: ${(err as Error).message}`);
  }
  try {
    const cert = expectTag(readOnly(der, 'certificate'), TAG.SEQUENCE, 'certificate');
    const [tbs, sigAlg] = children(cert);
    const tbsFields = children(expectTag(tbs, TAG.SEQUENCE, 'tbsCertificate'));
    let i = 0;
    let version = 1;
    if (tbsFields[0]?.tag === 0xa0) {
      version = decodeSmallInteger(readOnly((tbsFields[0] as Tlv).value, 'version')) + 1;
      i++;
    }
    i++; // serialNumber
    i++; // signature (algorithm inside the TBS)
    const issuer = expectTag(tbsFields[i++], TAG.SEQUENCE, 'issuer');
    const validity = children(expectTag(tbsFields[i++], TAG.SEQUENCE, 'validity'));
    const subject = expectTag(tbsFields[i++], TAG.SEQUENCE, 'subject');
    i++; // subjectPublicKeyInfo
    const extensions: CertificateExtension[] = [];
    for (; i < tbsFields.length; i++) {
      const field = tbsFields[i] as Tlv;
      if (field.tag !== 0xa3) continue; // issuerUniqueID / subjectUniqueID
      for (const ext of children(expectTag(readOnly(field.value, 'extensions'), TAG.SEQUENCE, 'extensions'))) {
        const parts = children(expectTag(ext, TAG.SEQUENCE, 'extension'));
        if (parts.length < 2 || parts.length > 3) throw new CertificateError('x509: malformed extension');
        const oid = decodeOid(expectTag(parts[0], TAG.OID, 'extension id').value);
        const critical = parts.length === 3 ? decodeBoolean(parts[1] as Tlv) : false;
        const value = expectTag(parts[parts.length - 1], TAG.OCTET_STRING, 'extension value').value;
        if (extensions.some((e) => e.oid === oid)) throw new CertificateError('x509: certificate contains duplicate extensions');
        extensions.push({ oid, critical, value });
      }
    }
    const signatureAlgorithm = decodeOid(expectTag(children(expectTag(sigAlg, TAG.SEQUENCE, 'signatureAlgorithm'))[0], TAG.OID, 'signature algorithm').value);

    let basicConstraints: Certificate['basicConstraints'];
    let keyUsage = 0;
    let extKeyUsage: string[] = [];
    let subjectAltNames: SubjectAltNames | undefined;
    let subjectKeyId: Uint8Array | undefined;
    let authorityKeyId: Uint8Array | undefined;
    const unhandledCritical: string[] = [];
    for (const ext of extensions) {
      switch (ext.oid) {
        case OID.basicConstraints:
          basicConstraints = parseBasicConstraints(ext.value);
          break;
        case OID.keyUsage:
          keyUsage = parseKeyUsage(ext.value);
          break;
        case OID.extKeyUsage:
          extKeyUsage = parseExtKeyUsage(ext.value);
          break;
        case OID.subjectAltName:
          subjectAltNames = parseSubjectAltNames(ext.value, ext.critical);
          break;
        case OID.subjectKeyId:
          subjectKeyId = expectTag(readOnly(ext.value, 'subjectKeyIdentifier'), TAG.OCTET_STRING, 'subjectKeyIdentifier').value;
          break;
        case OID.authorityKeyId:
          authorityKeyId = parseAuthorityKeyId(ext.value);
          break;
        default:
          break;
      }
      if (!ext.critical) continue;
      if (!HANDLED_CRITICAL.has(ext.oid)) unhandledCritical.push(ext.oid);
      else if (ext.oid === OID.subjectAltName) {
        const san = subjectAltNames as SubjectAltNames;
        if (san.emails.length + san.dnsNames.length + san.ipAddresses.length + san.uris.length === 0) unhandledCritical.push(ext.oid);
      }
    }
    const publicKey = x509.publicKey;
    const spki = new Uint8Array(publicKey.export({ format: 'der', type: 'spki' }));
    return Object.freeze({
      der: new Uint8Array(der),
      x509,
      publicKey,
      spki,
      fingerprint: createHash('sha256').update(spki).digest('hex').toUpperCase(),
      version,
      rawSubject: subject.raw,
      rawIssuer: issuer.raw,
      displayName: displayNameOf(x509),
      notBefore: decodeTime(validity[0] as Tlv),
      notAfter: decodeTime(validity[1] as Tlv),
      signatureAlgorithm,
      extensions: Object.freeze(extensions),
      ...(basicConstraints !== undefined ? { basicConstraints } : {}),
      keyUsage,
      extKeyUsage: Object.freeze(extKeyUsage),
      ...(subjectAltNames !== undefined ? { subjectAltNames } : {}),
      ...(subjectKeyId !== undefined ? { subjectKeyId } : {}),
      ...(authorityKeyId !== undefined ? { authorityKeyId } : {}),
      unhandledCritical: Object.freeze(unhandledCritical),
    });
  } catch (err) {
    if (err instanceof CertificateError) throw err;
    if (err instanceof DerError) throw new CertificateError(`x509: malformed certificate: ${err.message}`);
    throw err;
  }
}

/** The name of an insecure signature algorithm Go refuses, or undefined. */
export function insecureSignatureAlgorithm(cert: Certificate): string | undefined {
  return INSECURE_SIGNATURE_ALGORITHMS.get(cert.signatureAlgorithm);
}

interface PemBlock {
  readonly type: string;
  readonly hasHeaders: boolean;
  readonly der: Uint8Array;
}

const PEM_BEGIN = /-----BEGIN ([^\r\n-]*)-----\r?\n/;

/**
 * Go's encoding/pem.Decode, enough of it: the first block in `text` (leading junk is skipped), and
 * what follows it. Undefined when there is no (well-formed) block.
 */
function decodePem(text: string): { block: PemBlock; rest: string } | undefined {
  let searchFrom = 0;
  for (;;) {
    PEM_BEGIN.lastIndex = 0;
    const slice = text.slice(searchFrom);
    const begin = PEM_BEGIN.exec(slice);
    if (begin === null) return undefined;
    const bodyStart = searchFrom + begin.index + begin[0].length;
    const type = begin[1] as string;
    const endMarker = `-----END ${type}-----`;
    const endAt = text.indexOf(endMarker, bodyStart);
    if (endAt !== -1 && (begin.index === 0 || slice[begin.index - 1] === '\n')) {
      let body = text.slice(bodyStart, endAt);
      let hasHeaders = false;
      const headerEnd = /\r?\n\r?\n/.exec(body);
      if (headerEnd !== null && /^[A-Za-z0-9-]+:/.test(body)) {
        hasHeaders = true;
        body = body.slice(headerEnd.index + headerEnd[0].length);
      }
      const compact = body.replace(/[\r\n\t ]/g, '');
      if (/^[A-Za-z0-9+/]*={0,2}$/.test(compact) && compact.length % 4 === 0) {
        let after = endAt + endMarker.length;
        // The rest of the END line must be blank; the line break is consumed.
        const lineEnd = /^[ \t]*(\r?\n|$)/.exec(text.slice(after));
        if (lineEnd !== null) {
          after += lineEnd[0].length;
          return { block: { type, hasHeaders, der: new Uint8Array(Buffer.from(compact, 'base64')) }, rest: text.slice(after) };
        }
      }
    }
    searchFrom = bodyStart;
  }
}

/**
 * sigstore's cryptoutils.UnmarshalCertificatesFromPEM: every PEM block must be a certificate that
 * parses; anything but whitespace between blocks is an error. Throws CertificateError.
 */
export function parseCertificatesFromPem(bytes: Uint8Array | string): Certificate[] {
  let rest = (typeof bytes === 'string' ? bytes : Buffer.from(bytes).toString('latin1')).trim();
  const out: Certificate[] = [];
  while (rest.length > 0) {
    const decoded = decodePem(rest);
    if (decoded === undefined) throw new CertificateError('error during PEM decoding');
    out.push(parseCertificate(decoded.block.der));
    rest = decoded.rest.trim();
  }
  return out;
}

/**
 * Go's CertPool.AppendCertsFromPEM: every CERTIFICATE block without headers that parses; other
 * blocks and unparsable certificates are skipped. Stops at the first non-PEM text.
 */
export function certificatePoolFromPem(bytes: Uint8Array | string): Certificate[] {
  let rest = typeof bytes === 'string' ? bytes : Buffer.from(bytes).toString('latin1');
  const out: Certificate[] = [];
  for (;;) {
    const decoded = decodePem(rest);
    if (decoded === undefined) return out;
    rest = decoded.rest;
    if (decoded.block.type !== 'CERTIFICATE' || decoded.block.hasHeaders) continue;
    try {
      out.push(parseCertificate(decoded.block.der));
    } catch (err) {
      if (!(err instanceof CertificateError)) throw err;
    }
  }
}

/** Byte equality (names, key identifiers, whole certificates). */
export function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && Buffer.from(a.buffer, a.byteOffset, a.length).equals(Buffer.from(b.buffer, b.byteOffset, b.length));
}
