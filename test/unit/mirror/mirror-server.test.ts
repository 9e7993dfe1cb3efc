/**
 * The local mirror over a real store: the distribution API subset a runtime uses to pull by digest,
 * and the rule that only what a verified record references is served, under its repositories.
 */
import { createHash } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../../../src/log/logger.js';
import { parseMirrorAddress, startMirror, type RunningMirror } from '../../../src/mirror/mirror-server.js';
import { decideRange } from '../../../src/mirror/http-range.js';
import { InFlightImages } from '../../../src/pull/in-flight-images.js';
import type { Digest } from '../../../src/domain/digest.js';
import { openStore, type OpenedStore } from '../../../src/store/open-store.js';
import { commitBlob, storeImageRecord } from '../../helpers/store-records.js';
import type { ImageRecord } from '../../../src/domain/image-record.js';

let dir: string;
let store: OpenedStore;
let mirror: RunningMirror;
let record: ImageRecord;
let strayDigest: string;
let layerBytes: number;
const inFlight = new InFlightImages();

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'pullguard-mirror-'));
  store = await openStore(join(dir, 'store'));
  record = await storeImageRecord(store.blobs, { repoTags: ['registry.example:5000/team/app:v1'], layerSizes: [5000, 300] });
  await store.images.put(record);
  // In the store, referenced by no record: must never be served.
  strayDigest = await commitBlob(store.blobs, Buffer.from('not part of any verified image'));
  layerBytes = record.layers[0]!.size;
  mirror = await startMirror({ address: '127.0.0.1:0', blobs: store.blobs, index: store.images, inFlight, logger: createLogger({ level: 'silent' }) });
});

afterAll(async () => {
  await mirror?.close();
  await store?.close();
  await rm(dir, { recursive: true, force: true });
});

const ns = '?ns=registry.example:5000';

describe('local mirror', () => {
  it('holds a blob of an allowed image still being fetched until it is committed, and 404s it if the pull ends without it', async () => {
    const early = Buffer.from('layer of an allowed image, committed while the runtime waits');
    const never = Buffer.from('layer the pull never gets');
    const digestOf = (b: Buffer): Digest => `sha256:${createHash('sha256').update(b).digest('hex')}` as Digest;
    const manifest = await commitBlob(store.blobs, Buffer.from('{"schemaVersion":2}'));
    const entry = inFlight.add({
      repository: 'registry.example:5000/team/early',
      manifests: new Map([[manifest as Digest, 'application/vnd.oci.image.manifest.v1+json']]),
      blobs: new Set([digestOf(early), digestOf(never)]),
    });
    // The manifest is stored before the entry exists: served at once.
    expect((await fetch(`${mirror.url}/v2/team/early/manifests/${manifest}${ns}`)).status).toBe(200);
    let answered = false;
    const waiting = fetch(`${mirror.url}/v2/team/early/blobs/${digestOf(early)}${ns}`).then(async (res) => {
      answered = true;
      return { status: res.status, body: Buffer.from(await res.arrayBuffer()) };
    });
    const neverWaiting = fetch(`${mirror.url}/v2/team/early/blobs/${digestOf(never)}${ns}`);
    await new Promise((r) => setTimeout(r, 100));
    expect(answered).toBe(false); // not committed yet: nothing is sent
    await commitBlob(store.blobs, early);
    entry.committed(digestOf(early));
    expect(await waiting).toEqual({ status: 200, body: early });
    entry.end();
    expect((await neverWaiting).status).toBe(404);
    // Once the entry is gone, its repository is unknown again.
    expect((await fetch(`${mirror.url}/v2/team/early/blobs/${digestOf(early)}${ns}`)).status).toBe(404);

    // An image in flight in a repository that already has records: served beside them while in
    // flight, and gone with the entry (the cached allow set of the records is never changed).
    const extraManifest = await commitBlob(store.blobs, Buffer.from('{"schemaVersion":2,"extra":true}'));
    const again = inFlight.add({
      repository: 'registry.example:5000/team/app',
      manifests: new Map([[extraManifest as Digest, 'application/vnd.oci.image.manifest.v1+json']]),
      blobs: new Set(),
    });
    expect((await fetch(`${mirror.url}/v2/team/app/manifests/${extraManifest}${ns}`)).status).toBe(200);
    expect((await fetch(`${mirror.url}/v2/team/app/manifests/${record.manifestDigest}${ns}`)).status).toBe(200);
    again.end();
    expect((await fetch(`${mirror.url}/v2/team/app/manifests/${extraManifest}${ns}`)).status).toBe(404);
    expect((await fetch(`${mirror.url}/v2/team/app/manifests/${record.manifestDigest}${ns}`)).status).toBe(200);
  });

  it('binds loopback only', async () => {
    expect(mirror.host).toMatch(/^127\.0\.0\.1:\d+$/);
    expect(() => parseMirrorAddress('0.0.0.0:5050')).toThrow(/not a loopback address/);
    expect(() => parseMirrorAddress('10.1.2.3:5050')).toThrow(expect.objectContaining({ code: 'INVALID_CONFIG' }));
    expect(parseMirrorAddress('[::1]:5050')).toEqual({ hostname: '::1', port: 5050 });
  });

  it('answers /v2/ with the API version header', async () => {
    const res = await fetch(`${mirror.url}/v2/`);
    expect(res.status).toBe(200);
    expect(res.headers.get('docker-distribution-api-version')).toBe('registry/2.0');
  });

  it('serves a verified manifest by digest with its media type, digest and length (GET and HEAD)', async () => {
    for (const method of ['GET', 'HEAD']) {
      const res = await fetch(`${mirror.url}/v2/team/app/manifests/${record.manifestDigest}${ns}`, { method });
      expect(res.status).toBe(200);
      expect(res.headers.get('content-type')).toBe(record.manifestMediaType);
      expect(res.headers.get('docker-content-digest')).toBe(record.manifestDigest);
      const body = Buffer.from(await res.arrayBuffer());
      const size = (await store.blobs.stat(record.manifestDigest))!.size;
      expect(res.headers.get('content-length')).toBe(String(size));
      expect(body.length).toBe(method === 'GET' ? size : 0);
    }
  });

  it('serves layers and config, whole and by Range', async () => {
    const layer = record.layers[0]!.digest;
    const whole = await fetch(`${mirror.url}/v2/team/app/blobs/${layer}${ns}`);
    expect(whole.status).toBe(200);
    expect(whole.headers.get('content-type')).toBe('application/octet-stream');
    const bytes = Buffer.from(await whole.arrayBuffer());
    expect(bytes.length).toBe(layerBytes);

    const part = await fetch(`${mirror.url}/v2/team/app/blobs/${layer}${ns}`, { headers: { Range: 'bytes=100-199' } });
    expect(part.status).toBe(206);
    expect(part.headers.get('content-range')).toBe(`bytes 100-199/${layerBytes}`);
    expect(part.headers.get('content-length')).toBe('100');
    expect(Buffer.from(await part.arrayBuffer())).toEqual(bytes.subarray(100, 200));

    const open = await fetch(`${mirror.url}/v2/team/app/blobs/${layer}${ns}`, { headers: { Range: `bytes=${layerBytes - 10}-` } });
    expect(open.status).toBe(206);
    expect(Buffer.from(await open.arrayBuffer())).toEqual(bytes.subarray(layerBytes - 10));

    const beyond = await fetch(`${mirror.url}/v2/team/app/blobs/${layer}${ns}`, { headers: { Range: `bytes=${layerBytes}-` } });
    expect(beyond.status).toBe(416);
    expect(beyond.headers.get('content-range')).toBe(`bytes */${layerBytes}`);
    await beyond.arrayBuffer();

    // Without `ns`, a path that only one registry's verified repository has is enough.
    const config = await fetch(`${mirror.url}/v2/team/app/blobs/${record.configDigest}`);
    expect(config.status).toBe(200);
    await config.arrayBuffer();
  });

  it('serves nothing a verified record does not reference, and nothing under other repositories', async () => {
    const expectError = async (url: string, status: number, code: string): Promise<void> => {
      const res = await fetch(url);
      expect(res.status).toBe(status);
      expect(((await res.json()) as { errors: { code: string }[] }).errors[0]?.code).toBe(code);
    };
    // The blob file exists, but no record references it.
    await expectError(`${mirror.url}/v2/team/app/blobs/${strayDigest}${ns}`, 404, 'BLOB_UNKNOWN');
    // A verified layer asked for under another repository, or another registry.
    await expectError(`${mirror.url}/v2/team/other/blobs/${record.layers[0]!.digest}${ns}`, 404, 'BLOB_UNKNOWN');
    await expectError(`${mirror.url}/v2/team/app/blobs/${record.layers[0]!.digest}?ns=docker.io`, 404, 'BLOB_UNKNOWN');
    // Manifests by tag are never served: the runtime must ask for the verified digest.
    await expectError(`${mirror.url}/v2/team/app/manifests/v1${ns}`, 404, 'MANIFEST_UNKNOWN');
    await expectError(`${mirror.url}/v2/team/app/manifests/${strayDigest}${ns}`, 404, 'MANIFEST_UNKNOWN');
  });

  it('refuses writes with 405 UNSUPPORTED', async () => {
    for (const [method, path] of [
      ['POST', '/v2/team/app/blobs/uploads/'],
      ['PUT', `/v2/team/app/manifests/v2`],
      ['DELETE', `/v2/team/app/manifests/${record.manifestDigest}`],
    ] as const) {
      const res = await fetch(`${mirror.url}${path}`, { method });
      expect(res.status).toBe(405);
      expect(((await res.json()) as { errors: { code: string }[] }).errors[0]?.code).toBe('UNSUPPORTED');
    }
  });

  it('stops serving an image as soon as its record is removed', async () => {
    const extra = await storeImageRecord(store.blobs, { repoTags: ['registry.example:5000/team/gone:v1'], layerSizes: [64] });
    await store.images.put(extra);
    const url = `${mirror.url}/v2/team/gone/blobs/${extra.layers[0]!.digest}${ns}`;
    expect((await fetch(url)).status).toBe(200);
    await store.images.remove(extra.id);
    expect((await fetch(url)).status).toBe(404);
  });
});

describe('decideRange', () => {
  it('handles the single-range forms', () => {
    expect(decideRange(undefined, 10)).toEqual({ kind: 'full' });
    expect(decideRange('bytes=0-4', 10)).toEqual({ kind: 'partial', start: 0, end: 4 });
    expect(decideRange('bytes=5-', 10)).toEqual({ kind: 'partial', start: 5, end: 9 });
    expect(decideRange('bytes=-3', 10)).toEqual({ kind: 'partial', start: 7, end: 9 });
    expect(decideRange('bytes=8-100', 10)).toEqual({ kind: 'partial', start: 8, end: 9 });
    expect(decideRange('bytes=10-', 10)).toEqual({ kind: 'unsatisfiable' });
    expect(decideRange('bytes=0-1,4-5', 10)).toEqual({ kind: 'full' });
    expect(decideRange('bytes=5-2', 10)).toEqual({ kind: 'full' });
  });
});
