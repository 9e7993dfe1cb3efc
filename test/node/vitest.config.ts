/**
 * The node scenarios (test/node/*.test.ts): one real node per file, files one after another (two
 * nodes at once would starve each other on 2 cores). `npm run test:node` runs them; they skip under
 * the main config (test/vitest.config.ts) unless PULLGUARD_NODE_SCENARIOS=1.
 */
import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';

const root = fileURLToPath(new URL('../..', import.meta.url));

export default defineConfig({
  test: {
    root,
    include: ['test/node/**/*.test.ts'],
    globalSetup: ['test/helpers/global-setup.ts'],
    env: { PULLGUARD_NODE_SCENARIOS: '1' },
    testTimeout: 240_000,
    hookTimeout: 300_000,
    pool: 'forks',
    maxWorkers: 1,
    fileParallelism: false,
    reporters: ['default'],
  },
});
