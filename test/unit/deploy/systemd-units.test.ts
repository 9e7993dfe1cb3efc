/**
 * Every systemd unit and drop-in in deploy/ passes Debian's `systemd-analyze verify` without a single
 * warning. systemd ignores an unknown or misplaced key with only a warning (and exit 0), so a unit
 * can look right and still not do what it says: the test fails on any output at all.
 */
import { execFile } from 'node:child_process';
import { cp, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { packageRoot } from '../../../src/util/package-root.js';

const execFileAsync = promisify(execFile);
const systemdDir = join(packageRoot(), 'deploy/systemd');

async function verify(unitDir: string, units: readonly string[]): Promise<string> {
  // SYSTEMD_UNIT_PATH makes systemd load the drop-ins (`<unit>.d/*.conf`) beside the units.
  const result = await execFileAsync('systemd-analyze', ['verify', ...units.map((u) => join(unitDir, u))], {
    env: { ...process.env, SYSTEMD_UNIT_PATH: `${unitDir}:`, SYSTEMD_LOG_COLOR: '0' },
  }).catch((err: { stdout: string; stderr: string; code: number }) => ({ ...err, failed: true }));
  return `${result.stdout}${result.stderr}${'failed' in result ? `\nexit ${(result as { code: number }).code}` : ''}`.trim();
}

describe('deploy/systemd units', () => {
  let unitDir: string;
  let units: string[];
  beforeAll(async () => {
    unitDir = await mkdtemp(join(tmpdir(), 'pullguard-units-'));
    await cp(systemdDir, unitDir, { recursive: true });
    const entries = await readdir(systemdDir, { withFileTypes: true });
    units = entries.filter((e) => e.isFile() && /\.(service|socket|timer|path)$/.test(e.name)).map((e) => e.name);
    // Drop-ins for units we do not ship (kubelet) are checked on a minimal stand-in unit.
    for (const dropIn of entries.filter((e) => e.isDirectory() && e.name.endsWith('.d'))) {
      const unit = dropIn.name.slice(0, -2);
      if (!units.includes(unit)) {
        await writeFile(join(unitDir, unit), '[Unit]\nDescription=stand-in for drop-in checks\n\n[Service]\nExecStart=/bin/true\n');
        units.push(unit);
      }
    }
  });
  afterAll(async () => {
    await rm(unitDir, { recursive: true, force: true });
  });

  test('ships at least pullguard.service and the kubelet drop-in', () => {
    expect(units).toEqual(expect.arrayContaining(['pullguard.service', 'kubelet.service']));
  });

  test('systemd-analyze verify prints nothing for any unit or drop-in', async () => {
    expect(await verify(unitDir, units)).toBe('');
  });

  test('the check sees a misplaced key (so it can fail)', async () => {
    const broken = await mkdtemp(join(tmpdir(), 'pullguard-units-broken-'));
    try {
      await writeFile(join(broken, 'x.service'), '[Unit]\nDescription=x\n\n[Service]\nExecStart=/bin/true\nStartLimitIntervalSec=0\n');
      expect(await verify(broken, ['x.service'])).toContain("Unknown key 'StartLimitIntervalSec' in section [Service]");
    } finally {
      await rm(broken, { recursive: true, force: true });
    }
  });
});
