import { fileURLToPath } from 'node:url';
import { configDefaults, defineConfig } from 'vitest/config';

const root = fileURLToPath(new URL('..', import.meta.url));

export default defineConfig({
  test: {
    root,
    include: ['test/**/*.test.ts'],
    // The real node runs as its own stage (npm run test:node, test/node/vitest.config.ts).
    exclude: [...configDefaults.exclude, 'test/node/**'],
    globalSetup: ['test/helpers/global-setup.ts'],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    pool: 'forks',
    // Two cores: integration files start registries and servers; keep them from starving each other.
    maxWorkers: 2,
  },
});
