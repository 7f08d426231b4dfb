/**
 * What the orchestration benchmarks share: the embedded Temporal dev server and SeaweedFS started in a scratch
 * folder, a config on them with its own key prefix and task queues, the bucket, and a timed sweep.
 */
import { join } from 'node:path';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { randomBytes } from 'node:crypto';
import type { Client } from '@temporalio/client';
import { type Services, startServices } from '../../services/embedded.js';
import { DEFAULT_QUEUES } from '../../cli/config.js';
import type { Config } from '../../cli/config.js';
import { startSweep, writeManifest } from '../../cli/sweeps.js';
import { S3Store } from '../../store/store.js';
import type { SweepStatus } from '../../schemas/orchestration.js';
import type { PlannedRun } from '../../schemas/runspec.js';

export type S3Config = Extract<Config['store'], { kind: 's3' }>;

/** The store config of the embedded S3 server, under `prefix`. */
export function s3Config(services: Services, prefix: string): S3Config {
  return {
    kind: 's3',
    endpoint: services.s3Endpoint,
    bucket: services.s3Bucket,
    region: services.s3Region,
    accessKeyId: services.accessKeyId,
    secretAccessKey: services.secretAccessKey,
    prefix,
  };
}

export interface BenchEnv {
  config: Config;
  store: S3Store;
  /** Random: names this bench's key prefix, task queues and sweeps apart from any other's. */
  suffix: string;
}

/** Starts both services in a scratch folder, runs `body` on them, then stops them and removes the folder. */
export async function withBenchServices(name: string, body: (env: BenchEnv) => Promise<void>): Promise<void> {
  const stateDir = mkdtempSync(join(tmpdir(), `rankflow-${name}-`));
  const services = await startServices({ stateDir });
  try {
    const suffix = randomBytes(4).toString('hex');
    const config: Config = {
      temporalAddress: services.temporalAddress!,
      namespace: 'default',
      store: s3Config(services, `bench-${suffix}`),
      queues: Object.fromEntries(Object.entries(DEFAULT_QUEUES).map(([k, v]) => [k, `${v}-${suffix}`])),
      embedded: false,
      source: 'bench',
    };
    const store = new S3Store(config.store as S3Config);
    await store.ensureBucket();
    await body({ config, store, suffix });
  } finally {
    await services.stop();
    rmSync(stateDir, { recursive: true, force: true });
  }
}

/** Writes the manifest, starts the sweep and waits for its end: its final status, wall time (s) and start (ms
 * since the epoch). */
export async function timedSweep(
  client: Client,
  env: BenchEnv,
  opts: { sweepId: string; runs: PlannedRun[]; concurrency: number },
): Promise<{ status: SweepStatus; wall: number; startedAt: number }> {
  const sweep = { ...opts, recipe: 'bench' };
  await writeManifest(env.store, env.config, sweep);
  const t0 = performance.now();
  const startedAt = Date.now();
  await startSweep(client, env.config, sweep);
  const status = (await client.workflow.getHandle(opts.sweepId).result()) as SweepStatus;
  return { status, wall: (performance.now() - t0) / 1000, startedAt };
}
