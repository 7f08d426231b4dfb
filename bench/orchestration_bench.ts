/**
 * Orchestration overhead: a sweep of no-op runs through the full path (sweep workflow -> run child
 * workflows -> training activity -> spawned process speaking the runtime's JSON-lines protocol ->
 * checkpoint upload to S3 -> result record written once), on the real Temporal dev server and SeaweedFS.
 *
 *   npx tsx bench/orchestration_bench.ts [runs=200] [concurrency=8]
 *
 * Prints runs per second, the mean wall time per run, and the overhead per run as a fraction of a
 * 60-second training run. The no-op runtime is bench/noop/noop_runtime.py (no torch import).
 */
import { join } from 'node:path';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { randomBytes } from 'node:crypto';
import { Client, Connection } from '@temporalio/client';
import { startServices } from '../services/embedded.js';
import { startWorker } from '../cli/worker.js';
import { DEFAULT_QUEUES } from '../cli/config.js';
import type { Config } from '../cli/config.js';
import { startSweep, writeManifest } from '../cli/sweeps.js';
import { S3Store } from '../store/store.js';
import { PROJECT_ROOT } from '../core/paths.js';
import { runId } from '../planning/planner.js';
import type { PlannedRun, RunSpec } from '../schemas/runspec.js';
import type { SweepStatus } from '../schemas/orchestration.js';

const runs = Number(process.argv[2] ?? 200);
const concurrency = Number(process.argv[3] ?? 8);

function spec(seed: number): RunSpec {
  return {
    schema: 'rankflow.run/v1',
    model: { name: 'tiny-encoder', source: 'builtin', task: 'seq-cls', config: {}, random_init: true },
    dataset: {
      name: 'synthetic/seq-cls',
      data_root: null,
      max_length: 16,
      train_size: 8,
      eval_size: 8,
      eval_split: 'validation',
      metric: 'accuracy',
      options: {},
    },
    method: { name: 'lora', rank: 2, options: {}, targets: [] },
    training: {
      optimizer: 'adamw',
      lr: 1e-3,
      lr_groups: {},
      weight_decay: 0,
      schedule: 'constant',
      warmup_ratio: 0,
      max_steps: 2,
      epochs: null,
      batch_size: 4,
      eval_batch_size: 4,
      grad_accum: 1,
      max_grad_norm: null,
      precision: 'fp32',
      eval_every: null,
      checkpoint_every: null,
      log_every: 1,
      train_head: true,
    },
    seed,
    device: 'cpu',
  };
}

async function main(): Promise<void> {
  process.env.RANKFLOW_RUNTIME_MODULE = 'noop_runtime';
  process.env.PYTHONPATH = join(PROJECT_ROOT, 'bench', 'noop');
  process.env.RANKFLOW_WORKER_LOG_LEVEL ??= 'ERROR';
  const stateDir = mkdtempSync(join(tmpdir(), 'rankflow-bench-'));
  const services = await startServices({ stateDir });
  try {
    const suffix = randomBytes(4).toString('hex');
    const config: Config = {
      temporalAddress: services.temporalAddress!,
      namespace: 'default',
      store: {
        kind: 's3',
        endpoint: services.s3Endpoint,
        bucket: services.s3Bucket,
        region: services.s3Region,
        accessKeyId: services.accessKeyId,
        secretAccessKey: services.secretAccessKey,
        prefix: `bench-${suffix}`,
      },
      queues: Object.fromEntries(Object.entries(DEFAULT_QUEUES).map(([k, v]) => [k, `${v}-${suffix}`])),
      embedded: false,
      source: 'bench',
    };
    const store = new S3Store(config.store as Extract<Config['store'], { kind: 's3' }>);
    await store.ensureBucket();
    const worker = await startWorker(config, { slots: { cpu: concurrency }, shutdownGraceS: 2 });
    const connection = await Connection.connect({ address: config.temporalAddress });
    const client = new Client({ connection });
    const base = Date.now();
    const planned: PlannedRun[] = Array.from({ length: runs }, (_, i) => {
      const s = spec(base + i);
      return {
        id: runId(s),
        spec: s,
        labels: {
          model: 'tiny-encoder',
          method: 'lora',
          rank: 2,
          dataset: 'synthetic/seq-cls',
          seed: s.seed,
          setting: '',
          tags: [],
        },
        params: null,
      };
    });
    const opts = { sweepId: `sweep-bench-${suffix}`, recipe: 'bench', runs: planned, concurrency };
    await writeManifest(store, config, opts);
    const t0 = performance.now();
    await startSweep(client, config, opts);
    const status = (await client.workflow.getHandle(opts.sweepId).result()) as SweepStatus;
    const wall = (performance.now() - t0) / 1000;
    const ok = status.counts.succeeded;
    // Latency per run at this concurrency (each slot runs one run at a time).
    const perRun = (wall * concurrency) / runs;
    console.log(
      `orchestration bench: ${runs} no-op runs, concurrency ${concurrency}, ${ok} succeeded, ${status.counts.failed} failed`,
    );
    console.log(`  wall time            ${wall.toFixed(1)} s`);
    console.log(`  throughput           ${(runs / wall).toFixed(2)} runs/s`);
    console.log(
      `  time per run (slot)  ${perRun.toFixed(2)} s  (spawn + events + S3 upload + record + workflow steps)`,
    );
    console.log(`  overhead vs a 60 s run  ${((perRun / 60) * 100).toFixed(2)} %`);
    console.log(`  sweep generations (continue-as-new)  ${status.generation}`);
    await connection.close();
    await worker.shutdown();
    if (ok !== runs) process.exitCode = 1;
  } finally {
    await services.stop();
    rmSync(stateDir, { recursive: true, force: true });
  }
}

await main();
