/**
 * The client commands' own messages, in process: no server on the socket, and command lines that
 * do not parse.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLIENT_HELP, runClientCommand } from '../../../src/cli/commands.js';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'pullguard-cli-'));
});
afterAll(async () => rm(dir, { recursive: true, force: true }));

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

async function client(command: string, argv: string[], defaultSocket = join(dir, 'default.sock')): Promise<{ code: number; stdout: string; stderr: string }> {
  const stdout = sink();
  const stderr = sink();
  const code = await runClientCommand(command, argv, { stdout, stderr, defaultSocket });
  return { code, stdout: stdout.text, stderr: stderr.text };
}

const noServer = (socket: string): string =>
  `no pullguard is listening on ${socket} (start one with \`pullguard serve\`, or point at another with --socket PATH or PULLGUARD_SOCKET)`;

describe('client commands without a server', () => {
  it('say that no pullguard is listening on the socket and how to point at another, for every command', async () => {
    const socket = join(dir, 'absent.sock');
    for (const [command, argv] of [
      ['pull', ['registry.example/app:v1']],
      ['images', []],
      ['inspect', ['registry.example/app:v1']],
      ['rmi', ['registry.example/app:v1']],
    ] as const) {
      const result = await client(command, [...argv, '--socket', socket]);
      expect(result.code).toBe(1);
      expect(result.stderr).toBe(`pullguard ${command}: ${noServer(socket)}\n`);
    }
  });

  it('name the default socket (from PULLGUARD_SOCKET or the state dir) when no --socket is given', async () => {
    const socket = join(dir, 'from-env.sock');
    expect((await client('images', [], socket)).stderr).toBe(`pullguard images: ${noServer(socket)}\n`);
  });

  it('say the same for a socket file nobody listens on (a server that was killed)', async () => {
    const stale = join(dir, 'stale.sock');
    await writeFile(stale, '');
    expect((await client('images', ['--socket', stale])).stderr).toBe(`pullguard images: ${noServer(stale)}\n`);
  });
});

describe('client command lines that do not parse', () => {
  it('print what is wrong, in balanced quotes, then the usage (exit 2)', async () => {
    const typo = await client('pull', ['--sokcet', '/run/pullguard.sock', 'registry.example/app:v1']);
    expect(typo.code).toBe(2);
    expect(typo.stderr).toBe(`pullguard pull: unknown option --sokcet\n\n${CLIENT_HELP['pull']}\n`);
    for (const quote of ["'", '"']) expect(typo.stderr.split(quote).length % 2).toBe(1);

    expect((await client('pull', ['registry.example/app:v1', '--creds'])).stderr).toMatch(
      /^pullguard pull: option --creds needs a value\n\nUsage: pullguard pull /,
    );
    expect((await client('images', ['-x'])).stderr).toMatch(/^pullguard images: unknown option -x\n\nUsage: pullguard images /);
    expect((await client('rmi', ['--help=yes'])).stderr).toMatch(/^pullguard rmi: option --help does not take a value\n\nUsage: pullguard rmi /);
  });

  it('list in `images --help` exactly the columns `images` prints', () => {
    expect(CLIENT_HELP['images']).toContain('in the columns IMAGE, TAG, IMAGE ID, SIZE.');
    expect(CLIENT_HELP['images']).toContain('add the column DIGEST: IMAGE, TAG, DIGEST, IMAGE ID, SIZE');
  });
});
