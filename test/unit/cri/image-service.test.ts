/**
 * The PullImage handler's log lines, with a stub pull service: one JSON key per field.
 */
import { Writable } from 'node:stream';
import type * as grpc from '@grpc/grpc-js';
import { describe, expect, it } from 'vitest';
import { createImageServiceHandlers } from '../../../src/cri/image-service.js';
import type { Verdict } from '../../../src/domain/signature.js';
import type { ImageCatalog } from '../../../src/images/image-catalog.js';
import { createLogger } from '../../../src/log/logger.js';
import type { PullService } from '../../../src/pull/pull-service.js';

const IMAGE = 'registry.example/app:v1';
const DIGEST = `sha256:${'d'.repeat(64)}`;

const verdict: Verdict = {
  allowed: true,
  scope: { policyFile: '/etc/containers/policy.json', scope: 'registry.example' },
  requirements: [],
  troubles: [],
  warnings: [
    {
      code: 'PGW001',
      message: 'signature could not be read, but the policy was satisfied by other signatures: signature-2 (http://sigs.example/signature-2): received unexpected HTTP status: 503 Service Unavailable (HTTP 503)',
      location: { source: 'lookaside', index: 2, url: 'http://sigs.example/signature-2' },
    },
  ],
};

describe('PullImage', () => {
  it('logs each warning once, with the image named once in the JSON line', async () => {
    const chunks: string[] = [];
    const destination = new Writable({
      write(chunk: Buffer, _encoding, done) {
        chunks.push(chunk.toString());
        done();
      },
    });
    const pulls = { pull: async () => ({ verdict, manifestDigest: DIGEST, imageId: DIGEST }) } as unknown as PullService;
    const handlers = createImageServiceHandlers({
      pulls,
      catalog: {} as ImageCatalog,
      logger: createLogger({ level: 'info', destination: destination as never }),
      version: 'test',
      clock: () => new Date(0),
      shutdownSignal: new AbortController().signal,
    });
    const call = { request: { image: { image: IMAGE } }, on: () => undefined };
    await new Promise<void>((resolve, reject) =>
      (handlers.image.PullImage as grpc.handleUnaryCall<unknown, unknown>)(call as never, (err) => (err ? reject(err) : resolve())),
    );
    const lines = chunks.join('').split('\n').filter(Boolean);
    const warningLines = lines.filter((l) => l.includes('"warningCode":"PGW001"'));
    expect(warningLines).toHaveLength(1);
    // JSON.parse would keep the last of two keys silently: count them in the raw line.
    expect(warningLines[0]!.split('"image":').length - 1).toBe(1);
    expect(JSON.parse(warningLines[0]!)).toMatchObject({ image: IMAGE, manifestDigest: DIGEST, signatureIndex: 2, msg: expect.stringContaining('503 Service Unavailable') });
  });
});
