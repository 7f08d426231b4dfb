import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['tests/**/*.test.ts'],
    // Integration tests start real servers and the Python runtime: generous per-test limits, set per test
    // where they matter; the machine has 2 cores, so at most 2 test files at a time.
    testTimeout: 60_000,
    hookTimeout: 240_000,
    pool: 'forks',
    maxWorkers: 2,
    globalSetup: ['tests/setup/global-services.ts'],
  },
});
