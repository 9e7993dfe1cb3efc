/**
 * sigstoreSigned through the running server: cosign-layout attachments (`sha256-<hex>.sig`) pushed
 * to the real registry, registries.d `use-sigstore-attachments: true`, a sigstoreSigned policy with
 * a PEM public key — PullImage over the socket. (Signatures made by the real cosign:
 * cosign-interop.test.ts.)
 */
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { digestOf, pushAttachment, sigstoreKey, signedLayer } from '../../fixtures/sigstore/cosign.js';
import { buildOciImage, type BuiltImage } from '../../helpers/oci-image.js';
import { MAIN, startPullguard, type RunningPullguard } from '../../helpers/pullguard-server.js';
import { pushImage, startRegistry, type StartedRegistry } from '../../helpers/registry.js';

const execFileAsync = promisify(execFile);
const cosign = sigstoreKey('cosign');
const other = sigstoreKey('other');

let work: string;
let registry: StartedRegistry;
let image: BuiltImage;
let pullguard: RunningPullguard;

async function push(repo: string): Promise<void> {
  await pushImage(image.dir, `${repo}:v1`, registry, { layoutTag: 'v1' });
}

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'pullguard-sigstore-e2e-'));
  registry = await startRegistry();
  image = await buildOciImage(join(work, 'img'), { tag: 'v1', layers: [{ size: 3_000 }], seed: 101 });
  const policy = join(work, 'policy.json');
  await writeFile(policy, JSON.stringify({ default: [{ type: 'sigstoreSigned', keyPath: cosign.publicPath, signedIdentity: { type: 'matchRepository' } }] }));
  const registriesD = join(work, 'registries.d');
  await mkdir(registriesD);
  await writeFile(join(registriesD, 'sigstore.yaml'), `docker:\n  ${registry.host}:\n    use-sigstore-attachments: true\n`);
  pullguard = await startPullguard({ args: ['--signature-policy', policy, '--registries-d', registriesD, '--insecure-registry', registry.host] });
}, 120_000);

afterAll(async () => {
  await pullguard?.stop();
  await registry?.stop();
  await rm(work, { recursive: true, force: true });
});

const pull = (repo: string, warnings: string[] = []): Promise<{ image_ref: string }> =>
  pullguard.client.call(
    'PullImage',
    { image: { image: `${registry.host}/${repo}:v1` } },
    { onTrailers: (md) => warnings.push(...md.get('pullguard-warnings').map(String)) },
  );

async function corrupt(digest: string): Promise<void> {
  const path = join(registry.dataDir, 'docker/registry/v2/blobs/sha256', digest.slice(7, 9), digest.slice(7), 'data');
  const bytes = await readFile(path);
  bytes[0] = (bytes[0] ?? 0) ^ 0xff;
  await writeFile(path, bytes);
}

describe('sigstoreSigned with cosign attachments, through the server', () => {
  it('accepts an image signed by the trusted key and records the signature', async () => {
    await push('signed');
    await pushAttachment(registry.url, 'signed', image.manifestDigest, [
      signedLayer(cosign, { digest: image.manifestDigest, reference: `${registry.host}/signed` }),
    ]);
    expect((await pull('signed')).image_ref).toBe(image.configDigest);
    const status = await pullguard.client.call<{ info: Record<string, string> }>('ImageStatus', {
      image: { image: `${registry.host}/signed:v1` },
      verbose: true,
    });
    const record = JSON.parse(status.info['verification']!) as { requirements: { type: string; satisfiedBy?: { location: { source: string } } }[] };
    expect(record.requirements[0]).toMatchObject({ type: 'sigstoreSigned', satisfiedBy: { location: { source: 'sigstore-attachment' } } });
  });

  it('accepts a valid attachment beside an unreadable one, with a warning', async () => {
    await push('partial');
    const broken = signedLayer(cosign, { digest: image.manifestDigest, reference: `${registry.host}/partial`, optional: { creator: 'broken copy' } });
    const valid = signedLayer(cosign, { digest: image.manifestDigest, reference: `${registry.host}/partial` });
    await pushAttachment(registry.url, 'partial', image.manifestDigest, [broken, valid]);
    await corrupt(digestOf(broken.bytes));
    const warnings: string[] = [];
    expect((await pull('partial', warnings)).image_ref).toBe(image.configDigest);
    expect(warnings.join('\n')).toMatch(/PGW001 .*sigstore-attachment-1.*digest mismatch/);
  });

  it('denies an image signed only by another key, naming the rejection; and one with no attachment', async () => {
    await push('forged');
    await pushAttachment(registry.url, 'forged', image.manifestDigest, [
      signedLayer(other, { digest: image.manifestDigest, reference: `${registry.host}/forged` }),
    ]);
    const forged = (await pull('forged').catch((e: grpc.ServiceError) => e)) as grpc.ServiceError;
    expect(forged.details).toMatch(/^SignatureValidationFailed: Source image rejected: cryptographic signature verification failed/);
    await push('bare');
    const bare = (await pull('bare').catch((e: grpc.ServiceError) => e)) as grpc.ServiceError;
    expect(bare.details).toBe('SignatureValidationFailed: Source image rejected: A signature was required, but no signature exists');
  });

  it('verify re-checks the stored sigstore signature offline', async () => {
    await pullguard.stop({ keepState: true });
    const result = await execFileAsync(process.execPath, [
      MAIN,
      'verify',
      `${registry.host}/signed:v1`,
      '--state-dir',
      pullguard.stateDir,
      '--signature-policy',
      join(work, 'policy.json'),
    ]).catch((e: { stdout: string; stderr: string }) => ({ stdout: e.stdout + e.stderr }));
    expect(result.stdout).toMatch(/^OK: /);
  });
});
