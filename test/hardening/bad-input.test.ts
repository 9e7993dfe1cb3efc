/**
 * Bad input, two ways. (1) Property-based: every parser that sees bytes from outside (image names,
 * signature blobs and payloads, policy.json, registries.d, registries.conf, auth.json, manifests)
 * either returns or throws a coded PullguardError — never a TypeError, a RangeError or a library's
 * own error. Inputs are random text, random JSON/YAML shaped like the real format, and mutations
 * (cuts, insertions, byte flips) of valid documents. (2) Through the real server: oversized
 * requests, raw garbage instead of protobuf, hostile image names — refused with a status, the
 * server keeps serving, and nothing is created on disk.
 */
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseRegistriesD } from '../../src/config/registries-d.js';
import { parseStrictJson } from '../../src/domain/strict-json.js';
import { formatReference, parseReference } from '../../src/domain/reference.js';
import { parsePolicy } from '../../src/policy/parse-policy.js';
import { parseAuthFile } from '../../src/registry/auth-file.js';
import { parseManifest } from '../../src/registry/manifest.js';
import { parseRegistriesConf } from '../../src/registry/registries-conf.js';
import { loadGpgKeys } from '../../src/signature/gpg-keys.js';
import { parseUntrustedPayload, verifySimpleSigning } from '../../src/signature/simple-signing.js';
import { sniffSignatureFormat } from '../../src/signature/sniff.js';
import { keyFixture, MANIFEST_DIGEST, signatureFixture } from '../fixtures/signatures/fixtures.js';
import { startPullguard, type RunningPullguard } from '../helpers/pullguard-server.js';
import { expectCodedOrOk, figure, snapshotTree, suiteSeed } from './fuzz-support.js';

const SEED = suiteSeed('bad-input');
const RUNS = 500;
let inputsTried = 0;

/** Cuts, insertions, replacements and byte flips applied to a valid document. */
function mutated(valid: string): fc.Arbitrary<string> {
  const edit = fc.tuple(
    fc.nat(),
    fc.nat({ max: 16 }),
    fc.oneof(
      fc.string({ maxLength: 8 }),
      fc.constantFrom('{', '}', '[', ']', '"', ':', ',', '\\', '\n', '\u0000', '\ud800', '-', '1e999', 'null', '..', '%2e'),
    ),
    fc.integer({ min: 0, max: 3 }),
  );
  return fc.array(edit, { minLength: 1, maxLength: 4 }).map((edits) => {
    let text = valid;
    for (const [at, len, insert, kind] of edits) {
      const i = text.length === 0 ? 0 : at % text.length;
      if (kind === 0)
        text = text.slice(0, i) + text.slice(i + len); // cut
      else if (kind === 1)
        text = text.slice(0, i) + insert + text.slice(i); // insert
      else if (kind === 2)
        text = text.slice(0, i) + insert + text.slice(i + len); // replace
      else text = text.slice(0, i); // truncate
    }
    return text;
  });
}

/** Any JSON value, plus values of the types the formats use in the wrong places. */
const jsonish = fc.oneof(
  fc.jsonValue({ maxDepth: 3 }),
  fc.constantFrom(
    null,
    true,
    0,
    -1,
    1e308,
    '',
    'x',
    [],
    {},
    '../../etc/passwd',
    'sha256:',
    `sha256:${'a'.repeat(64)}`,
    'file:///etc/shadow',
    'http://',
    '%2e%2e',
  ),
);

/** An object drawing its keys from `keys` (the real ones) and a few wrong ones, values `value`. */
function shaped(keys: readonly string[], value: fc.Arbitrary<unknown>): fc.Arbitrary<Record<string, unknown>> {
  return fc.dictionary(fc.oneof(fc.constantFrom(...keys), fc.string({ maxLength: 6 }), fc.constant('__proto__'), fc.constant('constructor')), value, {
    maxKeys: 5,
  });
}

async function property<T>(name: string, arbitrary: fc.Arbitrary<T>, check: (input: T) => Promise<unknown>, numRuns = RUNS): Promise<void> {
  const codes = new Map<string, number>();
  await fc.assert(
    fc.asyncProperty(arbitrary, async (input) => {
      inputsTried += 1;
      const outcome = await check(input);
      if (typeof outcome === 'string') codes.set(outcome, (codes.get(outcome) ?? 0) + 1);
    }),
    { numRuns, seed: SEED, endOnFailure: false },
  );
  console.log(`bad-input ${name}: ${numRuns} inputs, outcomes ${JSON.stringify(Object.fromEntries(codes))}`);
}

const VALID_POLICY = JSON.stringify({
  default: [{ type: 'reject' }],
  transports: {
    docker: {
      'example.com/app': [
        {
          type: 'signedBy',
          keyType: 'GPGKeys',
          keyPath: '/keys/trusted.gpg',
          signedIdentity: { type: 'remapIdentity', prefix: 'example.com', signedPrefix: 'registry.example' },
        },
      ],
      'example.com': [{ type: 'signedBy', keyType: 'GPGKeys', keyPaths: ['/k1.gpg', '/k2.gpg'], keyData: 'AAAA' }],
      'quay.io': [{ type: 'insecureAcceptAnything' }],
    },
    'docker-daemon': { '': [{ type: 'insecureAcceptAnything' }] },
  },
});
const VALID_REGISTRIES_D =
  'default-docker:\n  lookaside: file:///var/lib/containers/sigstore\ndocker:\n  example.com:\n    lookaside: https://sigs.example.com/sigs\n  example.com/team/app:\n    lookaside: http://127.0.0.1:9/x\n    use-sigstore-attachments: true\n';
const VALID_REGISTRIES_CONF =
  'unqualified-search-registries = ["docker.io"]\n\n[[registry]]\nprefix = "example.com/app"\nlocation = "mirror.example.com/app"\ninsecure = false\nblocked = false\n\n[[registry.mirror]]\nlocation = "127.0.0.1:5000/app"\ninsecure = true\npull-from-mirror = "digest-only"\n';
const VALID_AUTH = JSON.stringify({
  auths: {
    'example.com': { auth: Buffer.from('user:pa:ss').toString('base64') },
    'https://index.docker.io/v1/': { auth: 'dXNlcjpwYXNz', identitytoken: 'tok' },
    'quay.io/org': { username: 'u', password: 'p' },
  },
});
const VALID_MANIFEST = JSON.stringify({
  schemaVersion: 2,
  mediaType: 'application/vnd.oci.image.manifest.v1+json',
  config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: `sha256:${'1'.repeat(64)}`, size: 100 },
  layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: `sha256:${'2'.repeat(64)}`, size: 1000 }],
});
const VALID_INDEX = JSON.stringify({
  schemaVersion: 2,
  mediaType: 'application/vnd.oci.image.index.v1+json',
  manifests: [
    {
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      digest: `sha256:${'3'.repeat(64)}`,
      size: 500,
      platform: { os: 'linux', architecture: 'amd64' },
    },
  ],
});
const VALID_PAYLOAD = JSON.stringify({
  critical: {
    type: 'atomic container signature',
    image: { 'docker-manifest-digest': `sha256:${'4'.repeat(64)}` },
    identity: { 'docker-reference': 'example.com/app:v1' },
  },
  optional: { creator: 'test', timestamp: 1700000000 },
});
const MANIFEST_TYPES = [
  undefined,
  'application/json',
  'text/plain',
  'application/vnd.oci.image.manifest.v1+json',
  'application/vnd.oci.image.index.v1+json',
  'application/vnd.docker.distribution.manifest.v2+json',
  'application/vnd.docker.distribution.manifest.list.v2+json',
  'application/vnd.docker.distribution.manifest.v1+prettyjws',
  'application/vnd.docker.distribution.manifest.v1+json',
];

const referenceText = fc.oneof(
  fc.string({ maxLength: 80 }),
  fc.string({ unit: 'binary', maxLength: 40 }),
  fc
    .array(
      fc.constantFrom(
        'a',
        'b',
        '0',
        '.',
        '-',
        '_',
        '__',
        '/',
        ':',
        '@',
        'sha256:',
        'localhost',
        '127.0.0.1:5000',
        '..',
        '%2e%2e',
        'A',
        '\u0000',
        ' ',
        'é',
        '\u202e',
      ),
      { maxLength: 20 },
    )
    .map((parts) => parts.join('')),
  fc
    .tuple(
      fc.constantFrom('', 'example.com/', 'localhost:5000/', '[::1]:5000/'),
      fc.stringMatching(/^[a-z0-9._\-/]{0,30}$/),
      fc.constantFrom('', ':v1', ':', `@sha256:${'a'.repeat(64)}`, `@sha256:${'A'.repeat(64)}`, `@sha512:${'a'.repeat(128)}`, '@md5:00'),
    )
    .map(([h, p, s]) => h + p + s),
);

function parses(name: string): boolean {
  try {
    parseReference(name);
    return true;
  } catch {
    return false;
  }
}

describe(`parsers never throw an uncoded error (fast-check, seed ${SEED})`, () => {
  it('parseReference: coded INVALID_REFERENCE/INVALID_DIGEST, and every accepted name round-trips without ".." components', async () => {
    await property('parseReference', referenceText, async (input) =>
      expectCodedOrOk('parseReference', input, () => {
        const ref = parseReference(input);
        // Whatever is accepted is safe to use as a path and a URL, and formats back to itself.
        for (const component of ref.path.split('/')) expect(['', '.', '..']).not.toContain(component);
        expect(ref.name).not.toMatch(/[\0\s%\\]/);
        expect(parseReference(formatReference(ref))).toEqual(ref);
      }),
    );
  });

  it('sniffSignatureFormat: never throws, always a result', async () => {
    await property(
      'sniffSignatureFormat',
      fc.uint8Array({ maxLength: 300 }),
      async (bytes) => {
        const result = sniffSignatureFormat(bytes);
        expect(typeof result.ok).toBe('boolean');
        return result.ok ? 'ok' : 'refused';
      },
      1000,
    );
  });

  it('simple-signing payload parser and strict JSON: coded errors only', async () => {
    const payloadShaped = fc
      .record(
        {
          critical: fc.oneof(
            jsonish,
            shaped(['type', 'image', 'identity'], fc.oneof(jsonish, shaped(['docker-manifest-digest', 'docker-reference'], jsonish))),
          ),
          optional: fc.oneof(jsonish, shaped(['creator', 'timestamp'], jsonish)),
        },
        { requiredKeys: [] },
      )
      .map((o) => JSON.stringify(o));
    const text = fc.oneof(
      fc.string({ maxLength: 200 }),
      payloadShaped,
      mutated(VALID_PAYLOAD),
      fc.constant('{"critical":{},"critical":{}}'),
      fc.constant('1'.repeat(400)),
      fc.constant('['.repeat(5000)),
    );
    await property('parseUntrustedPayload', text, async (input) =>
      expectCodedOrOk('parseUntrustedPayload', input, () => parseUntrustedPayload(new TextEncoder().encode(input))),
    );
    await property('parseStrictJson', text, async (input) => expectCodedOrOk('parseStrictJson', input, () => parseStrictJson(input)));
  });

  it('verifySimpleSigning: random and mutated signature blobs are rejected, never thrown', async () => {
    const keys = await loadGpgKeys([keyFixture('trusted.gpg')]);
    const valid = signatureFixture('valid');
    const blobs = fc.oneof(
      fc.uint8Array({ maxLength: 200 }).map((b) => new Uint8Array([0xa3, 0x01, ...b])),
      fc.uint8Array({ maxLength: 200 }),
      fc.tuple(fc.nat(), fc.nat({ max: 255 }), fc.nat({ max: 40 })).map(([at, byte, cut]) => {
        const copy = new Uint8Array(valid.subarray(0, Math.max(1, valid.length - cut)));
        copy[at % copy.length] = byte;
        return copy;
      }),
    );
    await property(
      'verifySimpleSigning',
      blobs,
      async (bytes) => {
        const check = await verifySimpleSigning(
          { location: { source: 'lookaside', url: 'http://lookaside/signature-1', index: 1 }, format: 'simple-signing', bytes },
          keys,
          {
            manifestDigest: MANIFEST_DIGEST,
            matchesIdentity: () => true,
            now: new Date(),
          },
        );
        return check.verdict;
      },
      300,
    );
  });

  it('parsePolicy: INVALID_POLICY for every malformed document', async () => {
    const requirement = shaped(
      ['type', 'keyType', 'keyPath', 'keyPaths', 'keyData', 'signedIdentity', 'fulcio', 'rekorPublicKeyPath'],
      fc.oneof(
        jsonish,
        fc.constantFrom('signedBy', 'reject', 'insecureAcceptAnything', 'sigstoreSigned', 'GPGKeys'),
        shaped(
          ['type', 'prefix', 'signedPrefix', 'dockerReference', 'dockerRepository'],
          fc.oneof(jsonish, fc.constantFrom('matchExact', 'matchRepository', 'remapIdentity', 'exactReference', 'exactRepository', 'matchRepoDigestOrExact')),
        ),
      ),
    );
    const doc = fc
      .record(
        {
          default: fc.oneof(jsonish, fc.array(requirement, { maxLength: 3 })),
          transports: fc.oneof(
            jsonish,
            fc.dictionary(
              fc.constantFrom('docker', 'atomic', 'oci', 'x'),
              fc.oneof(
                jsonish,
                fc.dictionary(
                  fc.oneof(referenceText, fc.constantFrom('', '*.example.com', 'example.com')),
                  fc.oneof(jsonish, fc.array(requirement, { maxLength: 2 })),
                ),
              ),
            ),
          ),
        },
        { requiredKeys: [] },
      )
      .map((o) => JSON.stringify(o));
    await property('parsePolicy', fc.oneof(fc.string({ maxLength: 200 }), doc, mutated(VALID_POLICY)), async (input) =>
      expectCodedOrOk('parsePolicy', input, () => parsePolicy(input, { source: '/fuzz/policy.json' })),
    );
  });

  it('parseRegistriesD: INVALID_REGISTRIES_D for every malformed file', async () => {
    const yamlish = fc.oneof(
      fc.string({ maxLength: 200 }),
      mutated(VALID_REGISTRIES_D),
      fc.constantFrom(
        '&a [*a]',
        'a: &a\n  b: *a\n',
        '!!binary AAAA',
        '? [a]\n: b',
        'docker: {a: 1, a: 2}',
        '%YAML 9.9\n---\n',
        'docker:\n  "": {lookaside: x}',
        '--- !<tag:yaml.org,2002:js/function> x',
      ),
      fc
        .record(
          {
            'default-docker': fc.oneof(jsonish, shaped(['lookaside', 'sigstore', 'lookaside-staging', 'use-sigstore-attachments'], jsonish)),
            docker: fc.oneof(
              jsonish,
              fc.dictionary(referenceText, fc.oneof(jsonish, shaped(['lookaside', 'sigstore', 'use-sigstore-attachments'], jsonish)), { maxKeys: 3 }),
            ),
          },
          { requiredKeys: [] },
        )
        .map((o) => JSON.stringify(o)),
    );
    await property('parseRegistriesD', fc.array(yamlish, { minLength: 1, maxLength: 3 }), async (texts) =>
      expectCodedOrOk('parseRegistriesD', texts.join('\n---\n'), () =>
        parseRegistriesD(texts.map((text, i) => ({ path: `/fuzz/registries.d/${i}.yaml`, text }))),
      ),
    );
  });

  it('parseRegistriesConf: INVALID_REGISTRIES_CONF for every malformed file', async () => {
    const tomlValue = fc.oneof(
      fc.string({ maxLength: 20 }).map((s) => JSON.stringify(s)),
      fc.constantFrom(
        'true',
        '1',
        '-1',
        '[]',
        '{}',
        '"digest-only"',
        '"all"',
        '"127.0.0.1:5000/app"',
        '"*.example.com"',
        '"example.com/app:tag"',
        '"../x"',
        '1979-05-27T07:32:00Z',
        'inf',
        'nan',
      ),
    );
    const tables = fc
      .array(
        fc.tuple(
          fc.constantFrom('[[registry]]', '[[registry.mirror]]', '[registries.search]', '[aliases]', ''),
          fc.array(
            fc.tuple(
              fc.constantFrom('prefix', 'location', 'insecure', 'blocked', 'mirror-by-digest-only', 'pull-from-mirror', 'registries', 'short-name-mode', 'x'),
              tomlValue,
            ),
            { maxLength: 4 },
          ),
        ),
        { maxLength: 4 },
      )
      .map((ts) => ts.map(([h, kvs]) => `${h}\n${kvs.map(([k, v]) => `${k} = ${v}`).join('\n')}`).join('\n'));
    await property('parseRegistriesConf', fc.oneof(fc.string({ maxLength: 200 }), tables, mutated(VALID_REGISTRIES_CONF)), async (input) =>
      expectCodedOrOk('parseRegistriesConf', input, () => parseRegistriesConf(input, '/fuzz/registries.conf')),
    );
  });

  it('parseAuthFile: INVALID_CONFIG for every malformed file', async () => {
    const entry = shaped(
      ['auth', 'username', 'password', 'identitytoken', 'registrytoken', 'email'],
      fc.oneof(
        jsonish,
        fc.string({ maxLength: 20 }).map((s) => Buffer.from(s).toString('base64')),
        fc.constantFrom('Og==', 'dTo=', 'OnA=', '!!!', 'dXNlcg=='),
      ),
    );
    const doc = fc
      .record(
        {
          auths: fc.oneof(
            jsonish,
            fc.dictionary(fc.oneof(referenceText, fc.constantFrom('https://index.docker.io/v1/', 'http://example.com/', '')), fc.oneof(jsonish, entry), {
              maxKeys: 3,
            }),
          ),
          credHelpers: jsonish,
          credsStore: jsonish,
        },
        { requiredKeys: [] },
      )
      .map((o) => JSON.stringify(o));
    await property('parseAuthFile', fc.oneof(fc.string({ maxLength: 200 }), doc, mutated(VALID_AUTH)), async (input) =>
      expectCodedOrOk('parseAuthFile', input, () => parseAuthFile(input, '/fuzz/auth.json')),
    );
  });

  it('parseManifest: MANIFEST_INVALID/MANIFEST_UNSUPPORTED for every malformed manifest', async () => {
    const descriptor = shaped(
      ['mediaType', 'digest', 'size', 'platform', 'urls', 'annotations'],
      fc.oneof(jsonish, shaped(['os', 'architecture', 'variant', 'os.version'], jsonish)),
    );
    const doc = fc
      .record(
        {
          schemaVersion: fc.oneof(jsonish, fc.constantFrom(1, 2, 3)),
          mediaType: fc.oneof(jsonish, fc.constantFrom(...MANIFEST_TYPES.filter((t) => t !== undefined))),
          config: fc.oneof(jsonish, descriptor),
          layers: fc.oneof(jsonish, fc.array(descriptor, { maxLength: 3 })),
          manifests: fc.oneof(jsonish, fc.array(descriptor, { maxLength: 3 })),
          fsLayers: jsonish,
        },
        { requiredKeys: [] },
      )
      .map((o) => JSON.stringify(o));
    await property(
      'parseManifest',
      fc.tuple(fc.oneof(fc.string({ maxLength: 200 }), doc, mutated(VALID_MANIFEST), mutated(VALID_INDEX)), fc.constantFrom(...MANIFEST_TYPES)),
      async ([input, type]) => expectCodedOrOk('parseManifest', input, () => parseManifest(new TextEncoder().encode(input), type, 'fuzz.example/app:v1')),
    );
  });
});

describe('hostile requests through the real server', () => {
  let work: string;
  let server: RunningPullguard;

  beforeAll(async () => {
    // The state dir is nested so that a name escaping it (../..) would land in `work`, which we watch.
    work = await mkdtemp(join(tmpdir(), 'pullguard-badinput-'));
    await mkdir(join(work, 'a', 'b'), { recursive: true });
    const policy = join(work, 'policy.json');
    await writeFile(policy, JSON.stringify({ default: [{ type: 'reject' }] }));
    server = await startPullguard({ stateDir: join(work, 'a', 'b', 'state'), args: ['--signature-policy', policy] });
  });
  afterAll(async () => {
    await server?.stop();
    await rm(work, { recursive: true, force: true });
  });

  const alive = async (): Promise<void> => {
    const list = await server.client.call<{ images: unknown[] }>('ListImages', {}, { deadlineMs: 5000 });
    expect(list.images).toEqual([]);
    expect(server.process.exitCode).toBeNull();
  };
  const codeOf = (promise: Promise<unknown>): Promise<grpc.status> =>
    promise.then(
      () => grpc.status.OK,
      (e: grpc.ServiceError) => e.code,
    );

  it('refuses a request over 4 MiB with RESOURCE_EXHAUSTED and keeps serving', async () => {
    const huge = 'a'.repeat(5 * 1024 * 1024);
    for (const rpc of ['PullImage', 'ImageStatus', 'RemoveImage'] as const) {
      expect(await codeOf(server.client.call(rpc, { image: { image: huge } }, { deadlineMs: 20_000 }))).toBe(grpc.status.RESOURCE_EXHAUSTED);
      inputsTried += 1;
    }
    await alive();
  });

  it('answers raw garbage instead of protobuf with an error status and keeps serving', async () => {
    const client = new grpc.Client(`unix://${server.socket}`, grpc.credentials.createInsecure());
    const identity = (b: Buffer): Buffer => b;
    const methods = ['PullImage', 'ImageStatus', 'ListImages', 'RemoveImage', 'ImageFsInfo'].map((m) => `/runtime.v1.ImageService/${m}`);
    const codes = new Map<string, number>();
    try {
      await fc.assert(
        fc.asyncProperty(fc.constantFrom(...methods), fc.uint8Array({ minLength: 1, maxLength: 512 }), async (method, bytes) => {
          inputsTried += 1;
          const code = await new Promise<grpc.status>((resolve) => {
            client.makeUnaryRequest(method, identity, identity, Buffer.from(bytes), new grpc.Metadata(), { deadline: Date.now() + 10_000 }, (err) =>
              resolve(err?.code ?? grpc.status.OK),
            );
          });
          const key = `${method.slice(method.lastIndexOf('/') + 1)}:${grpc.status[code]}`;
          codes.set(key, (codes.get(key) ?? 0) + 1);
          // Garbage that happens to decode is an ordinary (possibly empty) request; never a crash or a hang.
          expect([grpc.status.OK, grpc.status.INTERNAL, grpc.status.INVALID_ARGUMENT, grpc.status.UNKNOWN]).toContain(code);
        }),
        { numRuns: 200, seed: SEED },
      );
    } finally {
      client.close();
    }
    console.log(`bad-input raw protobuf garbage: outcomes ${JSON.stringify(Object.fromEntries(codes))}`);
    await alive();
  });

  it('refuses hostile image names with INVALID_ARGUMENT and creates nothing, inside the state dir or out', async () => {
    const before = await snapshotTree(work);
    const hostile = [
      '../../../../etc/passwd',
      '..',
      '/',
      '//',
      'a/../../b',
      './app',
      'app/./x',
      'app\u0000evil',
      '\u0000',
      'app%2e%2e',
      '%2e%2e/%2e%2e/etc',
      '127.0.0.1:1/%2e%2e/x',
      '127.0.0.1:1/..%2f..%2fetc',
      'app/..\\..\\windows',
      `${'a'.repeat(64 * 1024)}`,
      `127.0.0.1:1/${'a/'.repeat(32 * 1024)}x`,
      `app:${'t'.repeat(64 * 1024)}`,
      `app@sha256:${'0'.repeat(64 * 1024)}`,
      'app@sha256:../../../../etc/passwd',
      `app@sha256:${'a'.repeat(63)}/`,
      `sha256:../${'a'.repeat(60)}`,
      'APP:V1',
      'app:v1\n',
      ' app',
      '\u202eppa',
    ];
    for (const name of hostile) {
      for (const rpc of ['PullImage', 'ImageStatus', 'RemoveImage'] as const) {
        inputsTried += 1;
        const err = await server.client.call(rpc, { image: { image: name } }, { deadlineMs: 10_000 }).then(
          () => undefined,
          (e: grpc.ServiceError) => e,
        );
        if (rpc === 'PullImage' || err !== undefined) {
          expect(err?.code, `${rpc} ${JSON.stringify(name.slice(0, 60))}`).toBe(grpc.status.INVALID_ARGUMENT);
          expect(err!.details.length).toBeLessThanOrEqual(2048);
          expect(err!.details).not.toMatch(/[\0\n]/);
        }
      }
    }
    // Random names too (outside any reachable registry): whatever they are, no file appears.
    await fc.assert(
      // Names that parse are sent only with an unreachable registry (no DNS, no network).
      fc.asyncProperty(
        fc.oneof(
          referenceText.map((s) => `127.0.0.1:1/${s}`),
          referenceText.filter((s) => !parses(s)),
        ),
        async (name) => {
          inputsTried += 1;
          const code = await codeOf(server.client.call('PullImage', { image: { image: name } }, { deadlineMs: 10_000 }));
          expect(code).not.toBe(grpc.status.OK);
          if (!parses(name)) expect(code, JSON.stringify(name)).toBe(grpc.status.INVALID_ARGUMENT);
        },
      ),
      { numRuns: 200, seed: SEED },
    );
    expect(await snapshotTree(work)).toEqual(before);
    await alive();
  });
});

afterAll(() => {
  figure('bad_inputs_tried', inputsTried);
});
