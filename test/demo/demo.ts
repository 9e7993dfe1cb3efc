/**
 * `npm run demo` — what pullguard is for, in one command (node dist/test/demo/demo.js).
 *
 * Starts the real docker-registry and a lookaside server on 127.0.0.1, makes a throw-away GPG key,
 * pushes three images with skopeo (signed; signed but signature-2 served as a CDN's HTML page;
 * unsigned, with its lookaside answering 503), runs `pullguard serve` with a signedBy policy, pulls
 * each over the CRI socket and prints what happened.
 *
 * Exit codes: 0 every outcome was as expected; 1 one was not (or the demo failed); 2 a required
 * program is missing; 128+N interrupted by signal N. Everything it creates lives under one temp
 * dir (TMPDIR is pointed there, so helpers and children create theirs inside it too), which is
 * removed on exit, on error and on SIGINT/SIGTERM, after every process it started has ended.
 */
import { accessSync, constants, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import type * as grpc from '@grpc/grpc-js';
import { WARNINGS_METADATA_KEY } from '../../src/cri/status.js';
import { startLookasideServer, type LookasideServer } from '../helpers/lookaside-server.js';
import { buildOciImage } from '../helpers/oci-image.js';
import { startPullguard, type RunningPullguard } from '../helpers/pullguard-server.js';
import { pushImage, startRegistry, type StartedRegistry } from '../helpers/registry.js';
import { createGpgSigner, pushSignedImage, type GpgSigner } from '../helpers/signed-images.js';
import { writeSigningConfig } from '../helpers/signing-config.js';

const INTRO = `pullguard checks an image's signatures against policy.json after the manifest is resolved and
before any layer is fetched, and decides on what it could read. When the signatures that verify
satisfy the policy, the pull succeeds and the unreadable ones become warnings — where CRI-O and
podman fail the whole pull because signature-2 came back as a CDN's HTML page ("unrecognized
signature format, starting with binary 0x3c"). When the policy is not satisfied, the denial says
both why and which signatures could not be read. This demo runs that for real on 127.0.0.1: a
docker-registry, a lookaside (signature) server, a throw-away GPG key, three images pushed with
skopeo, a signedBy policy, and three pulls through pullguard's CRI socket.`;

/** Programs the demo drives; registry.ts runs docker-registry by absolute path. */
const REQUIRED: readonly { readonly name: string; readonly path?: string; readonly debianPackage: string }[] = [
  { name: 'docker-registry', path: '/usr/bin/docker-registry', debianPackage: 'docker-registry' },
  { name: 'skopeo', debianPackage: 'skopeo' },
  { name: 'gpg', debianPackage: 'gnupg' },
  { name: 'gpgconf', debianPackage: 'gnupg' },
];

function executable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

function onPath(name: string): boolean {
  return (process.env.PATH ?? '').split(delimiter).some((dir) => dir !== '' && executable(join(dir, name)));
}

function missingPrograms(): typeof REQUIRED {
  return REQUIRED.filter((p) => !(p.path !== undefined ? executable(p.path) : onPath(p.name)));
}

/**
 * Processes still alive that the demo started: their command line names the demo's temp dir, or
 * they inherited its TMPDIR (gpg-agent daemonises away from us; an interrupted skopeo is not a
 * child the helpers track). Linux only; elsewhere the helpers' own exit handlers are all we have.
 */
function stragglers(root: string): number[] {
  if (!existsSync('/proc')) return [];
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    const pid = Number(entry);
    if (!Number.isInteger(pid) || pid === process.pid) continue;
    try {
      const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
      const environ = readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0');
      if (cmdline.includes(root) || environ.includes(`TMPDIR=${root}`)) pids.push(pid);
    } catch {
      // gone already, or not ours to read
    }
  }
  return pids;
}

function killStragglers(root: string): void {
  for (const pid of stragglers(root)) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // exited meanwhile
    }
  }
}

/** Resources in creation order; torn down in reverse. */
const cleanups: { readonly what: string; readonly run: () => Promise<unknown> }[] = [];
let root: string | undefined;
let cleaning: Promise<void> | undefined;
/** Set by SIGINT/SIGTERM: that handler exits; run() finishing (or failing) afterwards must not. */
let interrupted = false;

function withTimeout(promise: Promise<unknown>, ms: number): Promise<unknown> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([promise, new Promise((r) => (timer = setTimeout(r, ms)))]).finally(() => clearTimeout(timer));
}

function cleanUp(): Promise<void> {
  cleaning ??= (async () => {
    for (const { run } of cleanups.splice(0).reverse())
      await withTimeout(
        run().catch(() => undefined),
        15_000,
      );
    if (root === undefined) return;
    killStragglers(root);
    // A killed process may still be unlinking its files: retry briefly.
    await rm(root, { recursive: true, force: true, maxRetries: 5, retryDelay: 100 });
  })();
  return cleaning;
}

/** Last resort when cleanUp cannot run to the end (a second signal, or exit mid-way). */
function cleanUpNow(): void {
  if (root === undefined || !existsSync(root)) return;
  killStragglers(root);
  rmSync(root, { recursive: true, force: true, maxRetries: 5, retryDelay: 100 });
}

function track<T>(what: string, started: Promise<T>, stop: (resource: T) => Promise<unknown>): Promise<T> {
  return started.then((resource) => {
    cleanups.push({ what, run: () => stop(resource) });
    return resource;
  });
}

interface PullOutcome {
  readonly imageRef?: string;
  readonly denial?: string;
  readonly warnings: readonly string[];
}

async function pull(pullguard: RunningPullguard, image: string): Promise<PullOutcome> {
  const warnings: string[] = [];
  try {
    const response = await pullguard.client.call<{ image_ref: string }>(
      'PullImage',
      { image: { image } },
      {
        deadlineMs: 60_000,
        onTrailers: (md) => warnings.push(...md.get(WARNINGS_METADATA_KEY).map(String)),
      },
    );
    return { imageRef: response.image_ref, warnings };
  } catch (err) {
    const e = err as Partial<grpc.ServiceError>;
    return { denial: typeof e.details === 'string' && e.details !== '' ? e.details : String(err), warnings };
  }
}

interface Case {
  readonly label: string;
  readonly image: string;
  readonly expected: string;
  /** Why the outcome is not the expected one, or undefined when it is. */
  readonly check: (outcome: PullOutcome) => string | undefined;
}

const say = (line = ''): void => void process.stdout.write(`${line}\n`);
const step = (line: string): void => say(`  · ${line}`);

async function run(): Promise<number> {
  const missing = missingPrograms();
  if (missing.length > 0) {
    const packages = [...new Set(missing.map((p) => p.debianPackage))].join(' ');
    process.stderr.write(
      `pullguard demo: missing ${missing.map((p) => p.name).join(', ')}.\n` +
        `\`bash .ci/install-deps\` installs it (Debian packages: ${packages}; needs root or sudo).\n`,
    );
    return 2;
  }

  root = mkdtempSync(join(tmpdir(), 'pullguard-demo-'));
  // Every helper makes its temp dirs with os.tmpdir(), and children inherit TMPDIR: all of it lands here.
  process.env.TMPDIR = root;
  const started = Date.now();
  say(INTRO);
  say();

  const [registry, lookaside, signer] = await Promise.all([
    track<StartedRegistry>('registry', startRegistry(), (r) => r.stop()),
    track<LookasideServer>('lookaside', startLookasideServer(), (l) => l.stop()),
    track<GpgSigner>('gpg key', createGpgSigner('pullguard demo signer'), (s) => s.dispose()),
  ]);
  step(`registry     ${registry.url} (docker-registry)`);
  step(`lookaside    ${lookaside.url} (signature storage, as a CDN would serve it)`);
  step(`signing key  ${signer.fingerprint} (throw-away, gpg)`);

  const images = join(root, 'images');
  const [signedImage, htmlImage, unsignedImage] = await Promise.all([
    buildOciImage(join(images, 'signed'), { tag: 'v1', layers: [{ size: 16 * 1024 }, { files: { 'etc/motd': 'signed\n' } }], seed: 1 }),
    buildOciImage(join(images, 'html'), { tag: 'v1', layers: [{ size: 16 * 1024 }, { files: { 'etc/motd': 'signature-2 is a web page\n' } }], seed: 2 }),
    buildOciImage(join(images, 'unsigned'), { tag: 'v1', layers: [{ size: 16 * 1024 }, { files: { 'etc/motd': 'unsigned\n' } }], seed: 3 }),
  ]);
  const [signed, html] = await Promise.all([
    pushSignedImage(signedImage.dir, 'demo/signed:v1', registry, signer),
    pushSignedImage(htmlImage.dir, 'demo/html-signature:v1', registry, signer),
    pushImage(unsignedImage.dir, 'demo/unsigned:v1', registry),
  ]);
  // What skopeo signed goes to the lookaside as signature-1; then the CDN's bad days.
  await lookaside.writeSignature(signed.repoPath, signed.manifestDigest, 1, signed.signatures[0]!);
  await lookaside.writeSignature(html.repoPath, html.manifestDigest, 1, html.signatures[0]!);
  lookaside.fault(2, { html: true }, html.repoPath);
  lookaside.fault(1, { status: 503 }, 'demo/unsigned');
  step(`pushed       demo/signed:v1 (signed), demo/html-signature:v1 (signed), demo/unsigned:v1 (not signed)`);

  const config = await writeSigningConfig(join(root, 'config'), { publicKeyPath: signer.publicKeyPath, lookasideUrl: lookaside.url, scope: registry.host });
  step(`policy       ${registry.host}: signedBy that key; everything else: reject`);
  const pullguard = await track<RunningPullguard>(
    'pullguard',
    startPullguard({ args: ['--signature-policy', config.policy, '--registries-d', config.registriesD, '--insecure-registry', registry.host] }),
    (p) => p.stop(),
  );
  step(`pullguard    serving ${pullguard.socket}`);
  say();

  const cases: Case[] = [
    {
      label: 'signed image',
      image: `${registry.host}/demo/signed:v1`,
      expected: 'ALLOWED, no warnings',
      check: (o) => (o.imageRef === undefined ? 'it was denied' : o.warnings.length > 0 ? 'it had warnings' : undefined),
    },
    {
      label: 'signed, signature-2 is an HTML page',
      image: `${registry.host}/demo/html-signature:v1`,
      expected: 'ALLOWED with a PGW001 warning naming signature-2 and 0x3c',
      check: (o) =>
        o.imageRef === undefined
          ? 'it was denied'
          : o.warnings.some((w) => /^PGW001 .*signature-2.*0x3c/.test(w))
            ? undefined
            : 'no PGW001 warning naming signature-2 and 0x3c',
    },
    {
      label: 'unsigned image (lookaside answers 503)',
      image: `${registry.host}/demo/unsigned:v1`,
      expected: 'DENIED, saying why and which signature could not be read',
      check: (o) =>
        o.denial === undefined
          ? 'it was allowed'
          : /^SignatureValidationFailed: Source image rejected: .+; additionally 1 signature could not be read: signature-1 /.test(o.denial)
            ? undefined
            : 'the denial does not give both reasons',
    },
  ];

  const width = Math.max(...cases.map((c) => c.label.length)) + 1;
  const surprises: string[] = [];
  for (const [i, c] of cases.entries()) {
    const outcome = await pull(pullguard, c.image);
    const head = `${i + 1}. ${c.label.padEnd(width)} → `;
    if (outcome.denial !== undefined) {
      say(`${head}DENIED:`);
      say(`     ${outcome.denial}`);
    } else if (outcome.warnings.length > 0) {
      say(`${head}ALLOWED with ${outcome.warnings.length === 1 ? 'a warning' : `${outcome.warnings.length} warnings`}:`);
      for (const warning of outcome.warnings) say(`     ${warning}`);
    } else {
      say(`${head}ALLOWED (${outcome.imageRef})`);
    }
    const surprise = c.check(outcome);
    if (surprise !== undefined) surprises.push(`${i + 1}. expected ${c.expected}, but ${surprise}`);
  }
  say();
  if (surprises.length > 0) {
    for (const s of surprises) say(`UNEXPECTED ${s}`);
    return 1;
  }
  say(`All three outcomes as expected (${((Date.now() - started) / 1000).toFixed(1)} s). CRI-O and podman would have failed pull 2`);
  say(`outright, and for pull 3 reported only the 503.`);
  return 0;
}

const SIGNAL_NUMBERS = { SIGINT: 2, SIGTERM: 15 } as const;
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    const code = 128 + SIGNAL_NUMBERS[signal];
    if (cleaning !== undefined) {
      // Second signal: stop waiting for graceful shutdowns.
      cleanUpNow();
      process.exit(code);
    }
    interrupted = true;
    process.stderr.write(`\npullguard demo: ${signal}, cleaning up\n`);
    void cleanUp().finally(() => process.exit(code));
  });
}
process.on('exit', cleanUpNow);

run().then(
  async (code) => {
    await cleanUp();
    if (!interrupted) process.exit(code);
  },
  async (err: unknown) => {
    if (interrupted) return; // what failed was torn down under it
    process.stderr.write(`pullguard demo failed: ${err instanceof Error ? err.message : String(err)}\n`);
    await cleanUp();
    process.exit(1);
  },
);
