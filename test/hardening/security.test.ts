/**
 * Security, end to end through the real server over its socket:
 *  - signatures that must never be accepted (another image's digest, another repository, a subkey of
 *    an untrusted key, an untrusted key, expired, a valid signature with a second signature packet),
 *    made with real gpg/skopeo and served by a lookaside server; a valid one is the control;
 *  - a registry answering a pinned-digest pull with other bytes: refused, nothing stored;
 *  - a credential scan: distinctive passwords and tokens through Basic, Bearer, wrong passwords,
 *    AuthConfig.auth, identity/registry tokens, must not appear (nor their base64) in any log line,
 *    error message, status detail, CLI output or metrics text;
 *  - the socket is 0660 in a directory that is not world-writable.
 */
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, statSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import type * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  keyFixturePath,
  MANIFEST_DIGEST,
  SIGNATURE_FIXTURES_DIR,
  SIGNED_IDENTITY,
  signatureFixture,
  type SignatureFixture,
} from '../fixtures/signatures/fixtures.js';
import { startFaultRegistry, type FaultRegistry } from '../helpers/fault-registry.js';
import { simpleSigningPayload } from '../helpers/gpg.js';
import { startLookasideServer, type LookasideServer } from '../helpers/lookaside-server.js';
import { buildOciImage, type BuiltImage } from '../helpers/oci-image.js';
import { freePort, pushImage, startRegistry, type StartedRegistry } from '../helpers/registry.js';
import { MAIN, startPullguard, type RunningPullguard } from '../helpers/pullguard-server.js';
import { figure } from './fuzz-support.js';

const execFileAsync = promisify(execFile);

let work: string;
let registry: StartedRegistry;
let lookaside: LookasideServer;
let faults: FaultRegistry;
let pg: RunningPullguard;
let gnupgHome: string;
let extraKeyPath: string;
let faultImage: BuiltImage;
let otherImage: BuiltImage;
let faultsInjected = 0;

/** gpg at a faked time (an expired signature made with real gpg, by a key that existed then). */
async function gpg(args: string[], options: { at?: Date; input?: string } = {}): Promise<Buffer> {
  const faked =
    options.at !== undefined ? ['--faked-system-time', `${options.at.toISOString().replace(/[-:]/g, '').slice(0, 15)}!`, '--ignore-time-conflict'] : [];
  const child = execFileAsync('gpg', ['--batch', '--quiet', '--pinentry-mode', 'loopback', '--passphrase', '', ...faked, ...args], {
    env: { ...process.env, GNUPGHOME: gnupgHome },
    encoding: 'buffer',
  });
  if (options.input !== undefined) child.child.stdin?.end(options.input);
  return (await child).stdout;
}

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'pullguard-security-'));
  gnupgHome = join(work, 'gnupg');
  await mkdir(gnupgHome, { mode: 0o700 });
  [registry, lookaside, faults] = await Promise.all([startRegistry(), startLookasideServer(), startFaultRegistry()]);
  // The fixture image keeps its digest when pushed, so the fixture signatures apply to it.
  await execFileAsync('skopeo', [
    '--insecure-policy',
    'copy',
    '--quiet',
    '--dest-tls-verify=false',
    `oci:${join(SIGNATURE_FIXTURES_DIR, 'image')}:v1`,
    `docker://${registry.host}/app:v1`,
  ]);
  const pushed = await fetch(`${registry.url}/v2/app/manifests/v1`, { headers: { accept: 'application/vnd.oci.image.manifest.v1+json' } });
  await pushed.arrayBuffer();
  expect(pushed.headers.get('docker-content-digest')).toBe(MANIFEST_DIGEST);

  // A second trusted key, created 3 days ago, for the expired and wrong-digest signatures.
  const threeDaysAgo = new Date(Date.now() - 3 * 86400_000);
  await gpg(['--quick-gen-key', 'Pullguard Expiry Test <expiry@pullguard.test>', 'ed25519', 'sign', 'never'], { at: threeDaysAgo });
  extraKeyPath = join(work, 'extra.gpg');
  await writeFile(extraKeyPath, await gpg(['--export', 'expiry@pullguard.test']));

  faultImage = await buildOciImage(join(work, 'pinned'), { tag: 'v1', seed: 90, layers: [{ size: 50_000 }] });
  otherImage = await buildOciImage(join(work, 'other'), { tag: 'v1', seed: 91, layers: [{ size: 50_000 }] });
  faults.addImage('pinned', 'v1', faultImage);
  faults.addImage('pinned', 'other', otherImage);

  const policy = join(work, 'policy.json');
  await writeFile(
    policy,
    JSON.stringify({
      default: [{ type: 'reject' }],
      transports: {
        docker: {
          [registry.host]: [
            {
              type: 'signedBy',
              keyType: 'GPGKeys',
              keyPaths: [keyFixturePath('trusted.gpg'), extraKeyPath],
              signedIdentity: { type: 'remapIdentity', prefix: registry.host, signedPrefix: 'registry.example' },
            },
          ],
          [faults.host]: [{ type: 'insecureAcceptAnything' }],
        },
      },
    }),
  );
  const registriesD = join(work, 'registries.d');
  await mkdir(registriesD);
  await writeFile(join(registriesD, 'lookaside.yaml'), `docker:\n  ${registry.host}:\n    lookaside: ${lookaside.url}\n`);
  pg = await startPullguard({
    args: ['--signature-policy', policy, '--registries-d', registriesD, '--insecure-registry', registry.host, '--insecure-registry', faults.host],
  });
}, 120_000);

afterAll(async () => {
  await pg?.stop();
  await Promise.all([registry?.stop(), lookaside?.stop(), faults?.stop()]);
  await execFileAsync('gpgconf', ['--kill', 'all'], { env: { ...process.env, GNUPGHOME: gnupgHome } }).catch(() => undefined);
  await rm(work, { recursive: true, force: true });
});

async function pullError(image: string, auth?: Record<string, string>): Promise<grpc.ServiceError | undefined> {
  return pg.client.call('PullImage', { image: { image }, ...(auth !== undefined ? { auth } : {}) }).then(
    () => undefined,
    (e: grpc.ServiceError) => e,
  );
}

async function storedBlobs(): Promise<string[]> {
  const dir = join(pg.stateDir, 'store', 'blobs', 'sha256');
  return existsSync(dir) ? (await readdir(dir)).sort() : [];
}

describe('signatures that must be rejected end to end (real gpg/skopeo signatures, lookaside over HTTP)', () => {
  const image = (): string => `${registry.host}/app:v1`;
  const serveOnly = async (bytes: Uint8Array): Promise<void> => {
    await lookaside.reset();
    await lookaside.writeSignature('app', MANIFEST_DIGEST, 1, bytes);
  };
  const removeApp = (): Promise<unknown> => pg.client.call('RemoveImage', { image: { image: image() } });

  const rejected: { name: string; bytes: () => Promise<Uint8Array>; reason: RegExp }[] = [
    { name: 'another repository (identity registry.example/other:v1)', bytes: async () => signatureFixture('wrong-identity'), reason: /identity/i },
    { name: 'a signing subkey of an untrusted primary key', bytes: async () => signatureFixture('subkey'), reason: /not accepted|Key not found/ },
    { name: 'an untrusted key', bytes: async () => signatureFixture('untrusted-key'), reason: /not accepted/ },
    {
      name: 'a valid signature plus a second signature packet',
      bytes: async () => signatureFixture('two-signatures' as SignatureFixture),
      reason: /signature count 2|Unexpected GPG signature count/,
    },
    {
      name: "another image's digest (trusted key)",
      bytes: () =>
        gpg(['--sign', '-u', 'expiry@pullguard.test'], { input: simpleSigningPayload(`sha256:${'e'.repeat(64)}`, SIGNED_IDENTITY) }).then(
          (b) => new Uint8Array(b),
        ),
      reason: /digest/i,
    },
    {
      name: 'an expired signature (trusted key, expired yesterday)',
      bytes: () =>
        gpg(['--sign', '--default-sig-expire', '1d', '-u', 'expiry@pullguard.test'], {
          at: new Date(Date.now() - 2 * 86400_000),
          input: simpleSigningPayload(MANIFEST_DIGEST, SIGNED_IDENTITY),
        }).then((b) => new Uint8Array(b)),
      reason: /expired/i,
    },
  ];

  it('accepts the valid signature (control: the setup is right)', async () => {
    await serveOnly(signatureFixture('valid'));
    await removeApp();
    expect(await pullError(image())).toBeUndefined();
    await removeApp();
  });

  for (const { name, bytes, reason } of rejected) {
    it(`rejects a signature for ${name}, storing nothing`, async () => {
      await serveOnly(await bytes());
      const before = await storedBlobs();
      const err = await pullError(image());
      expect(err?.details).toMatch(/^SignatureValidationFailed: /);
      expect(err?.details).toMatch(reason);
      expect(await storedBlobs()).toEqual(before);
      expect((await pg.client.call<{ image: unknown }>('ImageStatus', { image: { image: image() } })).image).toBeNull();
    });
  }
});

describe('a registry answering a pinned digest with other bytes', () => {
  const pinned = (): string => `${faults.host}/pinned@${faultImage.manifestDigest}`;
  it.each([
    ['a flipped byte in the manifest', () => faults.fault(`pinned:${faultImage.manifestDigest}`, { kind: 'corrupt' })],
    [
      "another image's manifest (a valid document, wrong digest)",
      () => faults.fault(`pinned:${faultImage.manifestDigest}`, { kind: 'redirect', location: `/v2/pinned/manifests/other` }),
    ],
    ['a flipped byte in the layer', () => faults.fault(faultImage.layers[0]!.digest, { kind: 'corrupt' })],
  ])('refuses %s and stores nothing', async (_name, inject) => {
    inject();
    faultsInjected += 1;
    const before = await storedBlobs();
    const err = await pullError(pinned());
    expect(err?.details).toMatch(/digest|mismatch/i);
    // No image, no blob with the wrong bytes; blobs that did verify (the config, fetched before
    // the layer) may stay behind as unreferenced garbage for GC.
    const after = await storedBlobs();
    expect(after).not.toContain(faultImage.layers[0]!.digest.slice(7));
    for (const hex of after.filter((b) => !before.includes(b))) {
      const bytes = await readFile(join(pg.stateDir, 'store', 'blobs', 'sha256', hex));
      expect(createHash('sha256').update(bytes).digest('hex')).toBe(hex);
    }
    expect((await pg.client.call<{ images: unknown[] }>('ListImages', {})).images).toEqual([]);
    // The refused temp file is removed as the failed ingest unwinds, which can be a moment after
    // the error has reached the client.
    const deadline = Date.now() + 3000;
    while ((await readdir(join(pg.stateDir, 'store', 'ingest'))).length > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 25));
    expect(await readdir(join(pg.stateDir, 'store', 'ingest'))).toEqual([]);
  });
});

describe('credential scan', () => {
  const tag = randomBytes(6).toString('hex');
  const secrets = {
    basicPassword: `BasicPw-${tag}-Zq9`,
    wrongPassword: `WrongPw-${tag}-Xk2`,
    authOnlyPassword: `AuthB64Pw-${tag}-Vm4`,
    identityToken: `IdTok-${tag}-Qr7`,
    registryToken: `RegTok-${tag}-Lp3`,
    bearerPassword: `BearerPw-${tag}-Hn5`,
    cliPassword: `CliPw-${tag}-Tw8`,
  };
  const user = `alice${tag}`;
  let htpasswdRegistry: StartedRegistry;
  let tokenRegistry: StartedRegistry;
  let credServer: RunningPullguard;
  let metricsUrl: string | undefined;
  const observed: string[] = [];

  beforeAll(async () => {
    [htpasswdRegistry, tokenRegistry] = await Promise.all([
      startRegistry({ auth: 'htpasswd', users: { [user]: secrets.basicPassword, cli: secrets.cliPassword, b64: secrets.authOnlyPassword } }),
      startRegistry({ tokenAuth: { users: { [user]: secrets.bearerPassword } } }),
    ]);
    const img = await buildOciImage(join(work, 'cred'), { tag: 'v1', seed: 95, layers: [{ size: 2000 }] });
    await pushImage(img.dir, 'private:v1', htpasswdRegistry, { creds: { username: user, password: secrets.basicPassword } });
    await pushImage(img.dir, 'private:v1', tokenRegistry, { creds: { username: user, password: secrets.bearerPassword } });
    const policy = join(work, 'accept.json');
    await writeFile(policy, JSON.stringify({ default: [{ type: 'insecureAcceptAnything' }] }));
    const metricsPort = await freePort();
    const args = ['--signature-policy', policy, '--insecure-registry', htpasswdRegistry.host, '--insecure-registry', tokenRegistry.host];
    try {
      credServer = await startPullguard({ args: [...args, '--metrics-address', `127.0.0.1:${metricsPort}`] });
      metricsUrl = `http://127.0.0.1:${metricsPort}/metrics`;
    } catch {
      credServer = await startPullguard({ args });
    }
  }, 120_000);
  afterAll(async () => {
    await credServer?.stop();
    await Promise.all([htpasswdRegistry?.stop(), tokenRegistry?.stop()]);
  });

  const record = (err: grpc.ServiceError | undefined): void => {
    if (err === undefined) return;
    observed.push(err.message, err.details);
    for (const value of err.metadata.get('grpc-status-details-bin')) observed.push(Buffer.from(value as Buffer).toString('latin1'));
  };
  const pullWith = async (host: string, auth: Record<string, string>): Promise<grpc.ServiceError | undefined> => {
    const err = await credServer.client
      .call('PullImage', { image: { image: `${host}/private:v1` }, auth }, { onTrailers: (md) => observed.push(JSON.stringify(md.toJSON())) })
      .then(
        () => undefined,
        (e: grpc.ServiceError) => e,
      );
    record(err);
    return err;
  };

  it('keeps every secret out of logs, errors, status details, CLI output and metrics', async () => {
    const h = htpasswdRegistry.host;
    const t = tokenRegistry.host;
    expect(await pullWith(h, { username: user, password: secrets.basicPassword })).toBeUndefined();
    await credServer.client.call('RemoveImage', { image: { image: `${h}/private:v1` } });
    expect(await pullWith(h, { username: user, password: secrets.wrongPassword })).toBeDefined();
    expect(await pullWith(h, { auth: Buffer.from(`b64:${secrets.authOnlyPassword}`).toString('base64') })).toBeUndefined();
    await credServer.client.call('RemoveImage', { image: { image: `${h}/private:v1` } });
    await pullWith(h, { identity_token: secrets.identityToken });
    await pullWith(h, { registry_token: secrets.registryToken });
    await pullWith(h, { username: user, password: secrets.wrongPassword, identity_token: secrets.identityToken });
    expect(await pullWith(t, { username: user, password: secrets.bearerPassword })).toBeUndefined();
    await credServer.client.call('RemoveImage', { image: { image: `${t}/private:v1` } });
    expect(await pullWith(t, { username: user, password: secrets.wrongPassword })).toBeDefined();
    await pullWith(t, { registry_token: secrets.registryToken });
    faultsInjected += 5; // wrong passwords and bogus tokens

    for (const creds of [`cli:${secrets.cliPassword}`, `cli:${secrets.wrongPassword}`]) {
      const run = await execFileAsync(process.execPath, [MAIN, 'pull', `${h}/private:v1`, '--creds', creds, '--socket', credServer.socket]).then(
        (r) => r,
        (e: { stdout: string; stderr: string }) => e,
      );
      observed.push(run.stdout, run.stderr);
    }

    if (metricsUrl !== undefined) {
      const res = await fetch(metricsUrl).catch(() => undefined);
      if (res !== undefined) observed.push(await res.text());
      else console.log('security: --metrics-address accepted but nothing answered; metrics not scanned');
    } else console.log('security: no --metrics-address in this build; metrics not scanned');

    await new Promise((r) => setTimeout(r, 300)); // pino writes asynchronously
    const logs = credServer.logs();
    expect(logs.length).toBeGreaterThan(10);
    const haystack = [...observed, ...logs].join('\n');
    const needles = Object.values(secrets).flatMap((s) => [
      s,
      Buffer.from(s).toString('base64'),
      Buffer.from(`${user}:${s}`).toString('base64'),
      Buffer.from(`cli:${s}`).toString('base64'),
      Buffer.from(`b64:${s}`).toString('base64'),
      encodeURIComponent(s),
    ]);
    const leaks = needles.filter((n) => haystack.includes(n));
    figure('security.credential_scan_lines', logs.length + observed.length);
    figure('security.secrets_leaked', leaks.length);
    expect(leaks).toEqual([]);
  }, 120_000);
});

describe('socket permissions', () => {
  it('binds the socket 0660 in a directory that is not world-writable', () => {
    expect(statSync(pg.socket).mode & 0o777).toBe(0o660);
    expect(statSync(dirname(pg.socket)).mode & 0o002).toBe(0);
  });
});

afterAll(() => figure('security.faults_injected', faultsInjected));
