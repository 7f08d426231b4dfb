/**
 * Starts the real Temporal dev server and the real S3 server once for the whole test run (state under
 * `.state/test-services-<pid>`, removed afterwards), and hands their addresses to tests through `inject('services')`. With
 * RANKFLOW_TEST_REUSE_SERVICES=1 it reuses services already recorded in that folder.
 */
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import type {} from 'vitest';
import type { TestProject } from 'vitest/node';
import { readServicesFile, checkServices, startServices } from '../../services/embedded.js';
import { PROJECT_ROOT as projectRoot } from '../../core/paths.js';
import type { Services } from '../../services/embedded.js';

export interface TestServices {
  temporalAddress: string;
  namespace: string;
  s3: { endpoint: string; bucket: string; region: string; accessKeyId: string; secretAccessKey: string };
}

declare module 'vitest' {
  export interface ProvidedContext {
    services: TestServices;
  }
}

let started: Services | null = null;

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  // One state folder per test process, so that two test runs on one machine never collide.
  const reuse = Boolean(process.env.RANKFLOW_TEST_REUSE_SERVICES);
  const stateDir = join(projectRoot, '.state', reuse ? 'test-services' : `test-services-${process.pid}`);
  let file = reuse ? readServicesFile(stateDir) : null;
  if (file && !(await checkServices(file)).every((h) => h.ok)) file = null;
  if (!file) {
    started = await startServices({ stateDir });
    file = started.file;
  }
  const t = file.temporal!;
  const s = file.s3!;
  project.provide('services', {
    temporalAddress: t.address,
    namespace: t.namespace,
    s3: {
      endpoint: s.endpoint,
      bucket: s.bucket,
      region: s.region,
      accessKeyId: s.accessKeyId,
      secretAccessKey: s.secretAccessKey,
    },
  });
  return async () => {
    if (started && !reuse) {
      await started.stop();
      rmSync(stateDir, { recursive: true, force: true });
    }
  };
}
