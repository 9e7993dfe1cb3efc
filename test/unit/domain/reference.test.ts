import { describe, expect, it } from 'vitest';
import { isPullguardError } from '../../../src/domain/errors.js';
import { formatReference, parseReference, repositoryOf, withDigest } from '../../../src/domain/reference.js';

const D = `sha256:${'a'.repeat(64)}`;

describe('parseReference normalises like docker/reference', () => {
  it.each([
    ['nginx', 'docker.io/library/nginx:latest'],
    ['nginx:1.25', 'docker.io/library/nginx:1.25'],
    ['library/nginx', 'docker.io/library/nginx:latest'],
    ['docker.io/nginx', 'docker.io/library/nginx:latest'],
    ['index.docker.io/nginx', 'docker.io/library/nginx:latest'],
    ['docker.io/library/nginx:latest', 'docker.io/library/nginx:latest'],
    ['team/app', 'docker.io/team/app:latest'],
    ['a/b/c/d/e', 'docker.io/a/b/c/d/e:latest'],
    ['localhost/foo', 'localhost/foo:latest'],
    ['localhost:5000/foo:bar', 'localhost:5000/foo:bar'],
    ['localhost', 'docker.io/library/localhost:latest'],
    ['host:5000', 'docker.io/library/host:5000'], // no slash: ":5000" is a tag
    ['my.registry:8080/team/app:v1.2.3', 'my.registry:8080/team/app:v1.2.3'],
    ['[::1]:5000/foo', '[::1]:5000/foo:latest'],
    [`127.0.0.1:5000/ns/repo@${D}`, `127.0.0.1:5000/ns/repo@${D}`],
    [`nginx:1.2@${D}`, `docker.io/library/nginx:1.2@${D}`],
    [`host:5000/ns/repo:tag@${D}`, `host:5000/ns/repo:tag@${D}`],
    ['a__b', 'docker.io/library/a__b:latest'],
    ['a--b.c_d', 'docker.io/library/a--b.c_d:latest'],
    ['nginx:_tag.-x', 'docker.io/library/nginx:_tag.-x'],
  ])('%s → %s', (input, expected) => {
    expect(formatReference(parseReference(input))).toBe(expected);
  });

  it('splits host:port/ns/repo@digest into its parts', () => {
    expect(parseReference(`127.0.0.1:5000/ns/repo@${D}`)).toEqual({ domain: '127.0.0.1:5000', path: 'ns/repo', name: '127.0.0.1:5000/ns/repo', digest: D });
  });

  it('keeps both tag and digest', () => {
    const ref = parseReference(`quay.io/a/b:v1@${D}`);
    expect(ref.tag).toBe('v1');
    expect(ref.digest).toBe(D);
  });

  it('adds no tag with defaultTag: false', () => {
    expect(parseReference('nginx', { defaultTag: false }).tag).toBeUndefined();
    expect(parseReference(`nginx@${D}`).tag).toBeUndefined();
  });
});

describe('parseReference rejects', () => {
  it.each([
    ['', /empty/],
    ['Nginx', /must be lowercase/],
    ['foo/Bar', /must be lowercase/],
    ['foo/../bar', /invalid repository path component "\.\."/],
    ['../foo', /invalid registry host ".."/],
    ['foo//bar', /invalid repository path component ""/],
    ['foo/bar/', /invalid repository path component ""/],
    ['host:5000/', /invalid repository path component ""/],
    ['-foo', /invalid repository path component/],
    ['a___b', /invalid repository path component/],
    ['a.-b', /invalid repository path component/],
    [':tag', /missing repository name/],
    ['nginx:', /invalid tag ""/],
    ['nginx:-x', /invalid tag/],
    [`nginx:${'a'.repeat(129)}`, /invalid tag/],
    ['foo:bar/baz', /invalid registry host/],
    ['nginx@', /invalid digest/],
    ['nginx@sha256:abc', /64 lowercase hex/],
    [`nginx@sha256:${'A'.repeat(64)}`, /64 lowercase hex/],
    [`nginx@md5:${'a'.repeat(32)}`, /unsupported digest algorithm/],
    [`nginx@sha256:${'g'.repeat(64)}`, /64 lowercase hex/],
    [`nginx@${D}@${D}`, /invalid digest/],
    ['a\0b', /control characters/],
    ['nginx latest', /whitespace/],
    ['nginx\n', /whitespace/],
    [`${'a'.repeat(250)}/${'b'.repeat(10)}`, /longer than 255/],
    ['a'.repeat(5000), /too long/],
  ])('%j', (input, why) => {
    let caught: unknown;
    try {
      parseReference(input);
    } catch (err) {
      caught = err;
    }
    expect(isPullguardError(caught, 'INVALID_REFERENCE')).toBe(true);
    expect((caught as Error).message).toMatch(why);
  });

  it('keeps the error message short for a huge input with control characters', () => {
    let message = '';
    try {
      parseReference(`${'a'.repeat(100_000)}\0`);
    } catch (err) {
      message = (err as Error).message;
    }
    expect(message).toMatch(/too long/);
    expect(message.length).toBeLessThan(200);
  });
});

describe('withDigest / repositoryOf', () => {
  it('pins a reference to a digest, dropping the tag', () => {
    expect(formatReference(withDigest(parseReference('nginx:1'), D as never))).toBe(`docker.io/library/nginx@${D}`);
  });
  it('strips tag and digest', () => {
    expect(formatReference(repositoryOf(parseReference(`nginx:1@${D}`)))).toBe('docker.io/library/nginx');
  });
});

describe('one spelling per registry (policy scopes match references as text)', () => {
  it.each([
    ['127.0.0.1:05200/app:v1', 'port "05200" is not written canonically'],
    ['127.0.0.1:0/app:v1', 'port "0" is not written canonically'],
    ['127.0.0.1:65536/app:v1', 'port "65536" is not written canonically'],
    ['127.1:5200/app:v1', 'host "127.1" is not written canonically (the network reads it as "127.0.0.1"'],
    ['2130706433:5200/app:v1', 'host "2130706433" is not written canonically'],
    ['0x7f.0.0.1:5200/app:v1', 'host "0x7f.0.0.1" is not written canonically'],
    ['0177.0.0.1:5200/app:v1', 'host "0177.0.0.1" is not written canonically'],
    ['[::ffff:127.0.0.1]:5200/app:v1', 'is an IPv4 address written as IPv6'],
    ['[::ffff:7f00:1]:5200/app:v1', 'is an IPv4 address written as IPv6'],
    ['[0:0:0:0:0:0:0:1]:5200/app:v1', 'the network reads it as "[::1]"'],
    ['Registry.Example/app:v1', 'the network reads it as "registry.example"'],
    // docker/reference allows uppercase hosts, and an uppercase first component is a host; DNS
    // does not care, a text-matched scope does.
    ['Example.com/foo', 'the network reads it as "example.com"'],
    ['Registry/app', 'the network reads it as "registry"'],
  ])('%s is refused', (input, why) => {
    expect(() => parseReference(input)).toThrow(expect.objectContaining({ code: 'INVALID_REFERENCE', message: expect.stringContaining(why) }));
  });

  it.each([
    '127.0.0.1:5200/app:v1',
    '[::1]:5000/app:v1',
    '[2001:db8::1]/app:v1',
    'localhost:5000/app:v1',
    'registry.example:443/app:v1',
    'quay.io/ns/app:v1',
    'nginx',
  ])('%s is canonical', (input) => {
    expect(() => parseReference(input)).not.toThrow();
  });
});
