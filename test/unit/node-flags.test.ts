/**
 * The places that start `pullguard serve` outside node code (package.json, the bin shebang, the
 * systemd unit, the kind script) cannot import SERVE_NODE_FLAGS; this keeps them equal to it.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { SERVE_NODE_FLAGS } from '../../src/node-flags.js';
import { packageRoot } from '../../src/util/package-root.js';

const read = (path: string): string => readFileSync(join(packageRoot(), path), 'utf8');
const flags = SERVE_NODE_FLAGS.join(' ');

describe('node flags of pullguard serve', () => {
  it('are the same wherever the daemon is started', () => {
    expect(flags).not.toBe('');
    expect((JSON.parse(read('package.json')) as { scripts: { start: string } }).scripts.start).toBe(`exec node ${flags} dist/src/main.js serve`);
    expect(read('src/main.ts').split('\n')[0]).toBe(`#!/usr/bin/env -S node ${flags}`);
    expect(read('deploy/systemd/pullguard.service')).toContain(`ExecStart=/usr/bin/node ${flags} /opt/pullguard/dist/src/main.js serve`);
    expect(read('deploy/kind/run.sh')).toContain(`ExecStart=/usr/local/bin/node ${flags} /opt/pullguard/dist/src/main.js serve`);
  });
});
