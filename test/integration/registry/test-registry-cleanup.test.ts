/**
 * The suite's own registries leave nothing behind: htpasswd files, token keys and certificates live
 * in a temp dir that stop() removes (issue: every run left `pullguard-registry-*` dirs in /tmp).
 */
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startRegistry } from '../../helpers/registry.js';

describe('test registries clean up after themselves', () => {
  let privateTmp: string;
  let previousTmp: string | undefined;
  beforeAll(async () => {
    privateTmp = await mkdtemp(join(tmpdir(), 'pullguard-cleanup-'));
    previousTmp = process.env['TMPDIR'];
    process.env['TMPDIR'] = privateTmp; // os.tmpdir() reads it on every call: this file's own /tmp
  });
  afterAll(async () => {
    if (previousTmp === undefined) delete process.env['TMPDIR'];
    else process.env['TMPDIR'] = previousTmp;
    await rm(privateTmp, { recursive: true, force: true });
  });

  it("htpasswd, token and TLS registries, and one on another registry's storage, leave no temp dir", async () => {
    const plain = await startRegistry();
    const registries = [
      plain,
      await startRegistry({ auth: 'htpasswd', users: { u: 'p' } }),
      await startRegistry({ tokenAuth: { users: { u: 'p' } } }),
      await startRegistry({ tls: true }),
      await startRegistry({ auth: 'htpasswd', users: { u: 'p' }, dataDir: plain.dataDir }),
    ];
    expect((await readdir(privateTmp)).length).toBeGreaterThan(0);
    for (const registry of registries.reverse()) await registry.stop();
    expect(await readdir(privateTmp)).toEqual([]);
  });
});
