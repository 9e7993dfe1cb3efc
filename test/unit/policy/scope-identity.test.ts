import { describe, expect, test } from 'vitest';
import { parseReference } from '../../../src/domain/reference.js';
import { matchesSignedIdentity } from '../../../src/policy/identity.js';
import { parsePolicy } from '../../../src/policy/parse-policy.js';
import { policyNamespaces, requirementsFor } from '../../../src/policy/scope.js';
import type { SignedIdentity } from '../../../src/policy/types.js';

const D = `sha256:${'c'.repeat(64)}`;
const scopes = [
  `registry.example:5000/ns/app:v1`,
  `registry.example/ns/app@${D}`,
  'registry.example/ns/app',
  'registry.example/ns',
  'registry.example',
  'registry.example:5000',
  '*.example',
  '*.deep.example',
  '',
];
const policy = parsePolicy(
  JSON.stringify({
    default: [{ type: 'reject' }],
    transports: { docker: Object.fromEntries(scopes.map((s) => [s, [{ type: 'insecureAcceptAnything' }]])) },
  }),
  { source: 'p.json' },
);
const scopeOf = (ref: string) => requirementsFor(policy, parseReference(ref)).scope.scope;

describe('requirementsFor: most specific scope wins', () => {
  test.each([
    ['registry.example:5000/ns/app:v1', 'registry.example:5000/ns/app:v1'],
    ['registry.example:5000/ns/app:v2', 'registry.example:5000'],
    [`registry.example/ns/app@${D}`, `registry.example/ns/app@${D}`],
    ['registry.example/ns/app:v1', 'registry.example/ns/app'],
    ['registry.example/ns/other:v1', 'registry.example/ns'],
    ['registry.example/other:v1', 'registry.example'],
    ['a.registry.example/x:v1', '*.example'],
    ['b.deep.example/x:v1', '*.deep.example'],
    ['other.org/x:v1', ''],
    ['registry.example:6000/x:v1', '*.example'], // host:port never falls back to bare host
  ])('%s → %s', (ref, scope) => expect(scopeOf(ref)).toBe(scope));

  test('no docker section → default', () => {
    const p = parsePolicy('{"default":[{"type":"reject"}]}', { source: 'p.json' });
    expect(requirementsFor(p, parseReference('nginx')).scope).toEqual({ policyFile: 'p.json', scope: 'default' });
  });
  test('namespaces strip the port before wildcards', () => {
    expect(policyNamespaces(parseReference('a.b.example:5000/ns/app:v1'))).toEqual([
      'a.b.example:5000/ns/app',
      'a.b.example:5000/ns',
      'a.b.example:5000',
      '*.b.example',
      '*.example',
    ]);
  });
});

describe('matchesSignedIdentity', () => {
  const tagRef = parseReference('registry.example/app:v1');
  const digestRef = parseReference(`registry.example/app@${D}`);
  const cases: [string, SignedIdentity, typeof tagRef, string, boolean][] = [
    ['matchExact equal', { type: 'matchExact' }, tagRef, 'registry.example/app:v1', true],
    ['matchExact other tag', { type: 'matchExact' }, tagRef, 'registry.example/app:v2', false],
    ['matchExact name-only signature', { type: 'matchExact' }, tagRef, 'registry.example/app', false],
    ['matchRepoDigestOrExact tag equal', { type: 'matchRepoDigestOrExact' }, tagRef, 'registry.example/app:v1', true],
    ['matchRepoDigestOrExact tag differs', { type: 'matchRepoDigestOrExact' }, tagRef, 'registry.example/app:v2', false],
    ['matchRepoDigestOrExact digest ref, any tag', { type: 'matchRepoDigestOrExact' }, digestRef, 'registry.example/app:v9', true],
    ['matchRepoDigestOrExact digest ref, other repo', { type: 'matchRepoDigestOrExact' }, digestRef, 'registry.example/other:v9', false],
    ['matchRepoDigestOrExact name-only signature', { type: 'matchRepoDigestOrExact' }, digestRef, 'registry.example/app', false],
    ['matchRepoDigestOrExact normalises docker.io', { type: 'matchRepoDigestOrExact' }, parseReference('busybox'), 'docker.io/library/busybox:latest', true],
    ['matchRepository', { type: 'matchRepository' }, tagRef, 'registry.example/app:other', true],
    ['matchRepository other repo', { type: 'matchRepository' }, tagRef, 'registry.example/app2:v1', false],
    [
      'exactReference',
      { type: 'exactReference', dockerReference: 'registry.example/app:v1' },
      parseReference('mirror.example/x:y'),
      'registry.example/app:v1',
      true,
    ],
    ['exactReference differs', { type: 'exactReference', dockerReference: 'registry.example/app:v1' }, tagRef, 'registry.example/app:v2', false],
    [
      'exactRepository',
      { type: 'exactRepository', dockerRepository: 'registry.example/app' },
      parseReference('mirror.example/x:y'),
      'registry.example/app:v7',
      true,
    ],
    [
      'remapIdentity',
      { type: 'remapIdentity', prefix: 'mirror.example/team', signedPrefix: 'registry.example' },
      parseReference('mirror.example/team/app:v1'),
      'registry.example/app:v1',
      true,
    ],
    [
      'remapIdentity path boundary',
      { type: 'remapIdentity', prefix: 'mirror.example/app', signedPrefix: 'registry.example/app' },
      parseReference('mirror.example/app-foo:v1'),
      'registry.example/app-foo:v1',
      false,
    ],
    [
      'remapIdentity no prefix match falls back to exact',
      { type: 'remapIdentity', prefix: 'mirror.example', signedPrefix: 'registry.example' },
      tagRef,
      'registry.example/app:v1',
      true,
    ],
    ['unparseable signed reference', { type: 'matchRepository' }, tagRef, 'Registry.Example/APP::', false],
    ['empty signed reference', { type: 'matchRepoDigestOrExact' }, tagRef, '', false],
  ];
  test.each(cases)('%s', (_name, rule, image, signed, expected) => {
    expect(matchesSignedIdentity(rule, image, signed)).toBe(expected);
  });
});
