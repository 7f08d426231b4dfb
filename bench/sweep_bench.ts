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
import { randomBytes } from 'node:crypto';
import { Client, Connection } from '@temporalio/client';
import { startWorker } from '../cli/worker.js';
import { resultKey } from '../store/keys.js';
import { stopForkServer } from '../launcher/spawn.js';
import { ResultRecord } from '../schemas/result.js';
import { type BenchSize, benchRuns } from './lib/spec.js';
import { type BenchEnv, timedSweep, withBenchServices } from './lib/services.js';

function arg(name: string, dflt: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : dflt;
}
const RUNS = arg('runs', 12);
const SLOTS = arg('slots', 2);
const STEPS = arg('steps', 30);
const mi = process.argv.indexOf('--modes');
const MODES = (mi >= 0 ? process.argv[mi + 1]! : 'process,warm').split(',') as ('process' | 'warm')[];

const SIZE: BenchSize = {
  maxLength: 32,
  trainSize: 256,
  evalSize: 64,
  rank: 4,
  steps: STEPS,
  batchSize: 8,
  evalBatchSize: 16,
  logEvery: 5,
};

interface SweepFigures {
  wall: number;
  train: number;
  ok: number;
}

async function sweep(env: BenchEnv, label: string, base: number): Promise<SweepFigures> {
  const worker = await startWorker(env.config, { slots: { cpu: SLOTS }, shutdownGraceS: 2 });
  const connection = await Connection.connect({ address: env.config.temporalAddress });
  try {
    const runs = benchRuns(RUNS, base, SIZE);
    const sweepId = `sweep-bench-${label}-${randomBytes(4).toString('hex')}`;
    const { status, wall } = await timedSweep(new Client({ connection }), env, { sweepId, runs, concurrency: SLOTS });
    let train = 0;
    for (const r of runs) {
      const raw = await env.store.get(resultKey(r.id));
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
  await withBenchServices('sweep-bench', async (env) => {
    console.log(`sweep bench: ${RUNS} real runs (tiny-encoder, LoRA r=4, ${STEPS} steps, CPU) on ${SLOTS} slots`);
    const figures: [string, SweepFigures][] = [];
    for (const [i, mode] of MODES.entries()) {
      process.env.RANKFLOW_RUNTIME_MODE = mode;
      figures.push([
        mode === 'warm' ? 'warm runtime' : 'one process/run',
        await sweep(env, mode, Date.now() + i * RUNS),
      ]);
      stopForkServer();
    }
    for (const [label, f] of figures) {
      report(label, f);
      if (f.ok !== RUNS) process.exitCode = 1;
    }
  });
}

await main();
