/**
 * Registry answers the real registry cannot give (other vendors' "manifest unknown" dialects, wrong
 * MIME types, failing layers), from the fault-injecting distribution server.
 */
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseRegistriesD } from '../../../src/config/registries-d.js';
import { parseReference } from '../../../src/domain/reference.js';
import type { ResolvedImage } from '../../../src/pull/ports.js';
import { createRegistryClient, type RegistryImageSource } from '../../../src/registry/client.js';
import { createSigstoreAttachmentSource } from '../../../src/sources/attachment-source.js';
import { attachmentManifest, digestOf, signedLayer, sigstoreKey } from '../../fixtures/sigstore/cosign.js';
import { startFaultRegistry, type FaultRegistry } from '../../helpers/fault-registry.js';
import { buildOciImage, type BuiltImage } from '../../helpers/oci-image.js';

let dir: string;
let fr: FaultRegistry;
let img: BuiltImage;
let client: RegistryImageSource;
let image: ResolvedImage;
let tag: string;
const source = () =>
  createSigstoreAttachmentSource({
    registriesD: parseRegistriesD([{ path: '/r.yaml', text: `docker:\n  ${fr.host}:\n    use-sigstore-attachments: true\n` }], { defaultLookaside: null }),
    registry: client,
  });

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'pullguard-sigstore-faults-'));
  img = await buildOciImage(dir, { tag: 'v1', layers: [{ size: 64 }] });
  fr = await startFaultRegistry();
  fr.addImage('app', 'v1', img);
  client = createRegistryClient({ platform: { os: 'linux', architecture: 'amd64' }, insecureRegistries: [fr.host], retry: { maxAttempts: 1 } });
  image = await client.resolve(parseReference(`${fr.host}/app:v1`), {});
  tag = `${img.manifestDigest.replace(':', '-')}.sig`;
});
afterAll(async () => {
  await client?.close();
  await fr?.stop();
  await rm(dir, { recursive: true, force: true });
});

describe('attachment manifest answers', () => {
  test.each([
    ['distribution MANIFEST_UNKNOWN', 404, '{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}'],
    ['registry.redhat.io: UNKNOWN "Not Found"', 404, '{"errors":[{"code":"UNKNOWN","message":"Not Found"}]}'],
    [
      'Harbor: an unknown code (decoded as UNKNOWN) whose message contains "not found"',
      404,
      '{"errors":[{"code":"NOT_FOUND","message":"artifact app:sha256-x.sig not found"}]}',
    ],
    ['404 with a non-JSON body', 404, '<html>404 page not found</html>'],
    ['404 with JSON that is no error list', 404, '{}'],
  ])('%s → no attachments', async (_name, status, body) => {
    fr.fault(`app:${tag}`, { kind: 'status', status, body });
    expect(await source().fetch(image, {})).toMatchObject({ end: 'not-found', signatures: [], troubles: [] });
  });

  test.each([
    [
      '404 NAME_UNKNOWN',
      404,
      '{"errors":[{"code":"NAME_UNKNOWN","message":"repository name not known to registry"}]}',
      'name unknown: repository name not known to registry',
    ],
    [
      '403 DENIED',
      403,
      '{"errors":[{"code":"DENIED","message":"requested access to the resource is denied"}]}',
      'denied: requested access to the resource is denied',
    ],
    ['500 after retries', 500, '{"errors":[{"code":"UNKNOWN","message":"boom"}]}', 'unavailable'],
  ])('%s → a trouble at index 0, never a throw', async (_name, status, body, text) => {
    fr.fault(`app:${tag}`, { kind: 'status', status, body });
    const report = await source().fetch(image, {});
    expect(report.signatures).toEqual([]);
    expect(report.troubles).toEqual([
      expect.objectContaining({ location: expect.objectContaining({ source: 'sigstore-attachment', index: 0 }), httpStatus: status }),
    ]);
    expect(report.troubles[0]?.message).toContain(`reading manifest ${tag} in ${fr.host}/app: `);
    expect(report.troubles[0]?.message).toContain(text);
  });

  test('a Docker schema2 attachment manifest: upstream MIME type trouble', async () => {
    const { bytes } = attachmentManifest([]);
    fr.addManifest('mime', tag, bytes, 'application/vnd.docker.distribution.manifest.v2+json');
    fr.addImage('mime', 'v1', img);
    const mimeImage = await client.resolve(parseReference(`${fr.host}/mime:v1`), {});
    const report = await source().fetch(mimeImage, {});
    expect(report.troubles[0]?.message).toBe(
      `unexpected MIME type for sigstore attachment manifest ${fr.host}/mime:${tag}: "application/vnd.docker.distribution.manifest.v2+json"`,
    );
  });

  test('each unreadable layer is its own trouble (1-based index); readable layers still arrive', async () => {
    const key = sigstoreKey('cosign');
    const layers = [1, 2, 3].map((n) => signedLayer(key, { digest: img.manifestDigest, reference: `${fr.host}/layers`, optional: { n } }));
    const { bytes, config } = attachmentManifest(layers);
    fr.addBlob(config);
    for (const l of layers) fr.addBlob(l.bytes);
    fr.addManifest('layers', tag, bytes, 'application/vnd.oci.image.manifest.v1+json');
    fr.addImage('layers', 'v1', img);
    const layersImage = await client.resolve(parseReference(`${fr.host}/layers:v1`), {});
    fr.fault(digestOf(layers[0]!.bytes), { kind: 'corrupt' });
    fr.fault(digestOf(layers[2]!.bytes), { kind: 'status', status: 500 });
    const report = await source().fetch(layersImage, {});
    expect(report.signatures.map((s) => [s.location.index, s.format, s.untrustedMimeType])).toEqual([
      [2, 'sigstore', 'application/vnd.dev.cosign.simplesigning.v1+json'],
    ]);
    expect(report.signatures[0]?.untrustedAnnotations?.['dev.cosignproject.cosign/signature']).toBe(
      layers[1]!.annotations['dev.cosignproject.cosign/signature'],
    );
    expect(report.troubles.map((t) => [t.location.index, t.kind])).toEqual([
      [1, 'io'],
      [3, 'http-status'],
    ]);
    expect(report.troubles[0]?.message).toMatch(new RegExp(`^digest mismatch, expected "${digestOf(layers[0]!.bytes)}", got "sha256:[0-9a-f]{64}"$`));
  });

  test('attachments are not read when registries.d does not enable them', async () => {
    const off = createSigstoreAttachmentSource({ registriesD: parseRegistriesD([], { defaultLookaside: null }), registry: client });
    const before = fr.requests.length;
    expect(await off.fetch(image, {})).toMatchObject({ end: 'not-configured', signatures: [], troubles: [] });
    expect(fr.requests.length).toBe(before);
  });

  test('caller cancellation throws CANCELLED', async () => {
    const controller = new AbortController();
    controller.abort();
    await expect(source().fetch(image, { signal: controller.signal })).rejects.toMatchObject({ code: 'CANCELLED' });
  });
});
