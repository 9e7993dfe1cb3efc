import { describe, expect, it } from 'vitest';
import {
  defaultClientSocket,
  loadDaemonConfig,
  parseDuration,
  policySelection,
  resolveDaemonConfig,
  type Environment,
} from '../../../src/config/daemon-config.js';
import { ValidationError } from '../../../src/domain/errors.js';

/** A fake file system: a path ending in `/` is a directory, anything else a file. */
function env(files: Record<string, string> = {}, extra: Partial<Environment> = {}): Environment {
  const exists = (p: string): boolean => p in files || `${p}/` in files;
  return { cwd: '/srv', env: {}, exists, isDirectory: (p) => `${p}/` in files, readFile: (p) => files[p] ?? '', hostArch: 'x64', hostname: 'Node-1', ...extra };
}

function problems(argv: string[], environment: Environment): readonly string[] {
  try {
    loadDaemonConfig(argv, environment);
  } catch (err) {
    if (err instanceof ValidationError) return err.problems;
    throw err;
  }
  return [];
}

describe('loadDaemonConfig', () => {
  it('uses embedded defaults under ./.pullguard when nothing is configured', () => {
    const config = loadDaemonConfig([], env());
    expect(config).toMatchObject({
      stateDir: '/srv/.pullguard',
      socket: '/srv/.pullguard/pullguard.sock',
      storeDir: '/srv/.pullguard/store',
      signaturePolicy: undefined,
      registriesD: undefined,
      platform: { os: 'linux', architecture: 'amd64' },
      lookaside: { requestTimeoutMs: 10_000, budgetMs: 30_000 },
    });
    expect(Object.isFrozen(config.lookaside)).toBe(true);
  });

  it('picks the system files containers/image uses when they exist', () => {
    const config = loadDaemonConfig(
      [],
      env({ '/etc/containers/policy.json': '{}', '/etc/containers/registries.d/': '', '/etc/containers/registries.conf': '' }),
    );
    expect(config).toMatchObject({
      signaturePolicy: '/etc/containers/policy.json',
      registriesD: '/etc/containers/registries.d',
      registriesConf: '/etc/containers/registries.conf',
    });
  });

  it('layers flags over the config file', () => {
    const file = JSON.stringify({
      stateDir: '/var/lib/pullguard',
      lookasideTimeoutMs: 2500,
      insecureRegistries: ['127.0.0.1:5000'],
      platform: 'linux/arm64/v8',
    });
    const config = loadDaemonConfig(
      ['--config', '/etc/pullguard.json', '--socket', '/run/pullguard/pullguard.sock', '--insecure-registry', 'mirror.local'],
      env({ '/etc/pullguard.json': file }),
    );
    expect(config).toMatchObject({
      stateDir: '/var/lib/pullguard',
      socket: '/run/pullguard/pullguard.sock',
      insecureRegistries: ['mirror.local', '127.0.0.1:5000'],
      platform: { os: 'linux', architecture: 'arm64', variant: 'v8' },
      lookaside: { requestTimeoutMs: 2500 },
    });
  });

  it('reports every problem at once', () => {
    const found = problems(
      [
        '--config',
        '/c.json',
        '--signature-policy',
        '/missing.json',
        '--platform',
        'linux',
        '--insecure-registry',
        'a b',
        '--signature-budget',
        '0s',
        '--log-level',
        'loud',
      ],
      env({ '/c.json': JSON.stringify({ stateDirectory: '/x', layerConcurrency: 'four' }) }),
    );
    expect(found).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/unknown key "stateDirectory"/),
        expect.stringMatching(/layerConcurrency must be a number/),
        expect.stringMatching(/signature policy \/missing.json does not exist/),
        expect.stringMatching(/--insecure-registry "a b"/),
        expect.stringMatching(/--platform "linux"/),
        expect.stringMatching(/--signature-budget/),
        expect.stringMatching(/--log-level "loud"/),
      ]),
    );
  });

  it('refuses a --registries-d or --signature-policy-dir that does not exist or is not a directory, with the other problems', () => {
    const found = problems(
      [
        '--registries-d',
        '/etc/containers/registries.dd',
        '--signature-policy-dir',
        '/etc/pullguard/policies',
        '--certs-dir',
        '/etc/containers/policy.json',
        '--log-level',
        'loud',
      ],
      env({ '/etc/containers/policy.json': '{}' }),
    );
    expect(found).toEqual([
      'signature policy directory /etc/pullguard/policies does not exist (--signature-policy-dir)',
      'registries.d directory /etc/containers/registries.dd does not exist (--registries-d)',
      'certs directory /etc/containers/policy.json is not a directory (--certs-dir)',
      '--log-level "loud" is not one of fatal, error, warn, info, debug, trace, silent',
    ]);
  });

  it('refuses the same directories named in the config file, naming the key and the file', () => {
    const file = JSON.stringify({ registriesD: 'registries.d', signaturePolicyDir: '/nowhere' });
    expect(problems(['--config', 'pullguard.json'], env({ '/srv/pullguard.json': file }))).toEqual([
      'signature policy directory /nowhere does not exist (signaturePolicyDir in /srv/pullguard.json)',
      'registries.d directory /srv/registries.d does not exist (registriesD in /srv/pullguard.json)',
    ]);
  });

  it('leaves a default directory that does not exist off, as before', () => {
    expect(loadDaemonConfig([], env({ '/etc/containers/policy.json': '{}' }))).toMatchObject({
      registriesD: undefined,
      signaturePolicyDir: undefined,
      certsDir: undefined,
    });
    expect(loadDaemonConfig(['--registries-d', '/etc/rd'], env({ '/etc/rd/': '' })).registriesD).toBe('/etc/rd');
  });

  it('takes each setting from its flag, else the config file, else the environment, else the default', () => {
    const environment = (files: Record<string, string>): Environment =>
      env(files, { env: { PULLGUARD_STATE_DIR: '/var/lib/from-env', PULLGUARD_SOCKET: '/run/from-env.sock' } });
    expect(loadDaemonConfig([], env())).toMatchObject({ stateDir: '/srv/.pullguard', socket: '/srv/.pullguard/pullguard.sock' });
    expect(loadDaemonConfig([], env({}, { env: { PULLGUARD_STATE_DIR: 'state' } }))).toMatchObject({
      stateDir: '/srv/state',
      socket: '/srv/state/pullguard.sock',
      storeDir: '/srv/state/store',
    });
    expect(loadDaemonConfig([], environment({}))).toMatchObject({ stateDir: '/var/lib/from-env', socket: '/run/from-env.sock' });
    const file = { '/c.json': JSON.stringify({ stateDir: '/var/lib/from-file', socket: '/run/from-file.sock' }) };
    expect(loadDaemonConfig(['--config', '/c.json'], environment(file))).toMatchObject({ stateDir: '/var/lib/from-file', socket: '/run/from-file.sock' });
    expect(loadDaemonConfig(['--config', '/c.json', '--state-dir', '/flag', '--socket', '/flag.sock'], environment(file))).toMatchObject({
      stateDir: '/flag',
      socket: '/flag.sock',
    });
  });

  it('gives verify and fsck the configuration serve gets from the same flags, file and environment', () => {
    const files = { '/c.json': JSON.stringify({ signaturePolicy: '/etc/p.json', signaturePolicyDir: '/etc/ns' }), '/etc/p.json': '{}', '/etc/ns/': '' };
    const environment = env(files, { env: { PULLGUARD_STATE_DIR: '/var/lib/pullguard' } });
    const served = loadDaemonConfig(['--config', '/c.json', '--log-level', 'debug'], environment);
    const offline = resolveDaemonConfig({ config: '/c.json' }, environment);
    expect(offline.storeDir).toBe(served.storeDir);
    expect(policySelection(offline)).toEqual(policySelection(served));
    expect(policySelection(offline)).toEqual({ globalPath: '/etc/p.json', namespaceDir: '/etc/ns', allowEmbeddedDefault: false });
    expect(policySelection(loadDaemonConfig([], env()))).toEqual({ globalPath: '/etc/containers/policy.json', allowEmbeddedDefault: true });
  });

  it('points client commands at the socket serve listens on with the same environment', () => {
    expect(defaultClientSocket(env())).toBe('/srv/.pullguard/pullguard.sock');
    expect(defaultClientSocket(env({}, { env: { PULLGUARD_STATE_DIR: '/var/lib/pullguard' } }))).toBe('/var/lib/pullguard/pullguard.sock');
    expect(defaultClientSocket(env({}, { env: { PULLGUARD_STATE_DIR: '/var/lib/pullguard', PULLGUARD_SOCKET: 'pg.sock' } }))).toBe('/srv/pg.sock');
    for (const vars of [{}, { PULLGUARD_STATE_DIR: '/var/lib/pullguard' }, { PULLGUARD_SOCKET: '/run/pg.sock' }]) {
      expect(defaultClientSocket(env({}, { env: vars }))).toBe(loadDaemonConfig([], env({}, { env: vars })).socket);
    }
  });

  it('parses durations', () => {
    expect([parseDuration('10s'), parseDuration('500ms'), parseDuration('2m'), parseDuration('750'), parseDuration('soon')]).toEqual([
      10_000,
      500,
      120_000,
      750,
      undefined,
    ]);
  });
});
