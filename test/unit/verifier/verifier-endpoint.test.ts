/**
 * The verifier's two ends: the daemon's endpoint (its own unix socket, mode 0600, bounded) and the
 * client containerd runs, which prints the verdict and exits 0 (allowed), 1 (denied) or 2 (no
 * verdict: no daemon, a refused or late answer, bad arguments) — fail closed. The installed script is
 * run through /bin/sh as containerd runs it.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createLogger } from '../../../src/log/logger.js';
import { installVerifier, readInstalledVerifier, verifierClientPath, verifierScript } from '../../../src/verifier/install.js';
import { MAX_QUESTION_BYTES, VERIFY_PATH } from '../../../src/verifier/protocol.js';
import { parseVerifierArguments, runVerifierClient } from '../../../src/verifier/verifier-client.js';
import { startVerifierServer, type RunningVerifierServer } from '../../../src/verifier/verifier-server.js';
import type { JudgedQuestion } from '../../../src/verifier/verifier-verdicts.js';

const DIGEST = `sha256:${'a'.repeat(64)}`;
const DENIAL =
  'SignatureValidationFailed: Source image rejected: A signature was required, but no signature exists; additionally 1 signature could not be read: signature-2 (http://l/x): HTTP 503';

let dir: string;
let socket: string;
let server: RunningVerifierServer | undefined;
let questions: { name: string; digest: string; logFields: Readonly<Record<string, unknown>> }[];
let judge: (q: { name: string; digest: string }) => Promise<JudgedQuestion>;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'pullguard-verifier-unit-'));
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

async function client(args: readonly string[], stdin?: string): Promise<{ code: number; stdout: string }> {
  const out = new PassThrough();
  let stdout = '';
  out.on('data', (c: Buffer) => (stdout += c.toString()));
  const code = await runVerifierClient(args, { stdout: out, stderr: new PassThrough(), ...(stdin !== undefined ? { stdin: Readable.from([stdin]) } : {}) });
  return { code, stdout };
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

describe('the verifier client and the daemon endpoint', () => {
  it("allowed: exit 0 with what allowed it; denied: exit 1 with pullguard's denial line, as containerd shows it", async () => {
    await start();
    expect(await client(['--socket', socket, ...containerdArgs('registry.example/app:v1')], descriptor())).toEqual({
      code: 0,
      stdout: 'pullguard allowed registry.example/app:v1\n',
    });
    expect(await client(['--socket', socket, ...containerdArgs('registry.example/unsigned:v1')], descriptor())).toEqual({ code: 1, stdout: `${DENIAL}\n` });
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
    ]);
  });

  it('listens on a socket of its own, mode 0600', async () => {
    await start();
    const info = await stat(socket);
    expect(info.isSocket()).toBe(true);
    expect(info.mode & 0o777).toBe(0o600);
  });

  it('no daemon, a late verdict, a refused question: exit 2 and a line that says why (fail closed)', async () => {
    const none = await client(['--socket', socket, ...containerdArgs('registry.example/app:v1')], descriptor());
    expect(none).toEqual({
      code: 2,
      stdout: `pullguard verifier: no pullguard daemon answers on ${socket} (ENOENT): is \`pullguard serve\` running with this --verifier-socket?; the pull is blocked\n`,
    });

    // The client stops waiting before containerd's per-verifier timeout would kill it.
    judge = () => new Promise(() => undefined);
    await start();
    const late = await client(['--socket', socket, '--timeout-ms', '300', ...containerdArgs('registry.example/app:v1')], descriptor());
    expect(late.code).toBe(2);
    expect(late.stdout).toBe(
      `pullguard verifier: no verdict from pullguard on ${socket} within 0.3 s (pullguard finishes a verification it started and answers the next attempt); the pull is blocked\n`,
    );
    await server!.close(50);

    // The daemon's own bound: a 504, and the client says so.
    await start({ answerTimeoutMs: 100 });
    const bounded = await client(['--socket', socket, ...containerdArgs('registry.example/app:v1')], descriptor());
    expect(bounded).toEqual({
      code: 2,
      stdout:
        'pullguard verifier: pullguard answered HTTP 504: no verdict within 0.1 s; the verification goes on and answers the next attempt; the pull is blocked\n',
    });
  });

  it('refuses oversized, malformed and misdirected questions without judging them', async () => {
    await start();
    const big = Buffer.from(JSON.stringify({ name: 'x'.repeat(MAX_QUESTION_BYTES), digest: DIGEST }));
    expect((await raw('POST', VERIFY_PATH, big)).status).toBe(413);
    expect(await raw('POST', VERIFY_PATH, Buffer.from('{"name":'))).toEqual({ status: 400, body: '{"error":"the question is not JSON"}' });
    expect((await raw('POST', VERIFY_PATH, Buffer.from('{"name":"a"}'))).status).toBe(400);
    expect((await raw('GET', VERIFY_PATH)).status).toBe(405);
    expect((await raw('POST', '/v1/other', Buffer.from('{}'))).status).toBe(404);
    expect(questions).toEqual([]);
  });

  it('answers what is in progress when it closes, and refuses what comes after', async () => {
    let release!: () => void;
    judge = (q) => new Promise((resolve) => (release = () => resolve({ allowed: true, cached: true, message: `ok ${q.name}` })));
    await start();
    const pending = client(['--socket', socket, ...containerdArgs('registry.example/app:v1')]);
    while (questions.length === 0) await new Promise((r) => setTimeout(r, 5));
    const closing = server!.close(5000);
    const after = await client(['--socket', socket, ...containerdArgs('registry.example/app:v2')]);
    expect(after.code).toBe(2);
    release();
    expect(await pending).toEqual({ code: 0, stdout: 'ok registry.example/app:v1\n' });
    await closing;
    server = undefined;
  });

  it("reads containerd's arguments in Go flag syntax, skips flags it does not know, and blocks on what it cannot use", async () => {
    expect(parseVerifierArguments(['--socket', '/s', '-future-flag', 'x', '-verbose', '-name=registry.example/a:v1', '--digest', DIGEST])).toEqual({
      socket: '/s',
      timeoutMs: 9000,
      name: 'registry.example/a:v1',
      digest: DIGEST,
    });
    await start();
    expect(await client(['--socket', socket, '-name', 'registry.example/app:v1'])).toEqual({
      code: 2,
      stdout: 'pullguard verifier: -name and -digest are required (containerd passes them); the pull is blocked\n',
    });
    expect((await client(['--socket', socket, 'stray', ...containerdArgs('registry.example/app:v1')])).code).toBe(2);
    expect((await client(containerdArgs('registry.example/app:v1'))).stdout).toMatch(/^pullguard verifier: no --socket/);
    // The descriptor containerd wrote must be the digest it names.
    const mismatch = await client(['--socket', socket, ...containerdArgs('registry.example/app:v1')], descriptor(`sha256:${'b'.repeat(64)}`));
    expect(mismatch.code).toBe(2);
    expect(mismatch.stdout).toMatch(/the descriptor on stdin names sha256:b+, not -digest sha256:a+/);
    expect(questions).toEqual([]);
  });

  it('prints one line within what containerd keeps of stdout (32 KiB), however long the reason', async () => {
    judge = async () => ({ allowed: false, cached: false, message: `SignatureValidationFailed: ${'é'.repeat(40_000)}\nsecond line` });
    await start();
    const { code, stdout } = await client(['--socket', socket, ...containerdArgs('registry.example/app:v1')]);
    expect(code).toBe(1);
    // The daemon sends at most 8 KiB of it.
    expect(Buffer.byteLength(stdout)).toBeLessThanOrEqual(8 * 1024 + 1);
    expect(stdout.trimEnd().split('\n')).toHaveLength(1);
    expect(stdout.trimEnd()).toMatch(/^SignatureValidationFailed: é+…$/);
  });

  it('the installed script runs the client through /bin/sh, as containerd runs it, and says what it does', async () => {
    await start();
    const binDir = join(dir, 'bin');
    // A quote in the socket path must survive the shell.
    const odd = join(dir, "it's", 'verifier.sock');
    const verifier = { socket, timeoutMs: 4000, node: process.execPath, client: verifierClientPath() };
    const path = await installVerifier({ binDir, name: 'pullguard', verifier });
    expect(path).toBe(join(binDir, 'pullguard'));
    expect((await stat(path)).mode & 0o777).toBe(0o755);
    expect(readInstalledVerifier(await readFile(path, 'utf8'))).toEqual(verifier);
    expect(readInstalledVerifier(verifierScript({ ...verifier, socket: odd }))?.socket).toBe(odd);
    const run = (name: string): Promise<{ code: number | null; stdout: string }> =>
      new Promise((resolve) => {
        const child = spawn(path, containerdArgs(name), { stdio: ['pipe', 'pipe', 'pipe'] });
        let stdout = '';
        child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
        child.once('exit', (code) => resolve({ code, stdout }));
        child.stdin.end(descriptor());
      });
    expect(await run('registry.example/app:v1')).toEqual({ code: 0, stdout: 'pullguard allowed registry.example/app:v1\n' });
    expect(await run('registry.example/unsigned:v1')).toEqual({ code: 1, stdout: `${DENIAL}\n` });
    await server!.close(100);
    server = undefined;
    const down = await run('registry.example/app:v1');
    expect(down.code).toBe(2);
    expect(down.stdout).toContain('no pullguard daemon answers');
    await expect(installVerifier({ binDir, name: '../escape', verifier })).rejects.toThrow(/not a plain file name/);
    await expect(installVerifier({ binDir, name: 'x', verifier: { ...verifier, client: join(dir, 'missing.js') } })).rejects.toThrow(/does not exist/);
  });
});
