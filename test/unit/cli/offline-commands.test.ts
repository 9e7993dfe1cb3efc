/**
 * `pullguard verify` and `pullguard fsck` in process: they resolve the configuration as `serve`
 * does (--config, PULLGUARD_STATE_DIR, the same defaults), verify names the policy it re-checked
 * beside the one the image was accepted under, and neither ever creates a store.
 */
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { runFsck, runVerify, type OfflineIo } from '../../../src/cli/offline-commands.js';
import { processEnvironment } from '../../../src/config/daemon-config.js';
import type { VerificationRecordV1 } from '../../../src/pull/verification-record.js';
import { openStore } from '../../../src/store/open-store.js';
import { keyFixturePath } from '../../fixtures/signatures/fixtures.js';
import { FIXTURE_IMAGE, pullSignedFixture } from '../../helpers/signed-fixture-store.js';

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'pullguard-offline-'));
});
afterEach(async () => rm(dir, { recursive: true, force: true }));

interface Run {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

function sink(): Writable & { text: string } {
  const out = new Writable({
    write(chunk: Buffer, _encoding, done) {
      out.text += chunk.toString('utf8');
      done();
    },
  }) as Writable & { text: string };
  out.text = '';
  return out;
}

/** Runs a command with its own working directory and environment variables (nothing of this process's). */
async function run(command: typeof runVerify, argv: string[], env: Record<string, string> = {}): Promise<Run> {
  const stdout = sink();
  const stderr = sink();
  const io: OfflineIo = { stdout, stderr, environment: { ...processEnvironment(), cwd: dir, env } };
  const code = await command(argv, io);
  return { code, stdout: stdout.text, stderr: stderr.text };
}

const signedBy = (keyPath: string): string =>
  JSON.stringify({ default: [{ type: 'reject' }], transports: { docker: { 'registry.example': [{ type: 'signedBy', keyType: 'GPGKeys', keyPath }] } } });

async function writePolicy(name: string, text: string): Promise<string> {
  const path = join(dir, name);
  await writeFile(path, text);
  return path;
}

describe('pullguard verify', () => {
  it('reads the store and policy of the --config file the server runs with, and names the policy it re-checked and the one it was accepted under', async () => {
    const policy = await writePolicy('policy.json', signedBy(keyFixturePath('trusted.gpg')));
    const config = await writePolicy('pullguard.json', JSON.stringify({ stateDir: join(dir, 'state'), signaturePolicy: policy }));
    const record = await pullSignedFixture(join(dir, 'state', 'store'), { globalPath: policy });
    expect(record).toMatchObject({ policyFile: policy, scope: 'registry.example', policySource: { kind: 'file', file: policy } });

    const verified = await run(runVerify, [FIXTURE_IMAGE, '--config', config]);
    expect(verified.stderr).toBe('');
    expect(verified.code).toBe(0);
    expect(verified.stdout).toMatch(new RegExp(`^OK: ${FIXTURE_IMAGE} \\(sha256:[0-9a-f]{64}\\) still satisfies ${policy} \\[registry.example\\]\n`));
    expect(verified.stdout).toContain(`  re-checked under: ${policy}, scope "registry.example"\n`);
    expect(verified.stdout).toContain(`  accepted under: ${policy}, scope "registry.example" (2026-01-01T00:00:00.000Z)\n`);
    expect(verified.stdout).not.toContain('note:');
  });

  it('finds the store through PULLGUARD_STATE_DIR as serve does, and says when the policy re-checked is not the one the image was accepted under', async () => {
    const policy = await writePolicy('policy.json', signedBy(keyFixturePath('trusted.gpg')));
    await pullSignedFixture(join(dir, 'state', 'store'), { globalPath: policy });
    const otherKey = await writePolicy('other-key.json', signedBy(keyFixturePath('untrusted.gpg')));

    const denied = await run(runVerify, [FIXTURE_IMAGE, '--signature-policy', otherKey], { PULLGUARD_STATE_DIR: join(dir, 'state') });
    expect(denied.code).toBe(1);
    expect(denied.stdout).toMatch(new RegExp(`^NOT SATISFIED: ${FIXTURE_IMAGE} .* under ${otherKey} \\[registry.example\\]: `));
    expect(denied.stdout).toContain(`  re-checked under: ${otherKey}, scope "registry.example"\n`);
    expect(denied.stdout).toContain(`  accepted under: ${policy}, scope "registry.example"`);
    expect(denied.stdout).toMatch(/note: this is not the policy and scope the image was accepted under/);
  });

  it('re-checks under the namespace the image was pulled for (its per-namespace policy), unless --namespace says otherwise', async () => {
    const rejectAll = await writePolicy('policy.json', JSON.stringify({ default: [{ type: 'reject' }] }));
    await mkdir(join(dir, 'ns'));
    const teamPolicy = await writePolicy('ns/team-a.json', signedBy(keyFixturePath('trusted.gpg')));
    const selection = { globalPath: rejectAll, namespaceDir: join(dir, 'ns') };
    const record = await pullSignedFixture(join(dir, 'state', 'store'), selection, 'team-a');
    expect(record).toMatchObject({ namespace: 'team-a', policySource: { kind: 'namespace', file: teamPolicy, namespace: 'team-a' } });
    const config = await writePolicy(
      'pullguard.json',
      JSON.stringify({ stateDir: join(dir, 'state'), signaturePolicy: rejectAll, signaturePolicyDir: join(dir, 'ns') }),
    );

    const same = await run(runVerify, [FIXTURE_IMAGE, '--config', config]);
    expect(same.code).toBe(0);
    expect(same.stdout).toContain(`  re-checked under: ${teamPolicy} (policy of namespace team-a), scope "registry.example"\n`);
    expect(same.stdout).toContain(
      `  accepted under: ${teamPolicy} (policy of namespace team-a), scope "registry.example" (2026-01-01T00:00:00.000Z, namespace team-a)\n`,
    );
    expect(same.stdout).not.toContain('note:');

    const other = await run(runVerify, [FIXTURE_IMAGE, '--config', config, '--namespace', 'team-b']);
    expect(other.code).toBe(1);
    expect(other.stdout).toContain(`  re-checked under: ${rejectAll}, scope "default"\n`);
    expect(other.stdout).toMatch(/note: /);
  });

  it('still reads a record written before the policy source was kept', async () => {
    const policy = await writePolicy('policy.json', signedBy(keyFixturePath('trusted.gpg')));
    await pullSignedFixture(join(dir, 'state', 'store'), { globalPath: policy });
    const store = await openStore(join(dir, 'state', 'store'));
    try {
      const [image] = store.images.list();
      const records = image!.verification as Record<string, VerificationRecordV1>;
      const old = Object.fromEntries(Object.entries(records).map(([repo, { policySource: _source, namespace: _namespace, ...rest }]) => [repo, rest]));
      await store.images.put({ ...image!, verification: old });
    } finally {
      await store.close();
    }
    const verified = await run(runVerify, [FIXTURE_IMAGE, '--state-dir', join(dir, 'state'), '--signature-policy', policy]);
    expect(verified.code).toBe(0);
    expect(verified.stdout).toContain(`  accepted under: ${policy}, scope "registry.example"`);
    expect(verified.stdout).not.toContain('note:');
  });

  it("takes the server's whole command line, and checks it as serve does", async () => {
    const policy = await writePolicy('policy.json', signedBy(keyFixturePath('trusted.gpg')));
    await pullSignedFixture(join(dir, 'state', 'store'), { globalPath: policy });
    const serveFlags = [
      '--state-dir',
      join(dir, 'state'),
      '--signature-policy',
      policy,
      '--socket',
      join(dir, 'pg.sock'),
      '--log-level',
      'debug',
      '--insecure-registry',
      'registry.example',
    ];
    expect((await run(runVerify, [FIXTURE_IMAGE, ...serveFlags])).code).toBe(0);
    expect((await run(runFsck, serveFlags)).code).toBe(0);
    const missing = await run(runVerify, [FIXTURE_IMAGE, ...serveFlags, '--registries-d', join(dir, 'registries.d')]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toBe(
      `pullguard verify: invalid configuration: registries.d directory ${join(dir, 'registries.d')} does not exist (--registries-d)\n`,
    );
  });

  it('prints a clean message and the usage for a mistyped flag (exit 2)', async () => {
    const result = await run(runVerify, [FIXTURE_IMAGE, '--sate-dir', join(dir, 'state')]);
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/^pullguard verify: unknown option --sate-dir\n\nUsage: pullguard verify IMAGE/);
  });
});

describe('offline commands never create a store', () => {
  for (const [name, command, argv] of [
    ['fsck', runFsck, []],
    ['verify', runVerify, [FIXTURE_IMAGE]],
  ] as const) {
    it(`${name} refuses a state directory without a store, given by flag or by PULLGUARD_STATE_DIR, and leaves it absent`, async () => {
      const typo = join(dir, 'sate');
      for (const [args, env] of [
        [[...argv, '--state-dir', typo], {}],
        [[...argv], { PULLGUARD_STATE_DIR: typo }],
      ] as const) {
        const result = await run(command, [...args], env);
        expect(result.code).toBe(1);
        expect(result.stdout).toBe('');
        expect(result.stderr).toBe(`pullguard ${name}: no pullguard store at ${join(typo, 'store')} (nothing was created); is the state directory right?\n`);
        expect(existsSync(typo)).toBe(false);
      }
      // An existing directory that holds no store is refused the same way, and stays empty.
      await mkdir(typo);
      expect((await run(command, [...argv, '--state-dir', typo])).code).toBe(1);
      expect(existsSync(join(typo, 'store'))).toBe(false);
    });
  }

  it('fsck checks the store the --config file names', async () => {
    const policy = await writePolicy('policy.json', signedBy(keyFixturePath('trusted.gpg')));
    await pullSignedFixture(join(dir, 'state', 'store'), { globalPath: policy });
    const config = await writePolicy('pullguard.json', JSON.stringify({ stateDir: join(dir, 'state') }));
    const result = await run(runFsck, ['--config', config]);
    expect(result.code).toBe(0);
    expect(result.stdout).toContain(`store: ${join(dir, 'state', 'store')}\n`);
    expect(result.stdout).toContain('images checked: 1\n');
    expect(result.stdout).toMatch(/store is consistent\n$/);
  });
});
