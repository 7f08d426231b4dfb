import { defineConfig } from 'vitest/config';

/**
 * Two projects: `unit` (no servers: pure logic, the CLI's error paths, the real runtime through the
 * launcher) and `integration` (the real Temporal dev server and SeaweedFS S3 server, started once by the
 * global setup). `npm test` runs `unit` first. A test that needs the servers is named `*.e2e.test.ts` or
 * listed in INTEGRATION.
 */
const INTEGRATION = [
  'tests/**/*.e2e.test.ts',
  'tests/services.test.ts',
  'tests/store.test.ts',
  'tests/tables-reader.test.ts',
  'tests/planner-workflow.test.ts',
];

export default defineConfig({
  test: {
    // Integration tests start real servers and the Python runtime: generous per-test limits, set per test
    // where they matter; the machine has 2 cores, so at most 2 test files at a time.
    testTimeout: 60_000,
    hookTimeout: 240_000,
    pool: 'forks',
    maxWorkers: 2,
    projects: [
      {
        extends: true,
        test: { name: 'unit', include: ['tests/**/*.test.ts'], exclude: INTEGRATION },
      },
      {
        extends: true,
        test: { name: 'integration', include: INTEGRATION, globalSetup: ['tests/setup/global-services.ts'] },
      },
    ],
  },
});
