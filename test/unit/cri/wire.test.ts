/**
 * Wire compatibility with Go clients: requests are hand-encoded field by field with the numbers from
 * k8s.io/cri-api (as grpc-go's generated code would put them on the wire), decoded by the server's
 * deserializer, and responses are encoded by the server and decoded field by field here.
 */
import { describe, expect, it } from 'vitest';
import { criServiceDefinitions } from '../../../src/cri/image-service.js';

/** A minimal protobuf writer: just enough to build messages the way any encoder would. */
class Pb {
  readonly #parts: Buffer[] = [];
  varint(field: number, value: number | bigint): this {
    this.#parts.push(tag(field, 0), varint(BigInt(value)));
    return this;
  }
  bytes(field: number, value: string | Buffer | Pb): this {
    const buf = value instanceof Pb ? value.finish() : Buffer.from(value);
    this.#parts.push(tag(field, 2), varint(BigInt(buf.length)), buf);
    return this;
  }
  finish(): Buffer {
    return Buffer.concat(this.#parts);
  }
}

function varint(value: bigint): Buffer {
  const out: number[] = [];
  let v = value;
  do {
    let byte = Number(v & 0x7fn);
    v >>= 7n;
    if (v > 0n) byte |= 0x80;
    out.push(byte);
  } while (v > 0n);
  return Buffer.from(out);
}

function tag(field: number, wireType: number): Buffer {
  return varint(BigInt((field << 3) | wireType));
}

/** Decodes one level of a message into field number → raw values. */
function fields(buf: Buffer): Map<number, (bigint | Buffer)[]> {
  const out = new Map<number, (bigint | Buffer)[]>();
  let pos = 0;
  const readVarint = (): bigint => {
    let result = 0n;
    let shift = 0n;
    for (;;) {
      const byte = buf[pos++]!;
      result |= BigInt(byte & 0x7f) << shift;
      if ((byte & 0x80) === 0) return result;
      shift += 7n;
    }
  };
  while (pos < buf.length) {
    const key = Number(readVarint());
    const field = key >> 3;
    const wireType = key & 7;
    let value: bigint | Buffer;
    if (wireType === 0) value = readVarint();
    else if (wireType === 2) {
      const len = Number(readVarint());
      value = buf.subarray(pos, pos + len);
      pos += len;
    } else throw new Error(`unexpected wire type ${wireType}`);
    out.set(field, [...(out.get(field) ?? []), value]);
  }
  return out;
}

const definitions = criServiceDefinitions();

describe('CRI runtime.v1 wire format', () => {
  it('decodes a PullImageRequest encoded by field number, including 1.28+ ImageSpec fields and the sandbox namespace', () => {
    const spec = new Pb()
      .bytes(1, 'nginx:1.25')
      .bytes(2, new Pb().bytes(1, 'team').bytes(2, 'payments'))
      .bytes(18, 'nginx')
      .bytes(19, 'runc')
      .bytes(20, 'sha256:abc');
    const auth = new Pb().bytes(1, 'alice').bytes(2, 's3cret').bytes(4, 'registry.example').bytes(5, 'idtok').bytes(6, 'regtok');
    const metadata = new Pb().bytes(1, 'web-0').bytes(2, 'uid-1').bytes(3, 'prod').varint(4, 2);
    const sandbox = new Pb()
      .bytes(1, metadata)
      .bytes(2, 'web-0')
      .bytes(6, new Pb().bytes(1, 'io.kubernetes.pod.name').bytes(2, 'web-0'))
      .bytes(8, new Pb().bytes(1, '/kubepods').bytes(2, new Pb().varint(6, 1)));
    const wire = new Pb().bytes(1, spec).bytes(2, auth).bytes(3, sandbox).finish();

    const decoded = definitions.image.PullImage!.requestDeserialize(wire) as Record<string, any>;
    expect(decoded.image).toMatchObject({
      image: 'nginx:1.25',
      annotations: { team: 'payments' },
      user_specified_image: 'nginx',
      runtime_handler: 'runc',
      image_ref: 'sha256:abc',
    });
    expect(decoded.auth).toMatchObject({
      username: 'alice',
      password: 's3cret',
      server_address: 'registry.example',
      identity_token: 'idtok',
      registry_token: 'regtok',
    });
    expect(decoded.sandbox_config.metadata).toMatchObject({ name: 'web-0', uid: 'uid-1', namespace: 'prod', attempt: 2 });
    expect(decoded.sandbox_config.labels).toEqual({ 'io.kubernetes.pod.name': 'web-0' });
    expect(decoded.sandbox_config.linux.cgroup_parent).toBe('/kubepods');
    expect(decoded.sandbox_config.linux.security_context.privileged).toBe(true);
  });

  it('decodes ImageStatusRequest{image=1, verbose=2} and ListImagesRequest{filter=1{image=1}}', () => {
    const status = definitions.image.ImageStatus!.requestDeserialize(new Pb().bytes(1, new Pb().bytes(1, 'busybox')).varint(2, 1).finish()) as Record<
      string,
      any
    >;
    expect(status).toMatchObject({ image: { image: 'busybox' }, verbose: true });
    const list = definitions.image.ListImages!.requestDeserialize(new Pb().bytes(1, new Pb().bytes(1, new Pb().bytes(1, 'busybox'))).finish()) as Record<
      string,
      any
    >;
    expect(list.filter.image.image).toBe('busybox');
  });

  it('encodes Image with the cri-api field numbers (id=1, repo_tags=2, repo_digests=3, size=4, uid=5, username=6, spec=7, pinned=8)', () => {
    const wire = definitions.image.ImageStatus!.responseSerialize({
      image: {
        id: `sha256:${'a'.repeat(64)}`,
        repo_tags: ['docker.io/library/busybox:latest'],
        repo_digests: [`docker.io/library/busybox@sha256:${'b'.repeat(64)}`],
        size: '1234567890123',
        uid: { value: '1000' },
        username: '',
        spec: { image: `sha256:${'a'.repeat(64)}`, annotations: {} },
        pinned: true,
      },
      info: { info: '{}' },
    });
    const top = fields(wire);
    const image = fields(top.get(1)![0] as Buffer);
    expect((image.get(1)![0] as Buffer).toString()).toBe(`sha256:${'a'.repeat(64)}`);
    expect((image.get(2)![0] as Buffer).toString()).toBe('docker.io/library/busybox:latest');
    expect((image.get(3)![0] as Buffer).toString()).toContain('@sha256:');
    expect(image.get(4)![0]).toBe(1234567890123n);
    expect(fields(image.get(5)![0] as Buffer).get(1)![0]).toBe(1000n);
    expect(fields(image.get(7)![0] as Buffer).has(1)).toBe(true);
    expect(image.get(8)![0]).toBe(1n);
    const info = fields(top.get(2)![0] as Buffer);
    expect((info.get(1)![0] as Buffer).toString()).toBe('info');
  });

  it('encodes PullImageResponse.image_ref as field 1 and ImageFsInfoResponse with timestamp=1, fs_id=2, used_bytes=3, inodes_used=4', () => {
    expect(fields(definitions.image.PullImage!.responseSerialize({ image_ref: 'sha256:x' })).get(1)![0]).toEqual(Buffer.from('sha256:x'));
    const wire = definitions.image.ImageFsInfo!.responseSerialize({
      image_filesystems: [
        { timestamp: '1700000000000000000', fs_id: { mountpoint: '/var/lib/pullguard' }, used_bytes: { value: '42' }, inodes_used: { value: '7' } },
      ],
      container_filesystems: [],
    });
    const usage = fields(fields(wire).get(1)![0] as Buffer);
    expect(usage.get(1)![0]).toBe(1700000000000000000n);
    expect((fields(usage.get(2)![0] as Buffer).get(1)![0] as Buffer).toString()).toBe('/var/lib/pullguard');
    expect(fields(usage.get(3)![0] as Buffer).get(1)![0]).toBe(42n);
    expect(fields(usage.get(4)![0] as Buffer).get(1)![0]).toBe(7n);
  });

  it('uses the full method paths kubelet calls', () => {
    expect(definitions.image.PullImage!.path).toBe('/runtime.v1.ImageService/PullImage');
    expect(definitions.image.StreamImages!.responseStream).toBe(true);
    expect(definitions.runtime.Version!.path).toBe('/runtime.v1.RuntimeService/Version');
  });
});
