/**
 * HTTPS registries with a private CA, as on most real nodes: trusted through a certs.d directory
 * (`--certs-dir`, `<dir>/<host:port>/ca.crt`, as containers/image reads it), refused without it.
 */
import { copyFile, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildOciImage, type BuiltImage } from '../helpers/oci-image.js';
import { startPullguard } from '../helpers/pullguard-server.js';
import { pushImage, startRegistry, type StartedRegistry } from '../helpers/registry.js';

let work: string;
let registry: StartedRegistry;
let image: BuiltImage;
let policy: string;

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'pullguard-tls-'));
  registry = await startRegistry({ tls: true });
  image = await buildOciImage(join(work, 'img'), { tag: 'v1', layers: [{ size: 5_000 }], seed: 81 });
  await pushImage(image.dir, 'secure:v1', registry);
  policy = join(work, 'policy.json');
  await writeFile(policy, JSON.stringify({ default: [{ type: 'insecureAcceptAnything' }] }));
}, 120_000);

afterAll(async () => {
  await registry?.stop();
  await rm(work, { recursive: true, force: true });
});

describe('HTTPS registry with a private CA', () => {
  it('pulls when the CA is in --certs-dir/<host:port>/', async () => {
    const certsDir = join(work, 'certs.d');
    await mkdir(join(certsDir, registry.host), { recursive: true });
    await copyFile(registry.caCertPath!, join(certsDir, registry.host, 'ca.crt'));
    const server = await startPullguard({ args: ['--signature-policy', policy, '--certs-dir', certsDir] });
    try {
      const { image_ref } = await server.client.call<{ image_ref: string }>('PullImage', { image: { image: `${registry.host}/secure:v1` } });
      expect(image_ref).toBe(image.configDigest);
    } finally {
      await server.stop();
    }
  });

  it('refuses a certificate it cannot verify, saying so', async () => {
    const server = await startPullguard({ args: ['--signature-policy', policy] });
    try {
      const err = (await server.client
        .call('PullImage', { image: { image: `${registry.host}/secure:v1` } })
        .catch((e: grpc.ServiceError) => e)) as grpc.ServiceError;
      expect(err.code).toBe(2);
      expect(err.details).toMatch(/^TLS certificate of registry .* could not be verified \([A-Z_]+\); trust its CA with --certs-dir/);
      expect(err.details).toContain(registry.host);
    } finally {
      await server.stop();
    }
  });
});
