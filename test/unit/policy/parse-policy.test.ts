import { describe, expect, test } from 'vitest';
import { isPullguardError, type ValidationError } from '../../../src/domain/errors.js';
import { parsePolicy } from '../../../src/policy/parse-policy.js';

/** The one valid document every invalid case is mutated from. */
function validPolicy(): any {
  return {
    default: [{ type: 'reject' }],
    transports: {
      docker: {
        'registry.example/app': [
          {
            type: 'signedBy',
            keyType: 'GPGKeys',
            keyPath: '/etc/pki/containers/app.gpg',
            signedIdentity: { type: 'remapIdentity', prefix: 'mirror.example/app', signedPrefix: 'registry.example/app' },
          },
        ],
        'registry.example': [{ type: 'signedBy', keyType: 'GPGKeys', keyPaths: ['/a.gpg', '/b.gpg'] }],
        '*.example': [{ type: 'signedBy', keyType: 'GPGKeys', keyData: Buffer.from('key').toString('base64'), signedIdentity: { type: 'matchRepository' } }],
        'quay.example': [{ type: 'sigstoreSigned', keyPath: '/cosign.pub', signedIdentity: { type: 'matchRepository' } }],
        '': [{ type: 'insecureAcceptAnything' }],
      },
      'docker-daemon': { '': [{ type: 'insecureAcceptAnything' }] },
    },
  };
}

function problemsOf(text: string): readonly string[] {
  try {
    parsePolicy(text, { source: '/etc/containers/policy.json' });
  } catch (err) {
    expect(isPullguardError(err, 'INVALID_POLICY')).toBe(true);
    expect((err as Error).message.startsWith('invalid policy in "/etc/containers/policy.json": ')).toBe(true);
    return (err as ValidationError).problems;
  }
  return expect.unreachable('expected parsePolicy to fail');
}

const mutate = (f: (p: any) => void): string => {
  const p = validPolicy();
  f(p);
  return JSON.stringify(p);
};
const app = (p: any) => p.transports.docker['registry.example/app'][0];

test('the base document parses, with defaults filled in', () => {
  const policy = parsePolicy(JSON.stringify(validPolicy()), { source: 'p.json' });
  expect(policy.default).toEqual([{ type: 'reject' }]);
  const docker = policy.transports.get('docker')!;
  expect([...docker.keys()]).toEqual(['registry.example/app', 'registry.example', '*.example', 'quay.example', '']);
  expect(docker.get('registry.example')![0]).toMatchObject({
    keys: { kind: 'paths', paths: ['/a.gpg', '/b.gpg'] },
    signedIdentity: { type: 'matchRepoDigestOrExact' },
  });
  expect(docker.get('*.example')![0]).toMatchObject({ keys: { kind: 'data', data: new Uint8Array(Buffer.from('key')) } });
  expect(docker.get('quay.example')![0]).toMatchObject({ type: 'sigstoreSigned', trust: { kind: 'keys', keys: { kind: 'path', path: '/cosign.pub' } } });
  expect(Object.isFrozen(docker.get('registry.example/app')![0])).toBe(true);
});

describe('each mutation is reported with its upstream text', () => {
  const cases: [string, string, string][] = [
    ['unknown top-level key', mutate((p) => (p.defualt = [])), 'Unknown key "defualt"'],
    ['unknown requirement key', mutate((p) => (app(p).keyPaht = '/x')), 'transports.docker["registry.example/app"][0]: Unknown key "keyPaht"'],
    ['duplicate key', JSON.stringify(validPolicy()).replace('"default":', '"default":[{"type":"reject"}],"default":'), 'Duplicate key "default"'],
    ['missing default', mutate((p) => delete p.default), 'Default policy is missing'],
    ['empty default', mutate((p) => (p.default = [])), 'default: List of verification policy requirements must not be empty'],
    ['empty scope list', mutate((p) => (p.transports.docker[''] = [])), 'List of verification policy requirements must not be empty'],
    ['unknown requirement type', mutate((p) => (p.default = [{ type: 'signedByMagic' }])), 'Unknown policy requirement type "signedByMagic"'],
    ['two key sources', mutate((p) => (app(p).keyData = 'a2V5')), 'Exactly one of keyPath, keyPaths and keyData must be specified, more than one present'],
    ['no key source', mutate((p) => delete app(p).keyPath), 'Exactly one of keyPath, keyPaths and keyData must be specified, none of them present'],
    ['bad keyType', mutate((p) => (app(p).keyType = 'PGP')), 'Unrecognized keyType value "PGP"'],
    ['missing keyType', mutate((p) => delete app(p).keyType), 'invalid keyType ""'],
    ['relative keyPath', mutate((p) => (app(p).keyPath = 'keys/app.gpg')), 'path "keys/app.gpg" must be absolute'],
    ['bad base64 keyData', mutate((p) => (p.transports.docker['*.example'][0].keyData = 'not base64!')), 'illegal base64 data'],
    ['bad identity type', mutate((p) => (app(p).signedIdentity = { type: 'matchEverything' })), 'Unknown policy reference match type "matchEverything"'],
    ['bad prefix', mutate((p) => (app(p).signedIdentity.prefix = 'Mirror.example/App')), 'prefix "Mirror.example/App" is not valid'],
    ['prefix with a tag', mutate((p) => (app(p).signedIdentity.signedPrefix = 'registry.example/app:v1')), 'prefix "registry.example/app:v1" is not valid'],
    ['extra key in identity', mutate((p) => (app(p).signedIdentity.dockerReference = 'x')), 'Unknown key "dockerReference"'],
    [
      'exactReference without tag',
      mutate((p) => (app(p).signedIdentity = { type: 'exactReference', dockerReference: 'registry.example/app' })),
      'dockerReference registry.example/app contains neither a tag nor digest',
    ],
    [
      'exactRepository invalid',
      mutate((p) => (app(p).signedIdentity = { type: 'exactRepository', dockerRepository: 'registry.example/App' })),
      'Invalid format of dockerRepository registry.example/App',
    ],
    ['requirement not an object', mutate((p) => (p.default = ['reject'])), 'JSON object expected, got "reject"'],
    [
      'sigstore with two trust roots',
      mutate((p) => (p.transports.docker['quay.example'][0].keyData = 'a2V5')),
      'exactly one of keyPath, keyPaths, keyData, keyDatas, fulcio, and pki must be specified',
    ],
    [
      'sigstore fulcio without rekor',
      mutate(
        (p) =>
          (p.transports.docker['quay.example'][0] = { type: 'sigstoreSigned', fulcio: { caPath: '/ca.pem', oidcIssuer: 'https://o', subjectEmail: 'a@b' } }),
      ),
      'At least one of rekorPublickeyPath, rekorPublicKeyPaths, rekorPublickeyData and rekorPublicKeyDatas must be specified if fulcio is used',
    ],
    [
      'sigstore fulcio without issuer',
      mutate(
        (p) =>
          (p.transports.docker['quay.example'][0] = {
            type: 'sigstoreSigned',
            fulcio: { caPath: '/ca.pem', subjectEmail: 'a@b' },
            rekorPublicKeyPath: '/r.pub',
          }),
      ),
      'oidcIssuer not specified',
    ],
    [
      'sigstore fulcio without email',
      mutate(
        (p) =>
          (p.transports.docker['quay.example'][0] = {
            type: 'sigstoreSigned',
            fulcio: { caPath: '/ca.pem', oidcIssuer: 'https://o' },
            rekorPublicKeyPath: '/r.pub',
          }),
      ),
      'subjectEmail not specified',
    ],
    [
      'sigstore empty keyPaths',
      mutate((p) => (p.transports.docker['quay.example'][0] = { type: 'sigstoreSigned', keyPaths: [] })),
      '"keyPaths" contains no entries',
    ],
    [
      'sigstore empty keyDatas',
      mutate((p) => (p.transports.docker['quay.example'][0] = { type: 'sigstoreSigned', keyDatas: [] })),
      '"keyDatas" contains no entries',
    ],
    [
      'sigstore empty rekorPublicKeyDatas',
      mutate((p) => (p.transports.docker['quay.example'][0] = { type: 'sigstoreSigned', keyPath: '/k.pub', rekorPublicKeyDatas: [] })),
      '"rekorPublickeyDatas" contains no entries',
    ],
    [
      'sigstore pki with rekor',
      mutate(
        (p) =>
          (p.transports.docker['quay.example'][0] = {
            type: 'sigstoreSigned',
            pki: { caRootsPath: '/r.pem', subjectEmail: 'a@b' },
            rekorPublicKeyPath: '/r.pub',
          }),
      ),
      'are not supported for pki',
    ],
    [
      'sigstore fulcio buildSignerURI (newer upstream; not accepted)',
      mutate(
        (p) =>
          (p.transports.docker['quay.example'][0] = {
            type: 'sigstoreSigned',
            fulcio: { caPath: '/ca.pem', oidcIssuer: 'https://o', subjectEmail: 'a@b', buildSignerURI: 'https://x' },
            rekorPublicKeyPath: '/r.pub',
          }),
      ),
      'Unknown key "buildSignerURI"',
    ],
    ['trailing data', `${JSON.stringify(validPolicy())} {}`, 'Unexpected data after JSON object'],
    ['not an object', '[]', "JSON object expected, got '['"],
  ];
  test.each(cases)('%s', (_name, text, expected) => {
    const problems = problemsOf(text);
    expect(
      problems.some((p) => p.includes(expected)),
      `${problems.join(' | ')} should include ${expected}`,
    ).toBe(true);
  });
});

test('all problems are reported at once', () => {
  const problems = problemsOf(
    mutate((p) => {
      p.extra = 1;
      app(p).keyPaht = '/x';
      app(p).signedIdentity.prefix = 'BAD PREFIX';
      p.transports.docker[''] = [];
      p.transports.docker['quay.example'][0].pki = {};
    }),
  );
  expect(problems.length).toBeGreaterThanOrEqual(5);
  expect(problems.join('\n')).toMatch(/Unknown key "extra"[\s\S]*Unknown key "keyPaht"[\s\S]*prefix "BAD PREFIX" is not valid/);
});

test('sigstoreSigned parses fulcio and pki fully', () => {
  const policy = parsePolicy(
    JSON.stringify({
      default: [
        { type: 'sigstoreSigned', fulcio: { caData: 'Y2E=', oidcIssuer: 'https://issuer', subjectEmail: 'a@b' }, rekorPublicKeyData: 'cms=' },
        { type: 'sigstoreSigned', pki: { caRootsPath: '/roots.pem', subjectHostname: 'build.example' }, signedIdentity: { type: 'matchRepository' } },
      ],
    }),
    { source: 'p.json' },
  );
  expect(policy.default[0]).toMatchObject({
    trust: { kind: 'fulcio', fulcio: { oidcIssuer: 'https://issuer', subjectEmail: 'a@b' } },
    rekorPublicKeys: { kind: 'data' },
  });
  expect(policy.default[1]).toMatchObject({ trust: { kind: 'pki', pki: { caRoots: { kind: 'path', path: '/roots.pem' }, subjectHostname: 'build.example' } } });
});
