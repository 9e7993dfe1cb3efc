/**
 * deploy/kind/run.sh must stop at once, clearly and with exit code 2, where there is no working
 * Docker engine (as on this machine), before it builds or changes anything.
 */
import { execFile } from 'node:child_process';
import { chmod, mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const script = fileURLToPath(new URL('../../../deploy/kind/run.sh', import.meta.url));
let bin: string;

function run(path: string): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile('/bin/bash', [script], { env: { PATH: path, HOME: bin }, timeout: 20_000 }, (err, stdout, stderr) => {
      resolve({ code: err === null ? 0 : typeof err.code === 'number' ? err.code : -1, stdout, stderr });
    });
  });
}

beforeAll(async () => {
  bin = await mkdtemp(join(tmpdir(), 'pullguard-kindrun-'));
  // Only what the script needs before its Docker check; no docker.
  for (const tool of ['dirname', 'mktemp', 'rm']) await symlink(`/usr/bin/${tool}`, join(bin, tool)).catch(() => symlink(`/bin/${tool}`, join(bin, tool)));
});

afterAll(async () => {
  await rm(bin, { recursive: true, force: true });
});

describe('deploy/kind/run.sh', () => {
  it('exits 2 with a clear message when docker is not installed', async () => {
    const result = await run(bin);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain('Docker is not installed');
    expect(result.stderr).toContain('nothing was changed');
  });

  it("exits 2 when docker is there but 'docker info' fails", async () => {
    const withDocker = join(bin, 'with-docker');
    await rm(withDocker, { recursive: true, force: true });
    await mkdir(withDocker);
    await writeFile(join(withDocker, 'docker'), '#!/bin/bash\necho "Cannot connect to the Docker daemon" >&2\nexit 1\n');
    await chmod(join(withDocker, 'docker'), 0o755);
    const result = await run(`${withDocker}:${bin}`);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain("'docker info' failed");
  });
});
