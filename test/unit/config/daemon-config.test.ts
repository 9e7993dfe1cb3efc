import { describe, expect, it } from 'vitest';
import { loadDaemonConfig, parseDuration, type Environment } from '../../../src/config/daemon-config.js';
import { ValidationError } from '../../../src/domain/errors.js';

function env(files: Record<string, string> = {}, extra: Partial<Environment> = {}): Environment {
  return { cwd: '/srv', env: {}, exists: (p) => p in files, readFile: (p) => files[p] ?? '', hostArch: 'x64', hostname: 'Node-1', ...extra };
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
    const config = loadDaemonConfig([], env({ '/etc/containers/policy.json': '{}', '/etc/containers/registries.d': '', '/etc/containers/registries.conf': '' }));
    expect(config).toMatchObject({ signaturePolicy: '/etc/containers/policy.json', registriesD: '/etc/containers/registries.d', registriesConf: '/etc/containers/registries.conf' });
  });

  it('layers flags over the config file', () => {
    const file = JSON.stringify({ stateDir: '/var/lib/pullguard', lookasideTimeoutMs: 2500, insecureRegistries: ['127.0.0.1:5000'], platform: 'linux/arm64/v8' });
    const config = loadDaemonConfig(['--config', '/etc/pullguard.json', '--socket', '/run/pullguard/pullguard.sock', '--insecure-registry', 'mirror.local'], env({ '/etc/pullguard.json': file }));
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
      ['--config', '/c.json', '--signature-policy', '/missing.json', '--platform', 'linux', '--insecure-registry', 'a b', '--signature-budget', '0s', '--log-level', 'loud'],
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

  it('parses durations', () => {
    expect([parseDuration('10s'), parseDuration('500ms'), parseDuration('2m'), parseDuration('750'), parseDuration('soon')]).toEqual([10_000, 500, 120_000, 750, undefined]);
  });
});
