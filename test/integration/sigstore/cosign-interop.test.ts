/**
 * Interop with the real cosign (built from its module at the version pinned in .ci/build-peers):
 * cosign makes the key pairs and signs images in the loopback registry — with a key, with a key and
 * a PKI certificate chain, with a key and a Fulcio-style certificate — and pullguard verifies them
 * through `use-sigstore-attachments`, end to end through PullImage, with offline `verify` agreeing.
 *
 * What cosign will not make offline comes from the tests: the CAs (test-ca.ts, valid around the
 * signing time the test chooses: now) and, for Fulcio, the Rekor SET — cosign cannot reach a log
 * here, so the test adds a SET signed by a test Rekor key to cosign's attachment, over cosign's own
 * signature, certificate and payload. Faults (corrupted layers) are made in the registry's storage.
 *
 * cosign runs with an empty HOME and TUF root and no network but loopback: nothing here needs it.
 */
import { execFile } from 'node:child_process';
import { createPublicKey } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cosignEnvironment } from '../../helpers/cosign.js';
import { rekorBundle, sigstoreKey } from '../../fixtures/sigstore/cosign.js';
import { CODE_SIGNING, DAY, issueCertificate, testPki } from '../../fixtures/sigstore/test-ca.js';
import { buildOciImage, type BuiltImage } from '../../helpers/oci-image.js';
import { peerBinary, peerUnavailableReason, PEERS } from '../../helpers/peers.js';
import { MAIN, startPullguard, type RunningPullguard } from '../../helpers/pullguard-server.js';
import { pushImage, startRegistry, type StartedRegistry } from '../../helpers/registry.js';

const execFileAsync = promisify(execFile);
const rekor = sigstoreKey('rekor');
const ISSUER = 'https://oidc.pullguard.test';
const SIGNER_EMAIL = 'builder@pullguard.test';

let work: string;
let registry: StartedRegistry;
let image: BuiltImage;
let pullguard: RunningPullguard | undefined;
let policyPath: string;
let registriesD: string;
let cosignEnv: Record<string, string>;

/** cosign's own files: its key pairs, and the certificates the test CAs issued for its key. */
const files = {
  key: '',
  pub: '',
  otherPub: '',
  pkiCert: '',
  pkiChain: '',
  pkiRoot: '',
  otherPkiRoot: '',
  fulcioCert: '',
  fulcioChain: '',
  fulcioRoot: '',
  otherFulcioRoot: '',
};

async function cosign(args: string[]): Promise<string> {
  const bin = peerBinary('cosign') as string;
  try {
    const { stdout, stderr } = await execFileAsync(bin, args, { env: cosignEnv, cwd: work, timeout: 60_000 });
    return stdout + stderr;
  } catch (err) {
    const e = err as { stdout?: string; stderr?: string; message: string };
    throw new Error(`cosign ${args.join(' ')} failed: ${e.stderr ?? ''}${e.stdout ?? ''}${e.message}`);
  }
}

/** Pushes the image as `<repo>:v1` and has cosign sign it by digest (extra flags: --certificate…, -a …). */
async function pushAndSign(repo: string, extra: string[][] = [[]]): Promise<void> {
  await pushImage(image.dir, `${repo}:v1`, registry, { layoutTag: 'v1' });
  for (const flags of extra) {
    await cosign([
      'sign',
      '--key',
      files.key,
      '--tlog-upload=false',
      '--allow-http-registry',
      '--allow-insecure-registry',
      '--yes',
      ...flags,
      `${registry.host}/${repo}@${image.manifestDigest}`,
    ]);
  }
}

const attachmentTag = (): string => `${image.manifestDigest.replace(':', '-')}.sig`;

interface AttachmentManifest {
  layers: { mediaType: string; digest: string; size: number; annotations?: Record<string, string> }[];
}

async function readAttachment(repo: string): Promise<AttachmentManifest> {
  const res = await fetch(`${registry.url}/v2/${repo}/manifests/${attachmentTag()}`, { headers: { accept: 'application/vnd.oci.image.manifest.v1+json' } });
  if (res.status !== 200) throw new Error(`reading ${repo} attachment: HTTP ${res.status}`);
  return (await res.json()) as AttachmentManifest;
}

async function blob(repo: string, digest: string): Promise<Buffer> {
  const res = await fetch(`${registry.url}/v2/${repo}/blobs/${digest}`);
  return Buffer.from(await res.arrayBuffer());
}

/**
 * What the log would have added had cosign uploaded: a Rekor SET (signed by the test Rekor key, at
 * `integratedTime`) over cosign's signature, certificate and payload, on each layer of the attachment.
 */
async function addRekorSet(repo: string, integratedTime: number): Promise<void> {
  const manifest = await readAttachment(repo);
  for (const layer of manifest.layers) {
    const annotations = layer.annotations ?? {};
    const signature = Buffer.from(annotations['dev.cosignproject.cosign/signature'] ?? '', 'base64');
    const certificate = annotations['dev.sigstore.cosign/certificate'] ?? '';
    annotations['dev.sigstore.cosign/bundle'] = rekorBundle(
      rekor,
      { signature, publicPem: certificate, payload: await blob(repo, layer.digest) },
      {},
      integratedTime,
    );
    layer.annotations = annotations;
  }
  const res = await fetch(`${registry.url}/v2/${repo}/manifests/${attachmentTag()}`, {
    method: 'PUT',
    body: JSON.stringify(manifest),
    headers: { 'content-type': 'application/vnd.oci.image.manifest.v1+json' },
  });
  if (res.status !== 201) throw new Error(`re-pushing ${repo} attachment: HTTP ${res.status} ${await res.text()}`);
}

/** Flips one byte of a blob in the registry's storage: served with the wrong digest from then on. */
async function corrupt(digest: string): Promise<void> {
  const path = join(registry.dataDir, 'docker/registry/v2/blobs/sha256', digest.slice(7, 9), digest.slice(7), 'data');
  const bytes = await readFile(path);
  bytes[0] = (bytes[0] ?? 0) ^ 0xff;
  await writeFile(path, bytes);
}

interface Outcome {
  readonly imageRef?: string;
  readonly denial?: string;
  readonly warnings: string[];
}

async function pull(repo: string): Promise<Outcome> {
  const warnings: string[] = [];
  try {
    const response = await (pullguard as RunningPullguard).client.call<{ image_ref: string }>(
      'PullImage',
      { image: { image: `${registry.host}/${repo}:v1` } },
      {
        onTrailers: (md) => warnings.push(...md.get('pullguard-warnings').map(String)),
      },
    );
    return { imageRef: response.image_ref, warnings };
  } catch (err) {
    return { denial: (err as grpc.ServiceError).details, warnings };
  }
}

const DENIED = 'SignatureValidationFailed: Source image rejected: ';
const sigstore = (trust: object, extra: object = {}) => [{ type: 'sigstoreSigned', ...trust, signedIdentity: { type: 'matchRepository' }, ...extra }];
const b64 = (path: string) => readFile(path).then((b) => b.toString('base64'));

/** Every repository's scope: the matching trust, and one naming another key / CA / identity. */
async function scopes(): Promise<Record<string, unknown>> {
  const h = registry.host;
  const rekorPublicKeyPath = rekor.publicPath;
  const pki = { caRootsPath: files.pkiRoot, subjectEmail: SIGNER_EMAIL };
  const fulcio = { caPath: files.fulcioRoot, oidcIssuer: ISSUER, subjectEmail: SIGNER_EMAIL };
  return {
    [`${h}/key`]: sigstore({ keyPath: files.pub }),
    [`${h}/key-data`]: sigstore({ keyDatas: [await b64(files.otherPub), await b64(files.pub)] }),
    [`${h}/key-other`]: sigstore({ keyPath: files.otherPub }),
    [`${h}/pki`]: sigstore({ pki }),
    [`${h}/pki-hostname`]: sigstore({ pki: { caRootsData: await b64(files.pkiRoot), subjectHostname: 'builder.pullguard.test' } }),
    [`${h}/pki-other-ca`]: sigstore({ pki: { ...pki, caRootsPath: files.otherPkiRoot } }),
    [`${h}/pki-other-email`]: sigstore({ pki: { ...pki, subjectEmail: 'someone@pullguard.test' } }),
    [`${h}/fulcio`]: sigstore({ fulcio }, { rekorPublicKeyPath }),
    [`${h}/fulcio-other-ca`]: sigstore({ fulcio: { ...fulcio, caPath: files.otherFulcioRoot } }, { rekorPublicKeyPath }),
    [`${h}/fulcio-other-issuer`]: sigstore({ fulcio: { ...fulcio, oidcIssuer: 'https://accounts.example' } }, { rekorPublicKeyPath }),
    [`${h}/fulcio-other-email`]: sigstore({ fulcio: { ...fulcio, subjectEmail: 'someone@pullguard.test' } }, { rekorPublicKeyPath }),
    [`${h}/fulcio-no-set`]: sigstore({ fulcio }, { rekorPublicKeyPath }),
    [`${h}/partial`]: sigstore({ keyPath: files.pub }),
    [`${h}/corrupt`]: sigstore({ keyPath: files.pub }),
    [`${h}/mixed-bad`]: sigstore({ keyPath: files.pub }),
  };
}

beforeAll(async () => {
  const missing = peerUnavailableReason('cosign');
  // A missing cosign fails the run rather than skipping it: .ci/run builds it.
  if (missing !== undefined) throw new Error(`cosign ${PEERS.cosign} cannot run: ${missing}`);
  work = await mkdtemp(join(tmpdir(), 'pullguard-cosign-'));
  cosignEnv = await cosignEnvironment(work);
  registry = await startRegistry();
  image = await buildOciImage(join(work, 'img'), { tag: 'v1', layers: [{ size: 2_000 }], seed: 303 });

  // cosign's key pairs: the trusted one signs everything; the other is only ever trusted.
  await cosign(['generate-key-pair', '--output-key-prefix', join(work, 'trusted')]);
  await cosign(['generate-key-pair', '--output-key-prefix', join(work, 'other')]);
  Object.assign(files, { key: join(work, 'trusted.key'), pub: join(work, 'trusted.pub'), otherPub: join(work, 'other.pub') });
  const signerKey = createPublicKey(await readFile(files.pub));

  // Certificates for cosign's key, valid around now (the signing time): a PKI chain and a short-lived Fulcio-style one.
  const now = Date.now();
  const pki = testPki(now, { key: signerKey, emails: [SIGNER_EMAIL], dnsNames: ['builder.pullguard.test'] });
  const otherPki = testPki(now, {}, { root: 'pullguard test root', intermediate: 'other intermediate' });
  const fulcioRoot = issueCertificate({
    subject: { cn: 'sigstore', o: 'sigstore.dev' },
    ca: {},
    keyUsage: ['keyCertSign'],
    notBefore: now - 10 * DAY,
    notAfter: now + 3650 * DAY,
  });
  const fulcioIntermediate = issueCertificate({
    subject: { cn: 'sigstore-intermediate', o: 'sigstore.dev' },
    issuer: fulcioRoot,
    ca: { pathLen: 0 },
    keyUsage: ['keyCertSign'],
    extKeyUsage: [CODE_SIGNING],
    notBefore: now - 10 * DAY,
    notAfter: now + 3650 * DAY,
  });
  const fulcioLeaf = issueCertificate({
    subject: '',
    issuer: fulcioIntermediate,
    key: signerKey,
    emails: [SIGNER_EMAIL],
    sanCritical: true,
    keyUsage: ['digitalSignature'],
    extKeyUsage: [CODE_SIGNING],
    fulcioIssuerV1: ISSUER,
    fulcioIssuerV2: ISSUER,
    // Fulcio's ten minutes, around the signing time.
    notBefore: now - 60_000,
    notAfter: now + 540_000,
  });
  const otherFulcio = testPki(now, {}, { root: 'sigstore', intermediate: 'sigstore-intermediate' });
  const write = async (name: string, text: string): Promise<string> => {
    await writeFile(join(work, name), text);
    return join(work, name);
  };
  Object.assign(files, {
    pkiCert: await write('pki-cert.pem', pki.leaf.pem),
    pkiChain: await write('pki-chain.pem', pki.chainPem),
    pkiRoot: await write('pki-root.pem', pki.root.pem),
    otherPkiRoot: await write('other-pki-root.pem', otherPki.root.pem),
    fulcioCert: await write('fulcio-cert.pem', fulcioLeaf.pem),
    fulcioChain: await write('fulcio-chain.pem', fulcioIntermediate.pem + fulcioRoot.pem),
    fulcioRoot: await write('fulcio-root.pem', fulcioRoot.pem),
    otherFulcioRoot: await write('other-fulcio-root.pem', otherFulcio.root.pem),
  });

  const withPki = [['--certificate', files.pkiCert, '--certificate-chain', files.pkiChain]];
  const withFulcio = [['--certificate', files.fulcioCert, '--certificate-chain', files.fulcioChain]];
  for (const repo of ['key', 'key-data', 'key-other']) await pushAndSign(repo);
  for (const repo of ['pki', 'pki-hostname', 'pki-other-ca', 'pki-other-email']) await pushAndSign(repo, withPki);
  for (const repo of ['fulcio', 'fulcio-other-ca', 'fulcio-other-issuer', 'fulcio-other-email', 'fulcio-no-set']) await pushAndSign(repo, withFulcio);
  for (const repo of ['fulcio', 'fulcio-other-ca', 'fulcio-other-issuer', 'fulcio-other-email']) await addRekorSet(repo, Math.floor(now / 1000));
  // Two signatures with different payloads (cosign -a puts annotations in the payload), so each layer can be corrupted alone.
  for (const repo of ['partial', 'corrupt', 'mixed-bad'])
    await pushAndSign(repo, [
      ['-a', 'copy=1'],
      ['-a', 'copy=2'],
    ]);

  policyPath = join(work, 'policy.json');
  await writeFile(policyPath, JSON.stringify({ default: [{ type: 'reject' }], transports: { docker: await scopes() } }));
  registriesD = join(work, 'registries.d');
  await mkdir(registriesD);
  await writeFile(join(registriesD, 'sigstore.yaml'), `docker:\n  ${registry.host}:\n    use-sigstore-attachments: true\n`);
  pullguard = await startPullguard({ args: ['--signature-policy', policyPath, '--registries-d', registriesD, '--insecure-registry', registry.host] });
}, 300_000);

afterAll(async () => {
  await pullguard?.stop();
  await registry?.stop();
  if (work !== undefined) await rm(work, { recursive: true, force: true });
});

describe(`cosign ${PEERS.cosign} signs, pullguard verifies through PullImage`, () => {
  it('cosign lays out what pullguard reads: one simple-signing layer per signature, with the certificate and chain when given', async () => {
    const key = await readAttachment('key');
    expect(key.layers).toEqual([
      expect.objectContaining({
        mediaType: 'application/vnd.dev.cosign.simplesigning.v1+json',
        annotations: { 'dev.cosignproject.cosign/signature': expect.any(String) },
      }),
    ]);
    const pki = (await readAttachment('pki')).layers[0]?.annotations ?? {};
    expect(pki['dev.sigstore.cosign/certificate']).toBe(await readFile(files.pkiCert, 'utf8'));
    expect(pki['dev.sigstore.cosign/chain']).toBe(await readFile(files.pkiChain, 'utf8'));
    const payload = JSON.parse((await blob('key', key.layers[0]!.digest)).toString()) as { critical: { identity: { 'docker-reference': string } } };
    expect(payload.critical.identity['docker-reference']).toBe(`${registry.host}/key`);
  });

  it('a key pair cosign generated: allowed under its public key (keyPath, or among keyDatas), denied under another key', async () => {
    expect(await pull('key')).toEqual({ imageRef: image.configDigest, warnings: [] });
    expect((await pull('key-data')).imageRef).toBe(image.configDigest);
    expect((await pull('key-other')).denial).toBe(
      `${DENIED}cryptographic signature verification failed: invalid signature when validating ASN.1 encoded signature`,
    );
  });

  it('a key with a PKI certificate chain: allowed under the CA naming the email or the hostname; denied under another CA or another email', async () => {
    expect((await pull('pki')).imageRef).toBe(image.configDigest);
    expect((await pull('pki-hostname')).imageRef).toBe(image.configDigest);
    expect((await pull('pki-other-ca')).denial).toMatch(
      /^SignatureValidationFailed: Source image rejected: veryfing leaf certificate failed: x509: certificate signed by unknown authority/,
    );
    expect((await pull('pki-other-email')).denial).toBe(`${DENIED}Required email "someone@pullguard.test" not found (got ["${SIGNER_EMAIL}"])`);
  });

  it('a Fulcio-style certificate with a Rekor SET: allowed under the Fulcio CA, issuer and email; denied under another CA, issuer or email, and without the SET', async () => {
    expect((await pull('fulcio')).imageRef).toBe(image.configDigest);
    expect((await pull('fulcio-other-ca')).denial).toMatch(
      /^SignatureValidationFailed: Source image rejected: veryfing leaf certificate failed: x509: certificate signed by unknown authority/,
    );
    expect((await pull('fulcio-other-issuer')).denial).toBe(`${DENIED}Unexpected Fulcio OIDC issuer "${ISSUER}"`);
    expect((await pull('fulcio-other-email')).denial).toBe(`${DENIED}Required email "someone@pullguard.test" not found (got ["${SIGNER_EMAIL}"])`);
    expect((await pull('fulcio-no-set')).denial).toBe(`${DENIED}missing dev.sigstore.cosign/bundle annotation`);
  });

  it('fault matrix: one of two cosign layers corrupted → allowed with a warning; both → denied naming both; one corrupted and one not trusted → denied with both reasons', async () => {
    const digests = async (repo: string) => (await readAttachment(repo)).layers.map((l) => l.digest);
    const [partial1] = await digests('partial');
    await corrupt(partial1!);
    const partial = await pull('partial');
    expect(partial.imageRef).toBe(image.configDigest);
    expect(partial.warnings.join('\n')).toMatch(/PGW001 .*sigstore-attachment-1 .*digest mismatch/);

    for (const d of await digests('corrupt')) await corrupt(d);
    const corrupted = await pull('corrupt');
    expect(corrupted.denial).toMatch(
      /^SignatureValidationFailed: Source image rejected: A signature was required, but no signature exists; additionally 2 signatures could not be read: sigstore-attachment-1 .*digest mismatch.*; sigstore-attachment-2 .*digest mismatch/,
    );

    // The second layer re-signed by another key: cosign signs, the test swaps in the other signer's layer.
    const [bad1] = await digests('mixed-bad');
    await corrupt(bad1!);
    await cosign([
      'sign',
      '--key',
      join(work, 'other.key'),
      '--tlog-upload=false',
      '--allow-http-registry',
      '--allow-insecure-registry',
      '--yes',
      '-a',
      'copy=3',
      `${registry.host}/mixed-bad@${image.manifestDigest}`,
    ]);
    const manifest = await readAttachment('mixed-bad');
    manifest.layers.splice(1, 1);
    const res = await fetch(`${registry.url}/v2/mixed-bad/manifests/${attachmentTag()}`, {
      method: 'PUT',
      body: JSON.stringify(manifest),
      headers: { 'content-type': 'application/vnd.oci.image.manifest.v1+json' },
    });
    expect(res.status).toBe(201);
    expect((await pull('mixed-bad')).denial).toMatch(
      /^SignatureValidationFailed: Source image rejected: cryptographic signature verification failed: invalid signature when validating ASN\.1 encoded signature; additionally 1 signature could not be read: sigstore-attachment-1 .*digest mismatch/,
    );
  });

  it('offline verify agrees: OK under the policy that allowed each image, a failure under one naming another key', async () => {
    await (pullguard as RunningPullguard).stop({ keepState: true });
    const stateDir = (pullguard as RunningPullguard).stateDir;
    pullguard = undefined;
    const verify = async (repo: string, policy: string) =>
      execFileAsync(process.execPath, [
        MAIN,
        'verify',
        `${registry.host}/${repo}:v1`,
        '--state-dir',
        stateDir,
        '--signature-policy',
        policy,
        '--registries-d',
        registriesD,
      ]).then(
        (r) => ({ ok: true, out: r.stdout + r.stderr }),
        (e: { stdout: string; stderr: string }) => ({ ok: false, out: e.stdout + e.stderr }),
      );
    try {
      for (const repo of ['key', 'pki', 'fulcio', 'partial'])
        expect(await verify(repo, policyPath)).toMatchObject({ ok: true, out: expect.stringMatching(/^OK: /) });
      const strict = join(work, 'other-policy.json');
      const scopes = Object.fromEntries(['key', 'pki', 'fulcio'].map((repo) => [`${registry.host}/${repo}`, sigstore({ keyPath: files.otherPub })]));
      await writeFile(strict, JSON.stringify({ default: [{ type: 'reject' }], transports: { docker: scopes } }));
      for (const repo of ['key', 'pki', 'fulcio'])
        expect(await verify(repo, strict)).toMatchObject({ ok: false, out: expect.stringContaining('cryptographic signature verification failed') });
    } finally {
      await rm(stateDir, { recursive: true, force: true });
    }
  });
});

describe('--require-signature-verification', () => {
  it('denies an image its policy accepts without verifying a signature, and still allows one whose signature verified; off by default; verify agrees', async () => {
    const policy = join(work, 'mixed-policy.json');
    await writeFile(
      policy,
      JSON.stringify({ default: [{ type: 'insecureAcceptAnything' }], transports: { docker: { [`${registry.host}/key`]: sigstore({ keyPath: files.pub }) } } }),
    );
    await pushImage(image.dir, 'unsigned:v1', registry, { layoutTag: 'v1' });
    const plain = await startPullguard({ args: ['--signature-policy', policy, '--registries-d', registriesD, '--insecure-registry', registry.host] });
    pullguard = plain;
    expect((await pull('unsigned')).imageRef).toBe(image.configDigest);
    await plain.stop();
    const strict = await startPullguard({
      args: ['--signature-policy', policy, '--registries-d', registriesD, '--insecure-registry', registry.host, '--require-signature-verification'],
    });
    pullguard = strict;
    expect((await pull('unsigned')).denial).toBe(
      `${DENIED}Signature verification is required, but the policy accepts this image without verifying any signature`,
    );
    expect((await pull('key')).imageRef).toBe(image.configDigest);
    await strict.stop({ keepState: true });
    pullguard = undefined;
    const verify = (args: string[]) =>
      execFileAsync(process.execPath, [
        MAIN,
        'verify',
        `${registry.host}/key:v1`,
        '--state-dir',
        strict.stateDir,
        '--signature-policy',
        policy,
        '--registries-d',
        registriesD,
        ...args,
      ]).then((r) => r.stdout);
    expect(await verify(['--require-signature-verification'])).toMatch(/^OK: /);
    await rm(strict.stateDir, { recursive: true, force: true });
  });
});
