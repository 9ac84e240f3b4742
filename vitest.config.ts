import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    setupFiles: ['test/helpers/setup-network.ts'],
    globalSetup: ['test/helpers/build.ts'],
    testTimeout: 30_000,
    hookTimeout: 30_000,
    // End-to-end suites spawn worker processes on fixed port ranges; file-level isolation keeps them apart.
    fileParallelism: true,
    pool: 'forks',
  },
});
