/**
 * Sigstore attachments against the real registry (distribution 2.8): attachments are built the way
 * cosign lays them out, pushed through the registry API, read back by the attachment source through
 * the real registry client, and judged by the signature phase. These are the project's own fixtures
 * (forged and corrupted layers cosign would not make); signatures made by the real cosign are in
 * cosign-interop.test.ts. (Debian's skopeo has sigstore compiled out, so it can neither sign nor judge here.)
 */
import { mkdtemp, readFile, rm, writeFile, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { loadPolicyFromText, type LoadedPolicy } from '../../../src/config/policy-loader.js';
import { parseRegistriesD } from '../../../src/config/registries-d.js';
import { parseReference } from '../../../src/domain/reference.js';
import type { SignatureFetchReport } from '../../../src/domain/signature.js';
import type { ResolvedImage, SignatureSource } from '../../../src/pull/ports.js';
import { runSignaturePhase } from '../../../src/pull/signature-phase.js';
import { createRegistryClient, type RegistryImageSource } from '../../../src/registry/client.js';
import { createSigstoreAttachmentSource } from '../../../src/sources/attachment-source.js';
import { digestOf, pushAttachment, signedLayer, sigstoreKey, type AttachmentLayer } from '../../fixtures/sigstore/cosign.js';
import { buildOciImage, type BuiltImage } from '../../helpers/oci-image.js';
import { pushImage, startRegistry, type StartedRegistry } from '../../helpers/registry.js';

const cosign = sigstoreKey('cosign');
const other = sigstoreKey('other');

let dir: string;
let reg: StartedRegistry;
let img: BuiltImage;
let client: RegistryImageSource;
let policy: LoadedPolicy;
let source: SignatureSource;
const resolved = new Map<string, ResolvedImage>();

const layerPath = (digest: string) => join(reg.dataDir, 'docker/registry/v2/blobs/sha256', digest.slice(7, 9), digest.slice(7), 'data');
/** Flips one byte of a blob in the registry's storage: the registry still serves it, with the wrong digest. */
async function corruptBlob(digest: string): Promise<void> {
  const bytes = await readFile(layerPath(digest));
  bytes[0] = (bytes[0] ?? 0) ^ 0xff;
  await writeFile(layerPath(digest), bytes);
}
const claim = (repo: string) => ({ digest: img.manifestDigest, reference: `${reg.host}/${repo}` });
/** A second valid signature with different bytes (so its blob can be corrupted alone). */
const variant = (repo: string, n: number, key = cosign): AttachmentLayer => signedLayer(key, { ...claim(repo), optional: { creator: `variant ${n}` } });

async function setUp(repo: string, layers: AttachmentLayer[], corrupt: number[] = []): Promise<void> {
  await pushImage(join(dir, 'layout'), `${repo}:v1`, reg, { layoutTag: 'v1' });
  if (layers.length > 0) await pushAttachment(reg.url, repo, img.manifestDigest, layers);
  for (const i of corrupt) await corruptBlob(digestOf((layers[i] as AttachmentLayer).bytes));
  resolved.set(repo, await client.resolve(parseReference(`${reg.host}/${repo}:v1`), {}));
}

async function phase(repo: string, sources: SignatureSource[] = [source]) {
  return (await runSignaturePhase({ policy, image: resolved.get(repo) as ResolvedImage, sources })).verdict;
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'pullguard-sigstore-'));
  img = await buildOciImage(join(dir, 'layout'), { tag: 'v1', layers: [{ size: 512 }] });
  reg = await startRegistry();
  client = createRegistryClient({
    platform: { os: 'linux', architecture: 'amd64' },
    insecureRegistries: [reg.host],
    timeouts: { connectMs: 1000, headersMs: 5000, bodyIdleMs: 5000 },
    retry: { maxAttempts: 1 },
  });
  const policyText = JSON.stringify({
    default: [{ type: 'reject' }],
    transports: { docker: { [reg.host]: [{ type: 'sigstoreSigned', keyPath: cosign.publicPath, signedIdentity: { type: 'matchRepository' } }] } },
  });
  await writeFile(join(dir, 'policy.json'), policyText);
  await mkdir(join(dir, 'registries.d'));
  const registriesYaml = `docker:\n  ${reg.host}:\n    use-sigstore-attachments: true\n`;
  await writeFile(join(dir, 'registries.d', 'sigstore.yaml'), registriesYaml);
  policy = await loadPolicyFromText(policyText, join(dir, 'policy.json'));
  source = createSigstoreAttachmentSource({
    registriesD: parseRegistriesD([{ path: '/sigstore.yaml', text: registriesYaml }], { defaultLookaside: null }),
    registry: client,
  });
  await setUp('valid', [signedLayer(cosign, claim('valid'))]);
  await setUp('partial', [variant('partial', 1), signedLayer(cosign, claim('partial'))], [0]);
  await setUp('bad', [variant('bad', 1), signedLayer(cosign, claim('bad'), { signWith: other })], [0]);
  await setUp('wrong-identity', [signedLayer(cosign, claim('elsewhere'))]);
  await setUp('none', []);
}, 120_000);

afterAll(async () => {
  await client?.close();
  await reg?.stop();
  await rm(dir, { recursive: true, force: true });
});

describe('sigstore attachments in a real registry', () => {
  test('a valid cosign signature: allowed', async () => {
    const verdict = await phase('valid');
    expect(verdict).toMatchObject({ allowed: true, warnings: [], troubles: [] });
    expect(verdict.requirements[0]?.satisfiedBy?.location).toMatchObject({ source: 'sigstore-attachment', index: 1 });
  }, 60_000);

  test('an unreadable (corrupted) layer beside a valid one: allowed with PGW001 (upstream fails the whole read)', async () => {
    const verdict = await phase('partial');
    expect(verdict.allowed).toBe(true);
    expect(verdict.warnings).toEqual([
      expect.objectContaining({ code: 'PGW001', location: expect.objectContaining({ source: 'sigstore-attachment', index: 1 }) }),
    ]);
    expect(verdict.warnings[0]?.message).toMatch(/sigstore-attachment-1 \(docker:\/\/.*\/partial@sha256:[0-9a-f]{64}\): digest mismatch, expected "sha256:/);
  }, 60_000);

  test('no valid signature: denied with the rejection and the trouble', async () => {
    const verdict = await phase('bad');
    expect(verdict.allowed).toBe(false);
    expect(verdict.denial).toMatch(
      /^cryptographic signature verification failed: invalid signature when validating ASN\.1 encoded signature; additionally 1 signature could not be read: sigstore-attachment-1 .*digest mismatch/,
    );
  }, 60_000);

  test('identity is checked against the user reference (matchRepository)', async () => {
    const verdict = await phase('wrong-identity');
    expect(verdict.denial).toBe(`Signature for identity "${reg.host}/elsewhere" is not accepted`);
  }, 60_000);

  test('no attachment (real MANIFEST_UNKNOWN): no signatures, not a trouble', async () => {
    const report = await source.fetch(resolved.get('none') as ResolvedImage, {});
    expect(report).toMatchObject({ end: 'not-found', signatures: [], troubles: [] });
    expect((await phase('none')).denial).toBe('A signature was required, but no signature exists');
  }, 60_000);

  test('lookaside + attachment sources keep distinct locations; simple-signing blobs are counted as non-sigstore', async () => {
    const lookaside: SignatureSource = {
      yields: 'simple-signing',
      async fetch(): Promise<SignatureFetchReport> {
        return {
          signatures: [
            { location: { source: 'lookaside', index: 1, url: 'file:///sigs/signature-1' }, format: 'simple-signing', bytes: new Uint8Array([0xa3, 1]) },
          ],
          troubles: [],
          end: 'not-found',
          notices: [],
          retriedIndices: [],
        };
      },
    };
    const verdict = await phase('none', [lookaside, source]);
    expect(verdict.denial).toBe('A signature was required, but no signature exists (1 non-sigstore signatures, 0 sigstore non-signature attachments)');
    const ok = await phase('valid', [lookaside, source]);
    expect(ok.allowed).toBe(true);
  }, 60_000);
});
