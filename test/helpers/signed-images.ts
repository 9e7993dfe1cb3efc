/**
 * Real GPG keys and real `skopeo copy --sign-by` signatures for images pushed to the test registry.
 *
 *   const signer = await createGpgSigner('Pullguard E2E');        // throwaway GNUPGHOME
 *   const pushed = await pushSignedImage(image.dir, 'app:v1', registry, signer);
 *   pushed.signatures                  // [Uint8Array] — signature-1.. as skopeo wrote them
 *   pushed.manifestDigest              // the digest the signatures cover (lookaside URL)
 *   await signer.dispose();
 *
 * skopeo writes (and, for each further signer, re-reads) signatures through a registries.d `lookaside: file://…` entry for the
 * registry host, exactly as an image publisher does; the test then serves them over HTTP.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { StartedRegistry } from './registry.js';

const execFileAsync = promisify(execFile);

export interface GpgSigner {
  readonly gnupgHome: string;
  readonly fingerprint: string;
  /** Binary public key file, for policy.json keyPath. */
  readonly publicKeyPath: string;
  dispose(): Promise<void>;
}

/**
 * `algorithm`: gpg's `--quick-gen-key` algorithm, default `ed25519`. CRI-O built with
 * `containers_image_openpgp` (golang.org/x/crypto/openpgp, no GPGME) cannot verify EdDSA signatures
 * (`openpgp: unsupported feature: public key type: 22`): tests with it sign with `rsa3072`.
 */
export async function createGpgSigner(name = 'Pullguard E2E Signer', options: { algorithm?: 'ed25519' | 'rsa3072' } = {}): Promise<GpgSigner> {
  const dir = await mkdtemp(join(tmpdir(), 'pullguard-gpg-'));
  const gnupgHome = join(dir, 'gnupg');
  await execFileAsync('mkdir', ['-m', '700', gnupgHome]);
  const env = { ...process.env, GNUPGHOME: gnupgHome };
  const email = `${name.toLowerCase().replace(/[^a-z0-9]+/g, '.')}@pullguard.test`;
  await execFileAsync(
    'gpg',
    [
      '--batch',
      '--quiet',
      '--pinentry-mode',
      'loopback',
      '--passphrase',
      '',
      '--quick-gen-key',
      `${name} <${email}>`,
      options.algorithm ?? 'ed25519',
      'sign',
      'never',
    ],
    { env },
  );
  const { stdout } = await execFileAsync('gpg', ['--batch', '--with-colons', '--list-keys', email], { env });
  const fingerprint = /^fpr:+([0-9A-F]{40}):/m.exec(stdout)?.[1];
  if (fingerprint === undefined) throw new Error(`no fingerprint in gpg output:\n${stdout}`);
  const publicKeyPath = join(dir, 'public.gpg');
  const exported = await execFileAsync('gpg', ['--batch', '--export', fingerprint], { env, encoding: 'buffer' });
  await writeFile(publicKeyPath, exported.stdout);
  return {
    gnupgHome,
    fingerprint,
    publicKeyPath,
    async dispose() {
      await execFileAsync('gpgconf', ['--kill', 'all'], { env }).catch(() => undefined);
      await rm(dir, { recursive: true, force: true });
    },
  };
}

export interface SignedPush {
  readonly manifestDigest: string;
  /** signature-1, signature-2, … in order. */
  readonly signatures: Uint8Array[];
  /** Repository path without the host, e.g. `app` (the lookaside path). */
  readonly repoPath: string;
}

/** Pushes `oci:<layoutDir>:<tag>` to `registry` as `repoAndTag`, signed by each signer in turn (signature-1, -2, …). */
export async function pushSignedImage(
  layoutDir: string,
  repoAndTag: string,
  registry: StartedRegistry,
  signers: GpgSigner | readonly GpgSigner[],
  options: { signIdentity?: string; creds?: { readonly username: string; readonly password: string } } = {},
): Promise<SignedPush> {
  const list = Array.isArray(signers) ? (signers as readonly GpgSigner[]) : [signers as GpgSigner];
  const work = await mkdtemp(join(tmpdir(), 'pullguard-sign-'));
  try {
    const staging = join(work, 'lookaside');
    const registriesD = join(work, 'registries.d');
    await execFileAsync('mkdir', ['-p', staging, registriesD]);
    await writeFile(join(registriesD, 'test.yaml'), `docker:\n  ${registry.host}:\n    lookaside: file://${staging}\n`);
    const layoutTag = repoAndTag.slice(repoAndTag.lastIndexOf(':') + 1);
    const dest = `docker://${registry.host}/${repoAndTag}`;
    // The first copy pushes and signs; each further signer re-signs the pushed image (skopeo appends signature-N).
    for (const [i, signer] of list.entries()) {
      const src = i === 0 ? `oci:${layoutDir}:${layoutTag}` : dest;
      await execFileAsync(
        'skopeo',
        [
          ...[
            '--insecure-policy',
            '--registries.d',
            registriesD,
            'copy',
            '--quiet',
            '--src-tls-verify=false',
            '--dest-tls-verify=false',
            '--sign-by',
            signer.fingerprint,
          ],
          ...(options.signIdentity ? ['--sign-identity', options.signIdentity] : []),
          ...(options.creds
            ? [
                '--dest-creds',
                `${options.creds.username}:${options.creds.password}`,
                ...(i > 0 ? ['--src-creds', `${options.creds.username}:${options.creds.password}`] : []),
              ]
            : []),
          src,
          dest,
        ],
        { env: { ...process.env, GNUPGHOME: signer.gnupgHome }, timeout: 60_000 },
      ).catch((err: { stderr?: string; message: string }) => {
        throw new Error(`skopeo signed copy failed: ${err.stderr ?? err.message}`);
      });
    }
    const repoPath = repoAndTag.slice(0, repoAndTag.lastIndexOf(':'));
    const [dirName] = (await readdir(staging, { recursive: true })).filter((p) => /@sha256=[0-9a-f]{64}$/.test(String(p))).map(String);
    if (dirName === undefined) throw new Error('skopeo wrote no lookaside signature');
    const manifestDigest = `sha256:${dirName.slice(dirName.lastIndexOf('=') + 1)}`;
    const files = (await readdir(join(staging, dirName))).filter((f) => /^signature-\d+$/.test(f)).sort((a, b) => Number(a.slice(10)) - Number(b.slice(10)));
    const signatures = await Promise.all(files.map((f) => readFile(join(staging, dirName, f)).then((b) => new Uint8Array(b))));
    return { manifestDigest, signatures, repoPath };
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

/**
 * A simple-signing signature by `signer` over manifest bytes as pushed (any manifest: an artifact's
 * too), claiming `dockerReference`: what `skopeo standalone-sign` writes, for the lookaside.
 */
export async function signManifest(signer: GpgSigner, manifest: Uint8Array, dockerReference: string): Promise<Uint8Array> {
  const work = await mkdtemp(join(tmpdir(), 'pullguard-standalone-sign-'));
  try {
    const manifestFile = join(work, 'manifest.json');
    await writeFile(manifestFile, manifest);
    await execFileAsync('skopeo', ['standalone-sign', manifestFile, dockerReference, signer.fingerprint, '--output', join(work, 'signature')], {
      env: { ...process.env, GNUPGHOME: signer.gnupgHome },
    });
    return new Uint8Array(await readFile(join(work, 'signature')));
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}
