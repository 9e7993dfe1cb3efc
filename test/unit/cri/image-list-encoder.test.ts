import { describe, expect, it } from 'vitest';
import { ImageListEncoder } from '../../../src/cri/image-list-encoder.js';
import { criServiceDefinitions, toCriImage } from '../../../src/cri/image-service.js';
import type { ImageRecord } from '../../../src/domain/image-record.js';

const list = criServiceDefinitions().image.ListImages!;

function record(i: number): ImageRecord {
  const hex = i.toString(16).padStart(64, '0');
  return Object.freeze({
    id: `sha256:${hex}`,
    repoTags: [`registry.example/app:${i}`],
    repoDigests: [`registry.example/app@sha256:${hex}`],
    manifestDigest: `sha256:${hex}`,
    manifestMediaType: 'application/vnd.oci.image.manifest.v1+json',
    topDigest: `sha256:${hex}`,
    topMediaType: 'application/vnd.oci.image.manifest.v1+json',
    configDigest: `sha256:${hex}`,
    layers: [],
    size: 1000 + i,
    ...(i % 2 === 0 ? { user: String(i) } : { user: 'nobody' }),
    pulledAt: '2026-01-01T00:00:00.000Z',
  }) as unknown as ImageRecord;
}

describe('ImageListEncoder', () => {
  it('produces exactly the bytes of encoding the whole response at once', () => {
    const records = Object.freeze([record(1), record(2), record(3)]);
    const encoder = new ImageListEncoder((r) => list.responseSerialize({ images: [toCriImage(r)] }));
    const encoded = encoder.encode(records);
    expect(encoded.equals(list.responseSerialize({ images: records.map(toCriImage) }))).toBe(true);
    expect((list.responseDeserialize(encoded) as { images: { id: string }[] }).images.map((i) => i.id)).toEqual(records.map((r) => r.id));
  });

  it('reuses the encoding of an unchanged list and of unchanged records', () => {
    let calls = 0;
    const encoder = new ImageListEncoder((r) => {
      calls += 1;
      return list.responseSerialize({ images: [toCriImage(r)] });
    });
    const a = record(1);
    const b = record(2);
    const first = Object.freeze([a, b]);
    expect(encoder.encode(first)).toBe(encoder.encode(first));
    expect(calls).toBe(2);
    encoder.encode(Object.freeze([a, b, record(3)]));
    expect(calls).toBe(3);
  });

  it('passes an empty list as an empty message', () => {
    expect(new ImageListEncoder(() => Buffer.alloc(0)).encode(Object.freeze([])).length).toBe(0);
  });
});
