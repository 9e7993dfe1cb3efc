/**
 * One table of `pullguard serve` settings feeds the parser, the config-file keys and `serve --help`;
 * README "Configuration" must list the same rows, cell for cell, in the same order.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadDaemonConfig, type Environment } from '../../../src/config/daemon-config.js';
import { configFileKeys, flagUsage, formatSettingsHelp, parseOptionsFor, readmeCells, SERVE_SETTINGS } from '../../../src/config/flag-table.js';
import { packageRoot } from '../../../src/util/package-root.js';

/** The rows of the first table under `## Configuration`, as cell texts. */
function readmeConfigurationRows(): string[][] {
  const readme = readFileSync(join(packageRoot(), 'README.md'), 'utf8');
  const section = readme.slice(readme.indexOf('\n## Configuration\n'));
  const lines = section.split('\n').slice(1);
  const start = lines.findIndex((l) => l.startsWith('|'));
  const table = lines.slice(
    start,
    lines.findIndex((l, i) => i > start && !l.startsWith('|')),
  );
  const [header, separator, ...rows] = table.map((line) =>
    line
      .slice(1, -1)
      .split(' | ')
      .map((cell) => cell.trim()),
  );
  expect(header).toEqual(['flag', 'config key', 'default', 'meaning']);
  expect(separator).toEqual(['---|---|---|---']);
  return rows;
}

describe('the serve settings table', () => {
  it('is what README "Configuration" lists, row for row', () => {
    expect(readmeConfigurationRows()).toEqual(SERVE_SETTINGS.map((s) => [...readmeCells(s)]));
  });

  it('gives serve --help one line per flag with its meaning and default', () => {
    const help = formatSettingsHelp().split('\n');
    expect(help).toHaveLength(SERVE_SETTINGS.length);
    for (const [i, setting] of SERVE_SETTINGS.entries()) {
      const line = help[i]!;
      expect(line.trimStart().startsWith(`${flagUsage(setting)} `)).toBe(true);
      // Markdown code and emphasis marks are dropped in the terminal.
      const plain = (md: string): string => md.replace(/`/g, '').replace(/\*([^*]+)\*/g, '$1');
      expect(line).toContain(plain(setting.meaning));
      expect(line).toContain(`(default: ${plain(setting.default)}`);
      if (setting.key !== undefined) expect(line).toContain(`config key ${setting.key})`);
      expect(line).not.toMatch(/`/);
    }
    expect(help.find((l) => l.includes('--state-dir DIR'))).toMatch(
      /^ {2}--state-dir DIR +store and socket live here \(default: \$PULLGUARD_STATE_DIR or \.\/\.pullguard; config key stateDir\)$/,
    );
  });

  it('is every flag the parser takes and every key the config file takes', () => {
    expect(Object.keys(parseOptionsFor()).sort()).toEqual([...SERVE_SETTINGS.map((s) => s.flag), 'help'].sort());
    const environment: Environment = { cwd: '/srv', env: {}, exists: () => true, isDirectory: () => true, readFile: () => '', hostArch: 'x64', hostname: 'n' };
    // Every config key is accepted with a value of its type.
    const sample = { string: 'x', 'string[]': [], number: 1, boolean: false } as const;
    const file = Object.fromEntries([...configFileKeys()].map(([key, type]) => [key, sample[type]]));
    const withFile: Environment = {
      ...environment,
      readFile: () => JSON.stringify({ ...file, platform: 'linux/amd64', logLevel: 'info', backend: 'unix:///run/x.sock', runtimeFetch: 'mirror' }),
    };
    expect(() => loadDaemonConfig(['--config', '/c.json'], withFile)).not.toThrow();
    // Every flag with a value is accepted.
    const argv = SERVE_SETTINGS.filter((s) => s.value !== undefined && s.flag !== 'config').flatMap((s) => [
      `--${s.flag}`,
      s.flag === 'platform'
        ? 'linux/amd64'
        : s.flag === 'log-level'
          ? 'info'
          : s.flag === 'backend'
            ? 'unix:///run/x.sock'
            : s.flag === 'runtime-fetch'
              ? 'mirror'
              : s.value === 'DUR'
                ? '1s'
                : s.value === 'N' || s.value === 'KIB/S'
                  ? '2'
                  : s.flag === 'insecure-registry'
                    ? 'r.example:5000'
                    : '/x',
    ]);
    expect(() => loadDaemonConfig(argv, environment)).not.toThrow();
  });
});
