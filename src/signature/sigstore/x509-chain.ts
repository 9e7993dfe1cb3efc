/**
 * Certificate path validation with the semantics of Go's crypto/x509 `Certificate.Verify`, which
 * containers/image uses for sigstoreSigned `fulcio` and `pki` trust: chains are built by exact
 * subject/issuer name bytes from the leaf through the given intermediates to one of the roots; each
 * signature is checked (the parent must be a CA and, when it has key usages, allowed to sign
 * certificates; MD5/SHA-1 signatures are refused); every certificate of the chain must be valid at
 * the verification time, carry no critical extension Go does not handle, respect path length
 * constraints; intermediates must be CAs; and the chain must allow the requested extended key usage
 * (code signing). Error texts are Go's. Pure: the time is a parameter.
 *
 * Not supported, so refused (fail closed): CA certificates with name constraints.
 */
import { insecureSignatureAlgorithm, KEY_USAGE_CERT_SIGN, OID, canonicalIp, sameBytes, type Certificate } from './certificate.js';

export class ChainError extends Error {}

export interface ChainOptions {
  /** Trusted roots (anything in the trust file, as Go's CertPool). */
  readonly roots: readonly Certificate[];
  /** Untrusted (or configured) intermediates chains may use. */
  readonly intermediates: readonly Certificate[];
  /** Verification time, ms since the epoch. */
  readonly time: number;
  /** The extended key usage the chain must allow (OID). */
  readonly extKeyUsage: string;
  /** The leaf's critical SAN is matched by the caller (Fulcio): not an unhandled extension then. */
  readonly ignoreLeafCriticalSan?: boolean;
}

type CertType = 'leaf' | 'intermediate' | 'root';

/** Go's `maxChainSignatureChecks`. */
const MAX_SIGNATURE_CHECKS = 100;

/** Go's time.RFC3339 in UTC. */
export function formatRfc3339(ms: number): string {
  return new Date(Math.floor(ms / 1000) * 1000).toISOString().replace('.000Z', 'Z');
}

/** Go's %q of a string (close enough for the ASCII texts of certificates and errors). */
export function goQuote(text: string): string {
  return JSON.stringify(text);
}

/** Go's %q of a []string: `["a" "b"]`. */
export function goQuoteList(list: readonly string[]): string {
  return `[${list.map(goQuote).join(' ')}]`;
}

function isValid(cert: Certificate, type: CertType, chain: readonly Certificate[], options: ChainOptions): ChainError | undefined {
  const unhandled =
    type === 'leaf' && options.ignoreLeafCriticalSan === true ? cert.unhandledCritical.filter((oid) => oid !== OID.subjectAltName) : cert.unhandledCritical;
  if (unhandled.length > 0) return new ChainError('x509: unhandled critical extension');
  const child = chain[chain.length - 1];
  if (child !== undefined && !sameBytes(child.rawIssuer, cert.rawSubject))
    return new ChainError('x509: issuer name does not match subject from issuing certificate');
  if (options.time < cert.notBefore) {
    return new ChainError(
      `x509: certificate has expired or is not yet valid: current time ${formatRfc3339(options.time)} is before ${formatRfc3339(cert.notBefore)}`,
    );
  }
  if (options.time > cert.notAfter) {
    return new ChainError(
      `x509: certificate has expired or is not yet valid: current time ${formatRfc3339(options.time)} is after ${formatRfc3339(cert.notAfter)}`,
    );
  }
  if (type !== 'leaf' && cert.extensions.some((e) => e.oid === OID.nameConstraints)) {
    return new ChainError('x509: a root or intermediate certificate is not authorized to sign for this name: name constraints are not supported by pullguard');
  }
  if (type === 'intermediate' && cert.basicConstraints?.ca !== true) return new ChainError('x509: certificate is not authorized to sign other certificates');
  const maxPathLen = cert.basicConstraints?.maxPathLen;
  if (maxPathLen !== undefined && chain.length - 1 > maxPathLen) return new ChainError('x509: too many intermediates for path length constraint');
  return undefined;
}

/** Go's Certificate.CheckSignatureFrom. */
function checkSignatureFrom(child: Certificate, parent: Certificate): ChainError | undefined {
  if ((parent.version === 3 && parent.basicConstraints === undefined) || (parent.basicConstraints !== undefined && !parent.basicConstraints.ca)) {
    return new ChainError('x509: invalid signature: parent certificate cannot sign this kind of certificate');
  }
  if (parent.keyUsage !== 0 && (parent.keyUsage & KEY_USAGE_CERT_SIGN) === 0) {
    return new ChainError('x509: invalid signature: parent certificate cannot sign this kind of certificate');
  }
  const insecure = insecureSignatureAlgorithm(child);
  if (insecure !== undefined) return new ChainError(`x509: cannot verify signature: insecure algorithm ${insecure}`);
  let ok = false;
  try {
    ok = child.x509.verify(parent.publicKey);
  } catch {
    ok = false;
  }
  if (ok) return undefined;
  const type = parent.publicKey.asymmetricKeyType;
  return new ChainError(
    type === 'rsa' || type === 'rsa-pss'
      ? 'crypto/rsa: verification error'
      : type === 'ec'
        ? 'x509: ECDSA verification failure'
        : type === 'ed25519'
          ? 'x509: Ed25519 verification failure'
          : `x509: cannot verify signature: unsupported key type ${String(type)}`,
  );
}

/** Go's CertPool.findPotentialParents: same name, key-identifier matches first. */
function potentialParents(child: Certificate, pool: readonly Certificate[]): Certificate[] {
  const matching: Certificate[] = [];
  const one: Certificate[] = [];
  const mismatch: Certificate[] = [];
  for (const candidate of pool) {
    if (!sameBytes(candidate.rawSubject, child.rawIssuer)) continue;
    const ski = candidate.subjectKeyId ?? new Uint8Array();
    const aki = child.authorityKeyId ?? new Uint8Array();
    if (sameBytes(ski, aki)) matching.push(candidate);
    else if ((ski.length === 0) !== (aki.length === 0)) one.push(candidate);
    else mismatch.push(candidate);
  }
  return [...matching, ...one, ...mismatch];
}

function sanValue(cert: Certificate): Uint8Array | undefined {
  return cert.extensions.find((e) => e.oid === OID.subjectAltName)?.value;
}

/** Go's alreadyInChain: same subject, key and SAN. */
function alreadyInChain(candidate: Certificate, chain: readonly Certificate[]): boolean {
  const candidateSan = sanValue(candidate);
  return chain.some((cert) => {
    if (!sameBytes(cert.rawSubject, candidate.rawSubject) || !sameBytes(cert.spki, candidate.spki)) return false;
    const certSan = sanValue(cert);
    if (candidateSan === undefined || certSan === undefined) return candidateSan === certSan;
    return sameBytes(candidateSan, certSan);
  });
}

function unknownAuthority(hintErr: Error | undefined, hintCert: Certificate | undefined): ChainError {
  const base = 'x509: certificate signed by unknown authority';
  if (hintErr === undefined || hintCert === undefined) return new ChainError(base);
  return new ChainError(
    `${base} (possibly because of ${goQuote(hintErr.message)} while trying to verify candidate authority certificate ${goQuote(hintCert.displayName)})`,
  );
}

interface Built {
  readonly chains: Certificate[][];
  readonly err?: ChainError;
}

/** Go's buildChains, including which error wins when no chain is found. */
function buildChains(cert: Certificate, chain: readonly Certificate[], state: { checks: number }, options: ChainOptions): Built {
  const chains: Certificate[][] = [];
  let err: ChainError | undefined;
  let hintErr: ChainError | undefined;
  let hintCert: Certificate | undefined;
  const consider = (type: CertType, candidate: Certificate): void => {
    if (alreadyInChain(candidate, chain)) return;
    state.checks++;
    if (state.checks > MAX_SIGNATURE_CHECKS) {
      err = new ChainError('x509: signature check attempts limit reached while verifying certificate chain');
      return;
    }
    const signatureError = checkSignatureFrom(cert, candidate);
    if (signatureError !== undefined) {
      if (hintErr === undefined) [hintErr, hintCert] = [signatureError, candidate];
      return;
    }
    err = isValid(candidate, type, chain, options);
    if (err !== undefined) {
      if (hintErr === undefined) [hintErr, hintCert] = [err, candidate];
      return;
    }
    if (type === 'root') {
      chains.push([...chain, candidate]);
    } else {
      const sub = buildChains(candidate, [...chain, candidate], state, options);
      err = sub.err;
      chains.push(...sub.chains);
    }
  };
  for (const root of potentialParents(cert, options.roots)) consider('root', root);
  for (const intermediate of potentialParents(cert, options.intermediates)) consider('intermediate', intermediate);
  if (chains.length > 0) return { chains };
  return { chains, err: err ?? unknownAuthority(hintErr, hintCert) };
}

/** Go's checkChainForKeyUsage for one requested usage. */
function chainAllows(chain: readonly Certificate[], usage: string): boolean {
  for (let i = chain.length - 1; i >= 0; i--) {
    const eku = (chain[i] as Certificate).extKeyUsage;
    if (eku.length === 0 || eku.includes(OID.ekuAny)) continue;
    if (!eku.includes(usage)) return false;
  }
  return true;
}

/** Verifies `leaf` as Go's Certificate.Verify would; returns the first valid chain (leaf first), or throws ChainError. */
export function verifyCertificateChain(leaf: Certificate, options: ChainOptions): readonly Certificate[] {
  const leafError = isValid(leaf, 'leaf', [], options);
  if (leafError !== undefined) throw leafError;
  let candidates: Certificate[][];
  if (options.roots.some((root) => sameBytes(root.der, leaf.der))) {
    candidates = [[leaf]];
  } else {
    const built = buildChains(leaf, [leaf], { checks: 0 }, options);
    if (built.err !== undefined) throw built.err;
    candidates = built.chains;
  }
  const chain = candidates.find((c) => chainAllows(c, options.extKeyUsage));
  if (chain === undefined) throw new ChainError('x509: certificate specifies an incompatible key usage');
  return chain;
}

/** Go's validHostname. */
function validHostname(host: string, isPattern: boolean): boolean {
  if (!isPattern && host.endsWith('.')) host = host.slice(0, -1);
  if (host.length === 0 || host === '*') return false;
  return host.split('.').every((part, i) => {
    if (part === '') return false;
    if (isPattern && i === 0 && part === '*') return true;
    return [...part].every((c, j) => /[a-zA-Z0-9_]/.test(c) || (c === '-' && j !== 0));
  });
}

function matchHostnames(pattern: string, host: string): boolean {
  pattern = pattern.toLowerCase();
  host = host.toLowerCase().replace(/\.$/, '');
  if (pattern.length === 0 || host.length === 0) return false;
  const patternParts = pattern.split('.');
  const hostParts = host.split('.');
  if (patternParts.length !== hostParts.length) return false;
  return patternParts.every((part, i) => (i === 0 && part === '*') || part === hostParts[i]);
}

function matchExactly(a: string, b: string): boolean {
  if (a === '' || a === '.' || b === '' || b === '.') return false;
  return a.toLowerCase() === b.toLowerCase();
}

/** Go's Certificate.VerifyHostname (SANs only: DNS names with a leading wildcard label, or IP addresses); throws ChainError. */
export function verifyHostname(cert: Certificate, host: string): void {
  const san = cert.subjectAltNames;
  const dnsNames = san?.dnsNames ?? [];
  const ips = san?.ipAddresses ?? [];
  const bracketed = host.length >= 3 && host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host;
  const ip = canonicalIp(bracketed);
  if (ip !== undefined) {
    if (ips.includes(ip)) return;
    if (ips.length === 0) throw new ChainError(`x509: cannot validate certificate for ${bracketed} because it doesn't contain any IP SANs`);
    throw new ChainError(`x509: certificate is valid for ${ips.join(', ')}, not ${bracketed}`);
  }
  const candidate = host.toLowerCase();
  const validCandidate = validHostname(candidate, false);
  for (const name of dnsNames) {
    if (validCandidate && validHostname(name, true) ? matchHostnames(name, candidate) : matchExactly(name, candidate)) return;
  }
  if (dnsNames.length === 0) throw new ChainError(`x509: certificate is not valid for any names, but wanted to match ${host}`);
  throw new ChainError(`x509: certificate is valid for ${dnsNames.join(', ')}, not ${host}`);
}
