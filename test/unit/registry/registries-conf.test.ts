import { describe, expect, it } from 'vitest';
import { ValidationError } from '../../../src/domain/errors.js';
import { formatReference, parseReference } from '../../../src/domain/reference.js';
import { parseRegistriesConf, pullSources, isInsecureHost } from '../../../src/registry/registries-conf.js';

const CONF = `
unqualified-search-registries = ["docker.io"]

[[registry]]
prefix = "docker.io"
location = "docker.io"

[[registry.mirror]]
location = "mirror.local:5000/dockerhub"
insecure = true

[[registry.mirror]]
location = "digest-mirror.local"
pull-from-mirror = "digest-only"

[[registry]]
prefix = "docker.io/library/nginx"
location = "nginx-source.local/nginx"

[[registry]]
location = "blocked.example"
blocked = true

[[registry]]
prefix = "*.corp.example"
insecure = true
[[registry.mirror]]
location = "cache.corp.example"
`;

const D = `sha256:${'b'.repeat(64)}`;

function sources(ref: string, insecure: string[] = []) {
  return pullSources(parseRegistriesConf(CONF), parseReference(ref), new Set(insecure)).map(
    (s) => `${formatReference(s.reference)}${s.insecure ? ' (http)' : ''}${s.mirror ? ' mirror' : ''}`,
  );
}

describe('registries.conf v2', () => {
  it('tries mirrors first, rewriting the prefix into the mirror location', () => {
    expect(sources('busybox:1')).toEqual(['mirror.local:5000/dockerhub/library/busybox:1 (http) mirror', 'docker.io/library/busybox:1']);
  });

  it('uses digest-only mirrors for digest references only', () => {
    expect(sources(`busybox@${D}`)).toEqual([
      `mirror.local:5000/dockerhub/library/busybox@${D} (http) mirror`,
      `digest-mirror.local/library/busybox@${D} mirror`,
      `docker.io/library/busybox@${D}`,
    ]);
  });

  it('the longest prefix wins and relocates the source', () => {
    expect(sources('nginx:1.25')).toEqual(['nginx-source.local/nginx:1.25']);
  });

  it('wildcard prefixes match subdomains and keep the host for the source', () => {
    expect(sources('a.corp.example/team/app:v1')).toEqual(['cache.corp.example/team/app:v1 mirror', 'a.corp.example/team/app:v1 (http)']);
    expect(sources('corp.example/team/app:v1')).toEqual(['corp.example/team/app:v1']);
  });

  it('--insecure-registry hosts are plain HTTP; others are not', () => {
    expect(sources('127.0.0.1:5000/app:v1', ['127.0.0.1:5000'])).toEqual(['127.0.0.1:5000/app:v1 (http)']);
    expect(sources('127.0.0.1:5000/app:v1')).toEqual(['127.0.0.1:5000/app:v1']);
    const conf = parseRegistriesConf(CONF);
    expect(isInsecureHost(conf, 'mirror.local:5000', new Set())).toBe(true);
    expect(isInsecureHost(conf, 'docker.io', new Set())).toBe(false);
  });

  it('a blocked registry is REGISTRY_DENIED', () => {
    expect(() => sources('blocked.example/app:v1')).toThrow(expect.objectContaining({ code: 'REGISTRY_DENIED' }));
  });

  it('does not treat a prefix as matching a longer host or repository name', () => {
    const conf = parseRegistriesConf('[[registry]]\nprefix = "reg.example/team"\nlocation = "other.example/team"\n');
    expect(pullSources(conf, parseReference('reg.example/teamwork:v1'), new Set()).map((s) => s.reference.name)).toEqual(['reg.example/teamwork']);
    expect(pullSources(conf, parseReference('reg.example/team/app:v1'), new Set()).map((s) => s.reference.name)).toEqual(['other.example/team/app']);
  });

  it('reports every problem at once', () => {
    let err: unknown;
    try {
      parseRegistriesConf(`
bogus = 1
[[registry]]
prefix = "a.example"
insecure = "yes"
colour = "red"
[[registry.mirror]]
location = "https://m.example"
pull-from-mirror = "sometimes"
[[registry]]
blocked = true
[[registry]]
prefix = "*.example"
location = "x.example"
`);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ValidationError);
    const problems = (err as ValidationError).problems;
    expect(problems).toEqual(
      expect.arrayContaining([
        'unknown key "bogus"',
        'registry[0]: unknown key "colour"',
        'registry[0]: "insecure" must be a boolean',
        'registry[0].mirror[0]: "location" "https://m.example" must not contain a URL scheme',
        'registry[0].mirror[0]: "pull-from-mirror" must be "all", "digest-only" or "tag-only"',
        'registry[1]: needs "prefix" or "location"',
        'registry[2]: a wildcard prefix "*.example" cannot have a "location"',
      ]),
    );
    expect((err as ValidationError).code).toBe('INVALID_REGISTRIES_CONF');
  });

  it('rejects the v1 format and bad TOML', () => {
    expect(() => parseRegistriesConf('[registries.search]\nregistries = ["docker.io"]\n')).toThrow(/version 1 format/);
    expect(() => parseRegistriesConf('[[registry]\n')).toThrow(expect.objectContaining({ code: 'INVALID_REGISTRIES_CONF' }));
  });
});
