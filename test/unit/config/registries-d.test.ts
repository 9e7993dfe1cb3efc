import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  loadRegistriesD,
  parseRegistriesD,
  registriesDScopeCandidates,
  UPSTREAM_DEFAULT_LOOKASIDE,
  type RegistriesDFile,
} from '../../../src/config/registries-d.js';
import { isPullguardError, ValidationError } from '../../../src/domain/errors.js';
import { parseReference } from '../../../src/domain/reference.js';

// One valid configuration; every invalid case below is a mutation of it.
const VALID_A = `
default-docker:
  lookaside: https://default.example/sigstore
docker:
  registry.redhat.io:
    lookaside: https://registry.redhat.io/containers/sigstore
  registry.access.redhat.com:
    sigstore: https://access.redhat.com/webassets/docker/content/sigstore
  quay.io/team:
    use-sigstore-attachments: true
  quay.io/team/app:
    lookaside: https://sigs.quay.example/team-app
    sigstore: https://ignored.example/legacy
  "*.example.com":
    lookaside: file:///srv/sigstore/wild
  localhost:5000:
    lookaside: http://127.0.0.1:8080/local
    use-sigstore-attachments: false
    unknown-key: ignored like upstream
`;
const VALID_B = `
docker:
  quay.io:
    lookaside: https://sigs.quay.example/root
    use-sigstore-attachments: false
  quay.io/team/app:latest:
    lookaside-staging: file:///staging/only
`;
const files = (a = VALID_A, b = VALID_B): RegistriesDFile[] => [
  { path: '/etc/containers/registries.d/a.yaml', text: a },
  { path: '/etc/containers/registries.d/b.yaml', text: b },
];
const ref = (s: string) => parseReference(s);

function problemsOf(fn: () => unknown): readonly string[] {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(ValidationError);
    expect(isPullguardError(err, 'INVALID_REGISTRIES_D')).toBe(true);
    return (err as ValidationError).problems;
  }
  throw new Error('expected a ValidationError');
}

describe('registries.d scope candidates', () => {
  it('orders identity, repository, namespaces, host[:port], then wildcards of the port-less host', () => {
    expect(registriesDScopeCandidates(ref('registry.redhat.io/ns/sub/repo:v1'))).toEqual([
      'registry.redhat.io/ns/sub/repo:v1',
      'registry.redhat.io/ns/sub/repo',
      'registry.redhat.io/ns/sub',
      'registry.redhat.io/ns',
      'registry.redhat.io',
      '*.redhat.io',
      '*.io',
    ]);
    expect(registriesDScopeCandidates(ref('busybox'))[0]).toBe('docker.io/library/busybox:latest');
    const digest = `sha256:${'a'.repeat(64)}`;
    expect(registriesDScopeCandidates(ref(`localhost:9999/busybox@${digest}`))).toEqual([
      `localhost:9999/busybox@${digest}`,
      'localhost:9999/busybox',
      'localhost:9999',
    ]);
  });
});

describe('parseRegistriesD on a valid configuration', () => {
  const config = parseRegistriesD(files());

  it('matches the most specific scope with a URL', () => {
    expect(config.lookasideFor(ref('registry.redhat.io/ubi9/ubi:latest'))).toEqual({
      baseUrl: 'https://registry.redhat.io/containers/sigstore',
      scope: 'registry.redhat.io',
      file: '/etc/containers/registries.d/a.yaml',
    });
    // lookaside beats the legacy sigstore key within one section
    expect(config.lookasideFor(ref('quay.io/team/app:v2'))?.baseUrl).toBe('https://sigs.quay.example/team-app');
    // legacy `sigstore:` alone still works
    expect(config.lookasideFor(ref('registry.access.redhat.com/rhel7'))?.baseUrl).toBe('https://access.redhat.com/webassets/docker/content/sigstore');
  });

  it('falls through to the parent scope when a section has no read URL', () => {
    // quay.io/team sets only use-sigstore-attachments; the identity section only a staging URL.
    expect(config.lookasideFor(ref('quay.io/team/other:v1'))).toMatchObject({ baseUrl: 'https://sigs.quay.example/root', scope: 'quay.io' });
    expect(config.lookasideFor(ref('quay.io/team/app:latest'))).toMatchObject({ scope: 'quay.io/team/app' });
  });

  it('uses wildcards, then default-docker, then the built-in default', () => {
    expect(config.lookasideFor(ref('a.b.example.com/x'))).toMatchObject({ baseUrl: 'file:///srv/sigstore/wild', scope: '*.example.com' });
    expect(config.lookasideFor(ref('docker.io/library/nginx'))).toMatchObject({ scope: 'default-docker' });
    const noDefault = parseRegistriesD([{ path: '/x/b.yaml', text: VALID_B }]);
    expect(noDefault.lookasideFor(ref('nginx'))).toEqual({ baseUrl: UPSTREAM_DEFAULT_LOOKASIDE, scope: 'built-in default' });
    const ours = parseRegistriesD([], { defaultLookaside: 'file:///var/lib/pullguard/sigstore' });
    expect(ours.lookasideFor(ref('nginx'))?.baseUrl).toBe('file:///var/lib/pullguard/sigstore');
    expect(parseRegistriesD([], { defaultLookaside: null }).lookasideFor(ref('nginx'))).toBeUndefined();
  });

  it('never falls back from host:port to the bare host', () => {
    expect(config.lookasideFor(ref('localhost:5000/app'))?.scope).toBe('localhost:5000');
    expect(config.lookasideFor(ref('localhost:5001/app'))?.scope).toBe('default-docker');
  });

  it('resolves use-sigstore-attachments per field, first explicit setting wins, default false', () => {
    expect(config.useSigstoreAttachmentsFor(ref('quay.io/team/app:v1'))).toBe(true); // from quay.io/team
    expect(config.useSigstoreAttachmentsFor(ref('quay.io/other/app'))).toBe(false); // quay.io says false
    expect(config.useSigstoreAttachmentsFor(ref('registry.redhat.io/x'))).toBe(false); // nobody sets it
    const yes = parseRegistriesD([{ path: '/y.yaml', text: 'default-docker:\n  use-sigstore-attachments: yes\n' }]);
    expect(yes.useSigstoreAttachmentsFor(ref('nginx'))).toBe(true);
  });

  it('returns frozen results', () => {
    expect(Object.isFrozen(config)).toBe(true);
    expect(Object.isFrozen(config.lookasideFor(ref('nginx')))).toBe(true);
  });
});

describe('parseRegistriesD rejects mutated configurations with upstream texts', () => {
  it('duplicate default-docker across files', () => {
    const b = `default-docker:\n  lookaside: https://other.example\n${VALID_B}`;
    expect(problemsOf(() => parseRegistriesD(files(VALID_A, b)))).toEqual([
      'Error parsing signature storage configuration: "default-docker" defined both in "/etc/containers/registries.d/a.yaml" and "/etc/containers/registries.d/b.yaml"',
    ]);
  });

  it('duplicate docker namespace across files', () => {
    const b = VALID_B.replace('quay.io:', 'registry.redhat.io:');
    expect(problemsOf(() => parseRegistriesD(files(VALID_A, b)))).toEqual([
      'Error parsing signature storage configuration: "docker" namespace "registry.redhat.io" defined both in "/etc/containers/registries.d/a.yaml" and "/etc/containers/registries.d/b.yaml"',
    ]);
  });

  it('invalid URL', () => {
    const a = VALID_A.replace('https://registry.redhat.io/containers/sigstore', 'not a url');
    const problems = problemsOf(() => parseRegistriesD(files(a)));
    expect(problems).toHaveLength(1);
    expect(problems[0]).toContain('Invalid signature storage URL not a url: Invalid URL');
  });

  it('YAML syntax error and a duplicate key within one file', () => {
    const a = VALID_A.replace('  quay.io/team:\n', '  quay.io/team: [\n');
    const problems = problemsOf(() => parseRegistriesD(files(a)));
    expect(problems).toHaveLength(1);
    expect(problems[0]).toMatch(/^parsing \/etc\/containers\/registries\.d\/a\.yaml: /);
    const dupKey = `${VALID_A}  registry.redhat.io:\n    lookaside: https://x.example\n`;
    expect(problemsOf(() => parseRegistriesD(files(dupKey)))[0]).toMatch(/^parsing .*a\.yaml: .*[Uu]nique|^parsing .*a\.yaml: .*already/);
  });

  it('reports every problem of every file at once', () => {
    const a = VALID_A.replace('https://registry.redhat.io/containers/sigstore', 'not a url').replace(
      'use-sigstore-attachments: true',
      'use-sigstore-attachments: [1]',
    );
    const b = `default-docker: {lookaside: https://b.example}\n${VALID_B.replace('quay.io:', 'registry.redhat.io:')}`;
    const problems = problemsOf(() => parseRegistriesD([...files(a, b), { path: '/c.yaml', text: 'docker: [' }]));
    expect(problems).toHaveLength(5);
    expect(problems.join('\n')).toContain('"default-docker" defined both in');
    expect(problems.join('\n')).toContain('"docker" namespace "registry.redhat.io" defined both in');
    expect(problems.join('\n')).toContain('use-sigstore-attachments must be a boolean');
    expect(problems.join('\n')).toContain('parsing /c.yaml: ');
  });
});

describe('loadRegistriesD', () => {
  const dirs: string[] = [];
  afterAll(async () => {
    for (const d of dirs) await rm(d, { recursive: true, force: true });
  });

  it('treats a missing directory as empty and reads only *.yaml, sorted', async () => {
    expect((await loadRegistriesD('/nonexistent/registries.d')).lookasideFor(ref('nginx'))?.scope).toBe('built-in default');
    const dir = await mkdtemp(join(tmpdir(), 'regd-'));
    dirs.push(dir);
    await writeFile(join(dir, 'b.yaml'), VALID_B);
    await writeFile(join(dir, 'a.yaml'), VALID_A);
    await writeFile(join(dir, 'z.yml'), 'this: [is not read');
    await writeFile(join(dir, 'c.yaml.bak'), 'default-docker: {lookaside: https://bak.example}');
    const config = await loadRegistriesD(dir);
    expect(config.lookasideFor(ref('nginx'))?.baseUrl).toBe('https://default.example/sigstore');
    await writeFile(join(dir, '0.yaml'), 'docker:\n  quay.io: {lookaside: https://dup.example}\n');
    await expect(loadRegistriesD(dir)).rejects.toThrow(
      `"docker" namespace "quay.io" defined both in ${JSON.stringify(join(dir, '0.yaml'))} and ${JSON.stringify(join(dir, 'b.yaml'))}`,
    );
  });

  it('reports an unreadable entry together with parse problems', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'regd-'));
    dirs.push(dir);
    await mkdir(join(dir, 'dir.yaml'));
    await writeFile(join(dir, 'bad.yaml'), 'docker: [');
    await expect(loadRegistriesD(dir)).rejects.toSatisfy((err: unknown) => {
      const problems = (err as ValidationError).problems;
      return problems.length === 2 && problems.some((p) => p.startsWith(`reading ${join(dir, 'dir.yaml')}`));
    });
  });
});
