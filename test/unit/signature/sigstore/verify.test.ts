import { readFileSync } from 'node:fs';
import { describe, expect, test } from 'vitest';
import type { Digest } from '../../../../src/domain/digest.js';
import { parseReference } from '../../../../src/domain/reference.js';
import type { UntrustedSignatureBlob } from '../../../../src/domain/signature.js';
import { matchesSignedIdentity } from '../../../../src/policy/identity.js';
import { parseCertificate } from '../../../../src/signature/sigstore/certificate.js';
import { loadFulcioTrustRoot, loadPkiTrustRoot } from '../../../../src/signature/sigstore/certificate-trust.js';
import { parseSigstorePublicKey, type SigstoreKeySet } from '../../../../src/signature/sigstore/public-keys.js';
import { verifySigstoreSignature } from '../../../../src/signature/sigstore/verify.js';
import {
  cosignPayload,
  cosignSign,
  generatedKey,
  rekorBundle,
  signedLayer,
  sigstoreKey,
  type AttachmentLayer,
  type TestKey,
} from '../../../fixtures/sigstore/cosign.js';
import { DAY, newKeyPair, testPki } from '../../../fixtures/sigstore/test-ca.js';

const DIGEST = `sha256:${'1'.repeat(64)}` as Digest;
const IMAGE = parseReference('registry.example/team/app:v1');
const cosign = sigstoreKey('cosign');
const other = sigstoreKey('other');
const rekor = sigstoreKey('rekor');

const pub = (k: TestKey) => parseSigstorePublicKey(readFileSync(k.publicPath), k.publicPath);
const keysOf = (...k: TestKey[]): SigstoreKeySet => ({ publicKeys: k.map(pub) });
const blob = (layer: AttachmentLayer, index = 1): UntrustedSignatureBlob => ({
  location: { source: 'sigstore-attachment', index, url: `docker://registry.example/team/app@sha256:${index}` },
  format: 'sigstore',
  bytes: layer.bytes,
  untrustedMimeType: layer.mediaType,
  untrustedAnnotations: layer.annotations,
});
const expectations = { manifestDigest: DIGEST, matchesIdentity: (r: string) => matchesSignedIdentity({ type: 'matchRepository' }, IMAGE, r) };
const check = (layer: AttachmentLayer, keys: SigstoreKeySet = keysOf(cosign)) => verifySigstoreSignature(blob(layer), keys, expectations);
const claim = { digest: DIGEST, reference: 'registry.example/team/app' };

describe('verifySigstoreSignature', () => {
  test.each(['cosign', 'ed25519', 'rsa'] as const)('accepts a %s-key signature with cosign\'s "optional": null', (name) => {
    const key = sigstoreKey(name);
    const result = check(signedLayer(key, claim), keysOf(other, key));
    expect(result).toMatchObject({ verdict: 'accepted', signedDockerReference: 'registry.example/team/app', signedManifestDigest: DIGEST });
    expect(result.verdict === 'accepted' && result.signer.keyFingerprint).toBe(pub(key).fingerprint);
  });
  test('optional creator/timestamp are carried', () => {
    expect(check(signedLayer(cosign, { ...claim, optional: { creator: 'me', timestamp: 1700000000, extra: 1 } }))).toMatchObject({
      creator: 'me',
      timestamp: 1700000000,
    });
  });
  test('a signature by another key: upstream crypto failure text, per key', () => {
    expect(check(signedLayer(cosign, claim, { signWith: other }), keysOf(cosign, sigstoreKey('ed25519')))).toMatchObject({
      verdict: 'rejected',
      kind: 'invalid-signature',
      reason: 'cryptographic signature verification failed: invalid signature when validating ASN.1 encoded signature, failed to verify signature',
    });
  });
  test('missing annotation, bad base64', () => {
    const layer = signedLayer(cosign, claim);
    expect(check({ ...layer, annotations: {} })).toMatchObject({ reason: 'missing dev.cosignproject.cosign/signature annotation' });
    expect(check({ ...layer, annotations: { 'dev.cosignproject.cosign/signature': 'ab$d' } })).toMatchObject({
      reason: 'base64 decoding: illegal base64 data at input byte 2',
    });
  });
  test('payload checked only after the signature: digest, identity, type, strictness', () => {
    expect(check(signedLayer(cosign, { ...claim, digest: `sha256:${'2'.repeat(64)}` }))).toMatchObject({
      kind: 'digest-mismatch',
      reason: `Signature for digest sha256:${'2'.repeat(64)} does not match`,
    });
    expect(check(signedLayer(cosign, { ...claim, reference: 'registry.example/other' }))).toMatchObject({
      kind: 'identity-mismatch',
      reason: 'Signature for identity "registry.example/other" is not accepted',
    });
    const retyped = Buffer.from(
      Buffer.from(cosignPayload(DIGEST, claim.reference)).toString().replace('cosign container image signature', 'atomic container signature'),
    );
    const layer = {
      mediaType: 'x',
      bytes: retyped,
      annotations: { 'dev.cosignproject.cosign/signature': cosignSign(cosign.privateKey, retyped).toString('base64') },
    };
    expect(check(layer)).toMatchObject({ kind: 'invalid-payload', reason: 'Unrecognized signature type atomic container signature' });
    const extra = Buffer.from(JSON.stringify({ critical: {}, optional: null, more: 1 }));
    expect(
      check({ ...layer, bytes: extra, annotations: { 'dev.cosignproject.cosign/signature': cosignSign(cosign.privateKey, extra).toString('base64') } }),
    ).toMatchObject({ kind: 'invalid-payload', reason: 'Unknown key "more"' });
  });
  test('a simple-signing blob is not handled', () => {
    expect(verifySigstoreSignature({ ...blob(signedLayer(cosign, claim)), format: 'simple-signing' }, keysOf(cosign), expectations)).toMatchObject({
      kind: 'unsupported',
    });
  });
});

describe('Rekor SET', () => {
  const withRekor: SigstoreKeySet = { publicKeys: [pub(cosign)], rekorKeys: [pub(rekor)] };
  test('a valid SET is accepted; without the bundle annotation the signature is rejected', () => {
    const layer = signedLayer(cosign, claim, { rekor });
    expect(check(layer, withRekor)).toMatchObject({ verdict: 'accepted' });
    expect(check(signedLayer(cosign, claim), withRekor)).toMatchObject({ verdict: 'rejected', reason: 'missing dev.sigstore.cosign/bundle annotation' });
  });
  test('several Rekor keys (rekorPublicKeyPaths/Datas): a SET signed by any one of them is accepted, by none rejected', () => {
    const both: SigstoreKeySet = { publicKeys: [pub(cosign)], rekorKeys: [pub(other), pub(rekor)] };
    expect(check(signedLayer(cosign, claim, { rekor }), both)).toMatchObject({ verdict: 'accepted' });
    expect(check(signedLayer(cosign, claim, { rekor: other }), both)).toMatchObject({ verdict: 'accepted' });
    expect(check(signedLayer(cosign, claim, { rekor: cosign }), both)).toMatchObject({
      verdict: 'rejected',
      reason: expect.stringContaining('No public key verified against the RekorSET'),
    });
  });
  test('SET signed by another log key, or with a changed payload field', () => {
    expect(check(signedLayer(cosign, claim, { rekor: other }), withRekor)).toMatchObject({
      reason: 'No public key verified against the RekorSET: cryptographic signature verification of Rekor SET failed',
    });
    const layer = signedLayer(cosign, claim);
    const signature = Buffer.from(layer.annotations['dev.cosignproject.cosign/signature']!, 'base64');
    const bundle = (t: Parameters<typeof rekorBundle>[2]) => ({
      ...layer,
      annotations: {
        ...layer.annotations,
        'dev.sigstore.cosign/bundle': rekorBundle(rekor, { signature, publicPem: cosign.publicPem, payload: layer.bytes }, t),
      },
    });
    expect(check(bundle({ integratedTime: 1 }), withRekor)).toMatchObject({
      reason: expect.stringContaining('cryptographic signature verification of Rekor SET failed'),
    });
    expect(check(bundle({ publicPem: other.publicPem }), withRekor)).toMatchObject({
      reason: expect.stringContaining('publicKey in Rekor SET does not match'),
    });
    expect(check(bundle({ bodyHash: '00' }), withRekor)).toMatchObject({ reason: expect.stringContaining('payload in Rekor SET does not match') });
    expect(check(bundle({ signature: Buffer.from('x') }), withRekor)).toMatchObject({
      reason: expect.stringContaining('signature in Rekor SET does not match'),
    });
  });
});

describe('parseSigstorePublicKey', () => {
  test('refuses non-PEM data and non-ECDSA Rekor keys', () => {
    expect(() => parseSigstorePublicKey(Buffer.from('nope'), 'keyData')).toThrow('keyData: PEM decoding failed');
    expect(() => parseSigstorePublicKey(readFileSync(sigstoreKey('rsa').publicPath), 'rekor', { ecdsaOnly: true })).toThrow(
      'Rekor public key is not using ECDSA',
    );
    expect(() => parseSigstorePublicKey(readFileSync(sigstoreKey('rsa').publicPath.replace('.pub', '.key')), 'k')).toThrow(
      /unknown Public key PEM file type: PRIVATE KEY/,
    );
  });
});

describe('certificates: fulcio (with the Rekor SET) and pki', () => {
  // Signing times the tests control: the Rekor SET's integrated time, and the pki verification time.
  const SIGNED_AT = 1_900_000_000; // 2030-03-17
  const at = SIGNED_AT * 1000;
  const signerKey = newKeyPair().privateKey;
  const signer = generatedKey('signer', signerKey);
  const ISSUER = 'https://oidc.example.com';
  const fulcioCa = testPki(at, {
    key: signerKey,
    emails: ['dev@example.com'],
    sanCritical: true,
    fulcioIssuerV2: ISSUER,
    notBefore: at - 60_000,
    notAfter: at + 540_000,
  });
  const pkiCa = testPki(at, { key: signerKey, emails: ['dev@example.com'], dnsNames: ['builder.example.com'] });
  const fulcio = (email = 'dev@example.com', caPem = fulcioCa.root.pem): SigstoreKeySet => ({
    publicKeys: [],
    rekorKeys: [pub(rekor)],
    fulcio: loadFulcioTrustRoot(Buffer.from(caPem), ISSUER, email),
  });
  const pki = (
    identity: { subjectEmail?: string; subjectHostname?: string } = { subjectEmail: 'dev@example.com' },
    caPem = pkiCa.root.pem,
  ): SigstoreKeySet => ({
    publicKeys: [],
    pki: loadPkiTrustRoot(Buffer.from(caPem), undefined, identity),
  });
  const fulcioLayer = (options: Parameters<typeof signedLayer>[2] = {}) =>
    signedLayer(signer, claim, { rekor, certificate: fulcioCa.leaf.pem, chain: fulcioCa.chainPem, integratedTime: SIGNED_AT, ...options });
  const checkAt = (layer: AttachmentLayer, keys: SigstoreKeySet, now = new Date(at)) => verifySigstoreSignature(blob(layer), keys, { ...expectations, now });

  test('fulcio: a certificate valid at the integrated time, logged in the SET, whose key signed the payload: accepted, whatever the verification date', () => {
    const result = checkAt(fulcioLayer(), fulcio(), new Date(at + 3650 * DAY));
    expect(result).toMatchObject({ verdict: 'accepted', signedManifestDigest: DIGEST });
    expect(result.verdict === 'accepted' && result.signer.keyFingerprint).toBe(parseCertificate(fulcioCa.leaf.der).fingerprint);
  });

  test('fulcio: the SET is mandatory and must carry this certificate; the certificate must be valid at its integrated time', () => {
    const layer = fulcioLayer();
    const { ['dev.sigstore.cosign/bundle']: _set, ...noSet } = layer.annotations;
    expect(checkAt({ ...layer, annotations: noSet }, fulcio())).toMatchObject({ verdict: 'rejected', reason: 'missing dev.sigstore.cosign/bundle annotation' });
    const { ['dev.sigstore.cosign/certificate']: _cert, ...noCert } = layer.annotations;
    expect(checkAt({ ...layer, annotations: noCert }, fulcio())).toMatchObject({ reason: 'missing dev.sigstore.cosign/certificate annotation' });
    // The SET logged the key, not the certificate: what key-based signing with a Rekor upload produces.
    expect(checkAt(signedLayer(signer, claim, { rekor, integratedTime: SIGNED_AT, chain: fulcioCa.chainPem }), fulcio())).toMatchObject({
      reason: 'missing dev.sigstore.cosign/certificate annotation',
    });
    const signature = Buffer.from(layer.annotations['dev.cosignproject.cosign/signature']!, 'base64');
    const keySet = rekorBundle(rekor, { signature, publicPem: signer.publicPem, payload: layer.bytes }, {}, SIGNED_AT);
    const keyLogged = { ...layer, annotations: { ...layer.annotations, 'dev.sigstore.cosign/bundle': keySet } };
    expect(checkAt(keyLogged, fulcio())).toMatchObject({ reason: 'publicKey in Rekor SET does not match' });
    expect(checkAt(fulcioLayer({ integratedTime: SIGNED_AT + 600 }), fulcio())).toMatchObject({
      reason: expect.stringMatching(
        /^veryfing leaf certificate failed: x509: certificate has expired or is not yet valid: current time 2030-03-17T17:56:40Z is after 2030-03-17T17:55:40Z$/,
      ),
    });
    expect(checkAt(fulcioLayer({ rekor: other }), fulcio())).toMatchObject({ reason: 'cryptographic signature verification of Rekor SET failed' });
  });

  test('fulcio: another identity, another CA, a payload signed by another key', () => {
    expect(checkAt(fulcioLayer(), fulcio('else@example.com'))).toMatchObject({
      reason: 'Required email "else@example.com" not found (got ["dev@example.com"])',
    });
    expect(checkAt(fulcioLayer(), fulcio('dev@example.com', pkiCa.root.pem))).toMatchObject({
      reason: expect.stringMatching(/^veryfing leaf certificate failed: x509: certificate signed by unknown authority/),
    });
    // Logged as made, certificate trusted: the payload signature itself is what fails.
    expect(checkAt(fulcioLayer({ signWith: cosign }), fulcio())).toMatchObject({
      reason: 'cryptographic signature verification failed: invalid signature when validating ASN.1 encoded signature',
    });
  });

  test('pki: a certificate chaining to the roots, naming the identity, verified at the given time; no Rekor SET needed', () => {
    const layer = signedLayer(signer, claim, { certificate: pkiCa.leaf.pem, chain: pkiCa.chainPem });
    expect(checkAt(layer, pki())).toMatchObject({ verdict: 'accepted' });
    expect(checkAt(layer, pki({ subjectHostname: 'builder.example.com' }))).toMatchObject({ verdict: 'accepted' });
    expect(checkAt(layer, pki(), new Date(at + 31 * DAY))).toMatchObject({
      reason: expect.stringContaining('x509: certificate has expired or is not yet valid'),
    });
    expect(checkAt(layer, pki({ subjectHostname: 'other.example.com' }))).toMatchObject({
      reason: 'Unexpected subject hostname: x509: certificate is valid for builder.example.com, not other.example.com',
    });
    expect(checkAt(layer, pki(undefined, fulcioCa.root.pem))).toMatchObject({ reason: expect.stringMatching(/unknown authority/) });
  });

  test("pki: the payload must be signed by the certificate's key; the payload is then judged as usual", () => {
    expect(checkAt(signedLayer(signer, claim, { certificate: pkiCa.leaf.pem, chain: pkiCa.chainPem, signWith: cosign }), pki())).toMatchObject({
      kind: 'invalid-signature',
      reason: 'cryptographic signature verification failed: invalid signature when validating ASN.1 encoded signature',
    });
    expect(
      checkAt(signedLayer(signer, { ...claim, reference: 'registry.example/other' }, { certificate: pkiCa.leaf.pem, chain: pkiCa.chainPem }), pki()),
    ).toMatchObject({
      kind: 'identity-mismatch',
    });
    expect(checkAt(signedLayer(signer, claim), pki())).toMatchObject({ reason: 'missing dev.sigstore.cosign/certificate annotation' });
  });
});
