/**
 * The PullImage handler with a stub pull service: it decodes the request into what the use case
 * takes (pod, namespace, credentials, the RPC's log fields) and encodes the warnings as trailers.
 * The log lines of a pull are the use case's observers' (test/unit/pull/pull-log.test.ts).
 */
import { Writable } from 'node:stream';
import type * as grpc from '@grpc/grpc-js';
import { describe, expect, it } from 'vitest';
import { createImageServiceHandlers } from '../../../src/cri/image-service.js';
import type { Verdict } from '../../../src/domain/signature.js';
import type { ImageCatalog } from '../../../src/images/image-catalog.js';
import { createLogger } from '../../../src/log/logger.js';
import { PullLog } from '../../../src/pull/pull-log.js';
import type { PullRequest, PullService } from '../../../src/pull/pull-service.js';

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
      message:
        'signature could not be read, but the policy was satisfied by signature-1 (key C410DBD12BFE86658A3D684094F969598CC10D95): signature-2 (http://sigs.example/signature-2): received unexpected HTTP status: 503 Service Unavailable (HTTP 503)',
      location: { source: 'lookaside', index: 2, url: 'http://sigs.example/signature-2' },
    },
  ],
};

function logLines(): { destination: Writable; lines: () => string[] } {
  const chunks: string[] = [];
  const destination = new Writable({
    write(chunk: Buffer, _encoding, done) {
      chunks.push(chunk.toString());
      done();
    },
  });
  return { destination, lines: () => chunks.join('').split('\n').filter(Boolean) };
}

async function pullImage(
  pulls: Pick<PullService, 'pull'>,
  request: unknown,
  destination: Writable,
): Promise<{ response: unknown; trailers: grpc.Metadata | undefined }> {
  const handlers = createImageServiceHandlers({
    pulls: pulls as PullService,
    catalog: {} as ImageCatalog,
    logger: createLogger({ level: 'info', destination: destination as never }),
    version: 'test',
    clock: () => new Date(0),
    shutdownSignal: new AbortController().signal,
  });
  const call = { request, on: () => undefined };
  return new Promise((resolve, reject) =>
    (handlers.image.PullImage as grpc.handleUnaryCall<unknown, unknown>)(call as never, (err, response, trailers) =>
      err ? reject(err) : resolve({ response, trailers }),
    ),
  );
}

describe('PullImage', () => {
  it("hands the use case the pod, its namespace, the credentials and the RPC's log fields, and answers with the warnings as trailers", async () => {
    const requests: PullRequest[] = [];
    const pulls = {
      pull: async (request: PullRequest) => (requests.push(request), { verdict, manifestDigest: DIGEST, imageId: DIGEST }),
    } as unknown as PullService;
    const { destination } = logLines();
    const { response, trailers } = await pullImage(
      pulls,
      {
        image: { image: IMAGE },
        auth: { username: 'u', password: 'p' },
        sandbox_config: { metadata: { name: 'web-0', namespace: 'shop', uid: 'u-1', attempt: 0 } },
      },
      destination,
    );
    expect(response).toEqual({ image_ref: DIGEST });
    expect(trailers?.get('pullguard-warnings')).toHaveLength(1);
    expect(requests).toHaveLength(1);
    expect(requests[0]).toMatchObject({
      image: IMAGE,
      namespace: 'shop',
      pod: { name: 'web-0', namespace: 'shop', uid: 'u-1' },
      credentials: { username: 'u', password: 'p' },
      logFields: { rpc: 'PullImage', requestId: expect.any(Number), image: IMAGE },
    });
    expect(requests[0]!.signal).toBeInstanceOf(AbortSignal);
  });

  it('names no pod without a pod name, and bounds the image in the log fields', async () => {
    const requests: PullRequest[] = [];
    const pulls = {
      pull: async (request: PullRequest) => (requests.push(request), { verdict: { ...verdict, warnings: [] }, manifestDigest: DIGEST, imageId: DIGEST }),
    } as unknown as PullService;
    const { destination } = logLines();
    const long = `registry.example/${'a'.repeat(2000)}:v1`;
    const { trailers } = await pullImage(pulls, { image: { image: long }, sandbox_config: { metadata: { namespace: 'shop' } } }, destination);
    expect(trailers).toBeUndefined();
    expect(requests[0]).toMatchObject({ image: long, namespace: 'shop' });
    expect(requests[0]).not.toHaveProperty('pod');
    expect(String(requests[0]!.logFields?.['image']).length).toBeLessThan(600);
  });

  it('logs each warning once, with the image named once in the JSON line', async () => {
    // The use case's part, with the handler's log fields: tell the log observer how the pull ended.
    const { destination, lines } = logLines();
    const log = new PullLog(createLogger({ level: 'info', destination: destination as never }));
    const pulls = {
      pull: async (request: PullRequest) => {
        log.pullEnded({
          image: request.image,
          outcome: 'allowed_with_warnings',
          durationSeconds: 0.1,
          verdict,
          manifestDigest: DIGEST as never,
          warnings: verdict.warnings,
          ...(request.logFields !== undefined ? { logFields: request.logFields } : {}),
        });
        return { verdict, manifestDigest: DIGEST, imageId: DIGEST };
      },
    } as unknown as PullService;
    await pullImage(pulls, { image: { image: IMAGE } }, destination);
    const warningLines = lines().filter((l) => l.includes('"warningCode":"PGW001"'));
    expect(warningLines).toHaveLength(1);
    // JSON.parse would keep the last of two keys silently: count them in the raw line.
    expect(warningLines[0]!.split('"image":').length - 1).toBe(1);
    expect(JSON.parse(warningLines[0]!)).toMatchObject({
      image: IMAGE,
      rpc: 'PullImage',
      manifestDigest: DIGEST,
      signatureIndex: 2,
      msg: expect.stringContaining('503 Service Unavailable'),
    });
  });
});
