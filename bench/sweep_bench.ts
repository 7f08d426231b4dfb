/**
 * The real cost of a sweep: N tiny real runs (the real Python runtime training LoRA on the built-in
 * tiny encoder, not the no-op) through the full path on the real Temporal dev server and SeaweedFS, in one
 * run:
 *
 *   npx tsx bench/sweep_bench.ts [--runs 12] [--slots 2] [--steps 30] [--modes process,warm]
 *
 * Each mode is one sweep on a fresh worker: `process` starts one Python per run, `warm` forks each run from
 * the warm runtime (launcher/spawn.ts `runtimeMode`); the figures are printed side by side.
 *
 * Prints the sweep's wall time, the sum of the runs' own training times (the runtime's `wall_time_s`,
 * from data and model set-up to the last step and evaluation, as recorded in each result record), the
 * sweep's efficiency Σ training / (wall × slots), and the overhead per run (wall × slots − Σ training) / N:
 * what starting Python and torch, the workflow steps, checkpoint uploads and result records cost a run.
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
import { resultKey } from '../store/keys.js';
import { stopForkServer } from '../launcher/spawn.js';
import { runId } from '../planning/planner.js';
import { ResultRecord } from '../schemas/result.js';
import type { PlannedRun, RunSpec } from '../schemas/runspec.js';
import type { SweepStatus } from '../schemas/orchestration.js';

function arg(name: string, dflt: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : dflt;
}
const RUNS = arg('runs', 12);
const SLOTS = arg('slots', 2);
const STEPS = arg('steps', 30);
const mi = process.argv.indexOf('--modes');
const MODES = (mi >= 0 ? process.argv[mi + 1]! : 'process,warm').split(',') as ('process' | 'warm')[];

function spec(seed: number): RunSpec {
  return {
    schema: 'rankflow.run/v1',
    model: { name: 'tiny-encoder', source: 'builtin', task: 'seq-cls', config: {}, random_init: true },
    dataset: {
      name: 'synthetic/seq-cls',
      data_root: null,
      max_length: 32,
      train_size: 256,
      eval_size: 64,
      eval_split: 'validation',
      metric: 'accuracy',
      options: {},
    },
    method: { name: 'lora', rank: 4, options: {}, targets: [] },
    training: {
      optimizer: 'adamw',
      lr: 1e-3,
      lr_groups: {},
      weight_decay: 0,
      schedule: 'constant',
      warmup_ratio: 0,
      max_steps: STEPS,
      epochs: null,
      batch_size: 8,
      eval_batch_size: 16,
      grad_accum: 1,
      max_grad_norm: null,
      precision: 'fp32',
      eval_every: null,
      checkpoint_every: null,
      log_every: 5,
      train_head: true,
    },
    seed,
    device: 'cpu',
  };
}

function planned(base: number): PlannedRun[] {
  return Array.from({ length: RUNS }, (_, i) => {
    const s = spec(base + i);
    const labels = { model: 'tiny-encoder', method: 'lora', rank: 4, dataset: 'synthetic/seq-cls', seed: s.seed };
    return { id: runId(s), spec: s, labels: { ...labels, setting: '', tags: [] }, params: null };
  });
}

interface SweepFigures {
  wall: number;
  train: number;
  ok: number;
}

async function sweep(config: Config, store: S3Store, label: string, base: number): Promise<SweepFigures> {
  const worker = await startWorker(config, { slots: { cpu: SLOTS }, shutdownGraceS: 2 });
  const connection = await Connection.connect({ address: config.temporalAddress });
  try {
    const client = new Client({ connection });
    const runs = planned(base);
    const opts = {
      sweepId: `sweep-bench-${label}-${randomBytes(4).toString('hex')}`,
      recipe: 'bench',
      runs,
      concurrency: SLOTS,
    };
    await writeManifest(store, config, opts);
    const t0 = performance.now();
    await startSweep(client, config, opts);
    const status = (await client.workflow.getHandle(opts.sweepId).result()) as SweepStatus;
    const wall = (performance.now() - t0) / 1000;
    let train = 0;
    for (const r of runs) {
      const raw = await store.get(resultKey(r.id));
      if (raw) train += ResultRecord.parse(JSON.parse(raw.toString('utf8'))).timings.wall_s;
    }
    return { wall, train, ok: status.counts.succeeded };
  } finally {
    await connection.close();
    await worker.shutdown();
  }
}

function report(label: string, f: SweepFigures): void {
  const eff = f.train / (f.wall * SLOTS);
  const over = (f.wall * SLOTS - f.train) / RUNS;
  console.log(
    `${label.padEnd(18)} ${f.ok}/${RUNS} ok  wall ${f.wall.toFixed(1)} s  Σ training ${f.train.toFixed(1)} s  ` +
      `efficiency ${eff.toFixed(2)}  overhead/run ${over.toFixed(2)} s  mean training/run ${(f.train / RUNS).toFixed(2)} s`,
  );
}

async function main(): Promise<void> {
  process.env.RANKFLOW_WORKER_LOG_LEVEL ??= 'ERROR';
  const stateDir = mkdtempSync(join(tmpdir(), 'rankflow-sweep-bench-'));
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
    console.log(`sweep bench: ${RUNS} real runs (tiny-encoder, LoRA r=4, ${STEPS} steps, CPU) on ${SLOTS} slots`);
    const figures: [string, SweepFigures][] = [];
    for (const [i, mode] of MODES.entries()) {
      process.env.RANKFLOW_RUNTIME_MODE = mode;
      figures.push([
        mode === 'warm' ? 'warm runtime' : 'one process/run',
        await sweep(config, store, mode, Date.now() + i * RUNS),
      ]);
      stopForkServer();
    }
    for (const [label, f] of figures) {
      report(label, f);
      if (f.ok !== RUNS) process.exitCode = 1;
    }
  } finally {
    await services.stop();
    rmSync(stateDir, { recursive: true, force: true });
  }
}

await main();
