import { mkdtemp, rm, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { isPullguardError } from '../../../src/domain/errors.js';
import { describeEmbeddedDefault, loadPolicyFile, PolicySelector } from '../../../src/config/policy-loader.js';
import * as fx from '../../fixtures/signatures/fixtures.js';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'pullguard-policy-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const signedByPolicy = (keyPath: string) =>
  JSON.stringify({ default: [{ type: 'reject' }], transports: { docker: { 'registry.example': [{ type: 'signedBy', keyType: 'GPGKeys', keyPath }] } } });

describe('loadPolicyFile', () => {
  test('loads keys once and returns a frozen policy', async () => {
    const path = join(dir, 'ok.json');
    await writeFile(path, signedByPolicy(fx.keyFixturePath('trusted.gpg')));
    const loaded = await loadPolicyFile(path);
    expect(Object.isFrozen(loaded)).toBe(true);
    const req = loaded.policy.transports.get('docker')!.get('registry.example')![0]!;
    expect([...loaded.gpgKeys.get(req as never)!.primaryFingerprints]).toEqual([fx.TRUSTED_FPR]);
  });
  test('keyData (base64) works', async () => {
    const path = join(dir, 'data.json');
    const keyData = Buffer.from(fx.keyFixture('keyring.asc')).toString('base64');
    await writeFile(path, JSON.stringify({ default: [{ type: 'signedBy', keyType: 'GPGKeys', keyData }] }));
    const loaded = await loadPolicyFile(path);
    expect([...loaded.gpgKeys.values()][0]!.primaryFingerprints.size).toBe(2);
  });
  test('a missing key file is a configuration error at load, even with zero signatures', async () => {
    const path = join(dir, 'missing-key.json');
    await writeFile(path, signedByPolicy(join(dir, 'nope.gpg')));
    await expect(loadPolicyFile(path)).rejects.toSatisfy(
      (e) => isPullguardError(e, 'KEY_LOAD_FAILED') && (e as Error).message.includes('nope.gpg') && (e as Error).message.includes('ENOENT'),
    );
  });
  test('invalid policy is INVALID_POLICY, never the embedded default', async () => {
    const path = join(dir, 'bad.json');
    await writeFile(path, '{"default":[]}');
    await expect(loadPolicyFile(path, { allowEmbeddedDefault: true })).rejects.toSatisfy((e) => isPullguardError(e, 'INVALID_POLICY'));
  });
  test('no file at all: embedded default only when allowed', async () => {
    await expect(loadPolicyFile(join(dir, 'absent.json'))).rejects.toSatisfy((e) => isPullguardError(e, 'INVALID_POLICY'));
    const loaded = await loadPolicyFile(join(dir, 'absent.json'), { allowEmbeddedDefault: true });
    expect(loaded).toMatchObject({ embedded: true, policy: { source: '<embedded>', default: [{ type: 'insecureAcceptAnything' }] } });
    expect(describeEmbeddedDefault()).toMatch(/WARNING.*insecureAcceptAnything.*WITHOUT verifying signatures/);
  });
});

describe('PolicySelector', () => {
  test('per-namespace file wins, else the global one; reloads on change', async () => {
    const nsDir = join(dir, 'policies');
    await import('node:fs/promises').then((fs) => fs.mkdir(nsDir));
    const globalPath = join(dir, 'global.json');
    await writeFile(globalPath, '{"default":[{"type":"insecureAcceptAnything"}]}');
    await writeFile(join(nsDir, 'prod.json'), '{"default":[{"type":"reject"}]}');
    const selector = new PolicySelector({ globalPath, namespaceDir: nsDir });
    expect((await selector.policyForNamespace('prod')).policy.default[0]!.type).toBe('reject');
    expect((await selector.policyForNamespace('dev')).policy.source).toBe(globalPath);
    expect(await selector.policyForNamespace('prod')).toBe(await selector.policyForNamespace('prod')); // cached
    await writeFile(join(nsDir, 'prod.json'), '{"default":[{"type":"insecureAcceptAnything"}]} ');
    await utimes(join(nsDir, 'prod.json'), new Date(), new Date(Date.now() + 5000));
    expect((await selector.policyForNamespace('prod')).policy.default[0]!.type).toBe('insecureAcceptAnything');
  });
  test.each(['../etc/passwd', 'a/b', 'UPPER', '', '-x'])('namespace %j is never a path', async (ns) => {
    const selector = new PolicySelector({ globalPath: join(dir, 'global.json'), namespaceDir: dir });
    if (ns === '') {
      expect((await selector.policyForNamespace(ns)).policy.source).toBe(join(dir, 'global.json'));
    } else {
      await expect(selector.policyForNamespace(ns)).rejects.toSatisfy((e) => isPullguardError(e, 'INVALID_ARGUMENT'));
    }
  });
});
