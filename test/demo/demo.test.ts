/**
 * `npm run demo` (dist/test/demo/demo.js) is a real check: it must exit 0 with the three outcomes,
 * and leave nothing behind — no process, no temp dir — whether it finishes, is interrupted, or
 * cannot start. Each run gets its own TMPDIR, so "behind" is everything under it.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { packageRoot } from '../../src/util/package-root.js';

const DEMO = join(packageRoot(), 'dist/test/demo/demo.js');

interface DemoRun {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
}

const roots: string[] = [];
afterEach(async () => {
  await Promise.all(roots.splice(0).map((r) => rm(r, { recursive: true, force: true })));
});

function freshTmpdir(): string {
  const root = mkdtempSync(join(tmpdir(), 'pullguard-demo-test-'));
  roots.push(root);
  return root;
}

/** Runs the demo with TMPDIR=root; `interrupt` sends a signal once stdout contains `when`. */
function runDemo(root: string, options: { env?: NodeJS.ProcessEnv; interrupt?: { when: string; signal: NodeJS.Signals } } = {}): Promise<DemoRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [DEMO], { env: { ...process.env, ...options.env, TMPDIR: root }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    let sent = false;
    child.stdout.on('data', (chunk: Buffer) => {
      stdout += chunk.toString();
      if (options.interrupt !== undefined && !sent && stdout.includes(options.interrupt.when)) {
        sent = true;
        child.kill(options.interrupt.signal);
      }
    });
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.once('error', reject);
    child.once('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
  });
}

/** Live processes whose command line names root or that inherited a TMPDIR under it. */
function processesUnder(root: string): string[] {
  const found: string[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    try {
      const cmdline = readFileSync(`/proc/${entry}/cmdline`, 'utf8');
      const environ = readFileSync(`/proc/${entry}/environ`, 'utf8').split('\0');
      if (cmdline.includes(root) || environ.some((v) => v.startsWith(`TMPDIR=${root}`))) found.push(`${entry}: ${cmdline.replaceAll('\0', ' ')}`);
    } catch {
      // exited, or not readable
    }
  }
  return found;
}

function expectNothingLeft(root: string): void {
  expect(processesUnder(root)).toEqual([]);
  expect(readdirSync(root)).toEqual([]);
}

describe.runIf(existsSync('/proc'))('npm run demo', () => {
  it('allows the signed image, allows the HTML signature-2 with a warning, denies the unsigned one with both reasons; then leaves nothing behind', async () => {
    const root = freshTmpdir();
    const run = await runDemo(root);
    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);
    expect(run.stdout).toMatch(/^1\. signed image +→ ALLOWED \(sha256:[0-9a-f]{64}\)$/m);
    expect(run.stdout).toMatch(
      /^2\. signed, signature-2 is an HTML page +→ ALLOWED with a warning:\n +PGW001 .*signature-2 \(http:\/\/127\.0\.0\.1:\d+\/.*unrecognized signature format, starting with binary 0x3c \(HTTP 200, Content-Type text\/html/m,
    );
    expect(run.stdout).toMatch(
      /^3\. unsigned image.* +→ DENIED:\n +SignatureValidationFailed: Source image rejected: A signature was required, but no signature exists; additionally 1 signature could not be read: signature-1 \(.*503/m,
    );
    expect(run.stdout).toMatch(/^All three outcomes as expected/m);
    expectNothingLeft(root);
  });

  it('cleans up when interrupted while images are being pushed (SIGINT)', async () => {
    const root = freshTmpdir();
    const run = await runDemo(root, { interrupt: { when: 'signing key', signal: 'SIGINT' } });
    expect(run.code).toBe(130);
    expect(run.stderr).toMatch(/SIGINT, cleaning up/);
    expectNothingLeft(root);
  });

  it('cleans up when terminated with pullguard running (SIGTERM)', async () => {
    const root = freshTmpdir();
    const run = await runDemo(root, { interrupt: { when: 'pullguard    serving', signal: 'SIGTERM' } });
    expect(run.code).toBe(143);
    expectNothingLeft(root);
  });

  it('names a missing program and how to install it', async () => {
    const root = freshTmpdir();
    const emptyBin = join(root, 'empty-bin');
    const run = await runDemo(root, { env: { PATH: emptyBin } });
    expect(run.code).toBe(2);
    expect(run.stderr).toMatch(/missing skopeo, gpg/);
    expect(run.stderr).toContain('bash .ci/install-deps');
    expect(run.stdout).toBe('');
    expect(readdirSync(root)).toEqual([]);
  });
});
