/**
 * The verifier's two ends: the daemon's endpoint (its own unix socket, mode 0600, bounded) and the
 * clients containerd runs, which print the verdict and exit 0 (allowed), 1 (denied) or 2 (no
 * verdict: no daemon, a refused or late answer, bad arguments) — fail closed. Both clients (perl, the
 * default, and node) are installed with `installVerifier` and run as containerd runs them: the
 * executable in the bin dir, containerd's arguments, the descriptor on stdin. Each says the same in
 * the same words.
 */
import { spawn } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { request } from 'node:http';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createLogger } from '../../../src/log/logger.js';
import { findPerl, installVerifier, readInstalledVerifier, verifierClientPath, verifierScript, type InstalledVerifier } from '../../../src/verifier/install.js';
import { MAX_QUESTION_BYTES, VERIFY_PATH } from '../../../src/verifier/protocol.js';
import { parseVerifierArguments, runVerifierClient } from '../../../src/verifier/verifier-client.js';
import { startVerifierServer, type RunningVerifierServer } from '../../../src/verifier/verifier-server.js';
import type { JudgedQuestion } from '../../../src/verifier/verifier-verdicts.js';
import { PassThrough } from 'node:stream';

const DIGEST = `sha256:${'a'.repeat(64)}`;
const DENIAL =
  'SignatureValidationFailed: Source image rejected: A signature was required, but no signature exists; additionally 1 signature could not be read: signature-2 (http://l/x): HTTP 503';
// Debian's perl-base is essential: a machine without perl is not the one these tests are for.
const PERL: string = (await findPerl(process.env['PATH'])) ?? '';
if (PERL === '') throw new Error('no perl on PATH');

let dir: string;
let socket: string;
let server: RunningVerifierServer | undefined;
let questions: { name: string; digest: string; logFields: Readonly<Record<string, unknown>> }[];
let judge: (q: { name: string; digest: string }) => Promise<JudgedQuestion>;

beforeEach(async () => {
  // A quote in the socket path must survive the shell and perl's quoting alike.
  dir = await mkdtemp(join(tmpdir(), "pullguard-verifier-it's-"));
  socket = join(dir, 'state', 'verifier.sock');
  questions = [];
  judge = async (q) =>
    q.name.includes('unsigned') ? { allowed: false, cached: false, message: DENIAL } : { allowed: true, cached: false, message: `pullguard allowed ${q.name}` };
});
afterEach(async () => {
  await server?.close(100);
  server = undefined;
  await rm(dir, { recursive: true, force: true });
});

async function start(options: { answerTimeoutMs?: number } = {}): Promise<RunningVerifierServer> {
  server = await startVerifierServer({
    socketPath: socket,
    logger: createLogger({ level: 'silent' }),
    ...options,
    judge: (q) => {
      questions.push(q);
      return judge(q);
    },
  });
  return server;
}

function verifierOf(kind: InstalledVerifier['client'], timeoutMs: number): InstalledVerifier {
  return kind === 'perl'
    ? { client: 'perl', socket, timeoutMs, runs: [PERL] }
    : { client: 'node', socket, timeoutMs, runs: [process.execPath, verifierClientPath()] };
}

/** Installs the verifier of that kind and runs it as containerd does: its arguments, the descriptor on stdin. */
async function runInstalled(
  kind: InstalledVerifier['client'],
  args: readonly string[],
  stdin?: string,
  timeoutMs = 8000,
): Promise<{ code: number | null; stdout: string }> {
  const path = await installVerifier({ binDir: join(dir, 'bin'), name: 'pullguard', verifier: verifierOf(kind, timeoutMs) });
  return new Promise((resolve) => {
    const child = spawn(path, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.once('exit', (code) => resolve({ code, stdout }));
    child.stdin.on('error', () => undefined);
    child.stdin.end(stdin ?? '');
  });
}

const containerdArgs = (name: string, digest = DIGEST): string[] => [
  '-name',
  name,
  '-digest',
  digest,
  '-stdin-media-type',
  'application/vnd.oci.descriptor.v1+json',
];
const descriptor = (digest = DIGEST): string => `${JSON.stringify({ mediaType: 'application/vnd.oci.image.index.v1+json', digest, size: 1234 })}\n`;

/** A raw HTTP exchange on the socket. */
function raw(method: string, path: string, body?: Buffer): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(
      { socketPath: socket, method, path, headers: body !== undefined ? { 'content-type': 'application/json', 'content-length': body.byteLength } : {} },
      (res) => {
        let text = '';
        res.on('data', (c: Buffer) => (text += c.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text }));
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

describe.each(['perl', 'node'] as const)('the %s verifier client and the daemon endpoint', (kind) => {
  const client = (args: readonly string[], stdin?: string, timeoutMs?: number) => runInstalled(kind, args, stdin, timeoutMs);

  it("allowed: exit 0 with what allowed it; denied: exit 1 with pullguard's denial line, as containerd shows it", async () => {
    await start();
    expect(await client(containerdArgs('registry.example/app:v1'), descriptor())).toEqual({ code: 0, stdout: 'pullguard allowed registry.example/app:v1\n' });
    expect(await client(containerdArgs('registry.example/unsigned:v1'), descriptor())).toEqual({ code: 1, stdout: `${DENIAL}\n` });
    // Any character a name may hold reaches the daemon as it was (percent-encoded on the way).
    expect(await client(['-name', 'registry.example/a b&c=d%20é:v1', '-digest', DIGEST])).toEqual({
      code: 0,
      stdout: 'pullguard allowed registry.example/a b&c=d%20é:v1\n',
    });
    expect(questions.map((q) => [q.name, q.digest, q.logFields])).toEqual([
      [
        'registry.example/app:v1',
        DIGEST,
        { verifier: { name: 'registry.example/app:v1', digest: DIGEST, mediaType: 'application/vnd.oci.image.index.v1+json' } },
      ],
      [
        'registry.example/unsigned:v1',
        DIGEST,
        { verifier: { name: 'registry.example/unsigned:v1', digest: DIGEST, mediaType: 'application/vnd.oci.image.index.v1+json' } },
      ],
      ['registry.example/a b&c=d%20é:v1', DIGEST, { verifier: { name: 'registry.example/a b&c=d%20é:v1', digest: DIGEST } }],
    ]);
  });

  it('no daemon, a late verdict, a refused question: exit 2 and a line that says why (fail closed)', async () => {
    const none = await client(containerdArgs('registry.example/app:v1'), descriptor());
    expect(none).toEqual({
      code: 2,
      stdout: `pullguard verifier: no pullguard daemon answers on ${socket} (ENOENT): is \`pullguard serve\` running with this --verifier-socket?; the pull is blocked\n`,
    });

    // The client stops waiting before containerd's per-verifier timeout would kill it.
    judge = () => new Promise(() => undefined);
    await start();
    const late = await client(containerdArgs('registry.example/app:v1'), descriptor(), 300);
    expect(late).toEqual({
      code: 2,
      stdout: `pullguard verifier: no verdict from pullguard on ${socket} within 0.3 s (pullguard finishes a verification it started and answers the next attempt); the pull is blocked\n`,
    });
    await server!.close(50);

    // The daemon's own bound: a 504, and the client says so.
    await start({ answerTimeoutMs: 100 });
    expect(await client(containerdArgs('registry.example/app:v1'), descriptor())).toEqual({
      code: 2,
      stdout:
        'pullguard verifier: pullguard answered HTTP 504: no verdict within 0.1 s; the verification goes on and answers the next attempt; the pull is blocked\n',
    });
  });

  it('a daemon that dies mid-question (killed): exit 2, it closed the connection without an answer', async () => {
    await mkdir(join(dir, 'state'), { recursive: true });
    const dying = createServer((connection) => connection.once('data', () => connection.destroy()));
    await new Promise<void>((resolve) => dying.listen(socket, resolve));
    try {
      expect(await client(containerdArgs('registry.example/app:v1'), descriptor())).toEqual({
        code: 2,
        stdout: `pullguard verifier: pullguard on ${socket} closed the connection without an answer (did it stop?); the pull is blocked\n`,
      });
    } finally {
      await new Promise((resolve) => dying.close(resolve));
    }
  });

  it("reads containerd's arguments in Go flag syntax, skips flags it does not know, and blocks on what it cannot use", async () => {
    await start();
    expect(await client(['-future-flag', 'x', '-verbose', '-name=registry.example/a:v1', '--digest', DIGEST])).toEqual({
      code: 0,
      stdout: 'pullguard allowed registry.example/a:v1\n',
    });
    expect(await client(['-name', 'registry.example/app:v1'])).toEqual({
      code: 2,
      stdout: 'pullguard verifier: -name and -digest are required (containerd passes them); the pull is blocked\n',
    });
    expect(await client(['stray', ...containerdArgs('registry.example/app:v1')])).toEqual({
      code: 2,
      stdout: 'pullguard verifier: unexpected argument "stray"; the pull is blocked\n',
    });
    // The descriptor containerd wrote must be the digest it names.
    const mismatch = await client(containerdArgs('registry.example/app:v1'), descriptor(`sha256:${'b'.repeat(64)}`));
    expect(mismatch.code).toBe(2);
    expect(mismatch.stdout).toMatch(
      /^pullguard verifier: pullguard answered HTTP 400: the descriptor on stdin names sha256:b+, not -digest sha256:a+; the pull is blocked\n$/,
    );
    expect(questions.map((q) => q.name)).toEqual(['registry.example/a:v1']);
  });

  it('prints one line within what containerd keeps of stdout (32 KiB), however long the reason', async () => {
    judge = async () => ({ allowed: false, cached: false, message: `SignatureValidationFailed: ${'é'.repeat(40_000)}\nsecond line` });
    await start();
    const { code, stdout } = await client(containerdArgs('registry.example/app:v1'));
    expect(code).toBe(1);
    // The daemon sends at most 8 KiB of it.
    expect(Buffer.byteLength(stdout)).toBeLessThanOrEqual(8 * 1024 + 1);
    expect(stdout.trimEnd().split('\n')).toHaveLength(1);
    expect(stdout.trimEnd()).toMatch(/^SignatureValidationFailed: é+…$/);
  });

  it('answers what is in progress when it closes, and refuses what comes after', async () => {
    let release!: () => void;
    judge = (q) => new Promise((resolve) => (release = () => resolve({ allowed: true, cached: true, message: `ok ${q.name}` })));
    await start();
    const pending = client(containerdArgs('registry.example/app:v1'));
    while (questions.length === 0) await new Promise((r) => setTimeout(r, 5));
    const closing = server!.close(5000);
    const after = await client(containerdArgs('registry.example/app:v2'));
    expect(after.code).toBe(2);
    release();
    expect(await pending).toEqual({ code: 0, stdout: 'ok registry.example/app:v1\n' });
    await closing;
    server = undefined;
  });
});

describe('the daemon endpoint', () => {
  it('listens on a socket of its own, mode 0600', async () => {
    await start();
    const info = await stat(socket);
    expect(info.isSocket()).toBe(true);
    expect(info.mode & 0o777).toBe(0o600);
  });

  it('refuses oversized, malformed and misdirected questions without judging them, in one line of text', async () => {
    await start();
    const query = `${VERIFY_PATH}?name=registry.example%2Fapp%3Av1&digest=${DIGEST}`;
    expect((await raw('POST', query, Buffer.alloc(MAX_QUESTION_BYTES + 1, 0x20))).status).toBe(413);
    expect(await raw('POST', `${VERIFY_PATH}?name=registry.example%2Fapp%3Av1`, Buffer.alloc(0))).toEqual({
      status: 400,
      body: 'digest: a non-empty query parameter expected\n',
    });
    expect((await raw('POST', `${VERIFY_PATH}?digest=${DIGEST}`, Buffer.alloc(0))).status).toBe(400);
    expect((await raw('GET', query)).status).toBe(405);
    expect((await raw('POST', '/v1/other', Buffer.from('{}'))).status).toBe(404);
    expect(questions).toEqual([]);
    // A body that is not containerd's descriptor is no descriptor: judged by name and digest.
    expect(await raw('POST', query, Buffer.from('{"name":'))).toEqual({ status: 200, body: 'pullguard allowed registry.example/app:v1\n' });
  });
});

describe('the node client on its own', () => {
  it('reads its own flags too, and blocks without a socket', async () => {
    expect(parseVerifierArguments(['--socket', '/s', '--timeout-ms', '300', '-name=registry.example/a:v1', '--digest', DIGEST])).toEqual({
      socket: '/s',
      timeoutMs: 300,
      name: 'registry.example/a:v1',
      digest: DIGEST,
    });
    expect(parseVerifierArguments(['--timeout-ms', 'soon'])).toBe('--timeout-ms "soon" is not a positive integer');
    const stdout = new PassThrough();
    let out = '';
    stdout.on('data', (c: Buffer) => (out += c.toString()));
    expect(await runVerifierClient(containerdArgs('registry.example/app:v1'), { stdout, stderr: new PassThrough() })).toBe(2);
    expect(out).toMatch(/^pullguard verifier: no --socket/);
  });
});

describe('installing the verifier', () => {
  it('writes an executable script that says what it does, for either client, atomically and by a plain name', async () => {
    const binDir = join(dir, 'bin');
    for (const verifier of [verifierOf('perl', 4000), verifierOf('node', 4000)]) {
      const path = await installVerifier({ binDir, name: 'pullguard', verifier });
      expect(path).toBe(join(binDir, 'pullguard'));
      expect((await stat(path)).mode & 0o777).toBe(0o755);
      const text = await readFile(path, 'utf8');
      expect(text.startsWith(verifier.client === 'perl' ? `#!${PERL}\n` : '#!/bin/sh\n')).toBe(true);
      expect(readInstalledVerifier(text)).toEqual(verifier);
    }
    // What the first release wrote (node only) still reads.
    const first = `#!/bin/sh\n# pullguard-verifier ${JSON.stringify({ socket, timeoutMs: 9000, node: '/usr/bin/node', client: '/opt/pg/verifier-main.js' })}\n`;
    expect(readInstalledVerifier(first)).toEqual({ client: 'node', socket, timeoutMs: 9000, runs: ['/usr/bin/node', '/opt/pg/verifier-main.js'] });
    expect(() => verifierScript({ client: 'node', socket, timeoutMs: 1, runs: ['/usr/bin/node'] })).toThrow(/needs node and its client/);
    const verifier = verifierOf('node', 4000);
    await expect(installVerifier({ binDir, name: '../escape', verifier })).rejects.toThrow(/not a plain file name/);
    await expect(installVerifier({ binDir, name: 'x', verifier: { ...verifier, runs: [process.execPath, join(dir, 'missing.js')] } })).rejects.toThrow(
      /missing\.js does not exist \(build pullguard first/,
    );
  });
});
