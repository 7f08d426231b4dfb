/**
 * The real cost of a sweep: N tiny real runs (the real Python runtime training LoRA on the built-in
 * tiny encoder, not the no-op) through the full path on the real Temporal dev server and SeaweedFS, in one
 * run:
 *
 *   npx tsx bench/sweep_bench.ts [--runs 12] [--slots 2] [--steps 30] [--modes process,warm] [--concurrency N]
 *   npx tsx bench/sweep_bench.ts --recipe recipes/quickstart.yaml   # the CPU quickstart's 22 runs instead
 *
 * Each mode is one sweep on a fresh worker: `process` starts one Python per run, `warm` forks each run from
 * the warm runtime (launcher/spawn.ts `runtimeMode`); the figures are printed side by side.
 *
 * Prints the sweep's wall time, the sum of the runs' own training times (the runtime's `wall_time_s`,
 * from data and model set-up to the last step and evaluation, as recorded in each result record), the
 * sweep's efficiency Σ training / (wall × slots), and the overhead per run (wall × slots − Σ training) / N:
 * what starting Python and torch, the workflow steps, checkpoint uploads and result records cost a run,
 * and where it goes (bench/lib/phases.ts: in the training activity, and slot time between training activities).
 */
import { createHash, randomBytes } from 'node:crypto';
import { Client, Connection } from '@temporalio/client';
import { startWorker } from '../cli/worker.js';
import { resultKey } from '../store/keys.js';
import { stopForkServer } from '../launcher/spawn.js';
import { concurrencyFor } from '../cli/connect.js';
import { ResultRecord } from '../schemas/result.js';
import { type BenchSize, benchRuns } from './lib/spec.js';
import { planRecipeFile } from '../cli/recipe-io.js';
import { UserError } from '../core/errors.js';
import type { PlannedRun } from '../schemas/runspec.js';
import { type BenchEnv, timedSweep, withBenchServices } from './lib/services.js';
import { type Phases, phasesLine, sweepPhases } from './lib/phases.js';

function arg(name: string, dflt: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : dflt;
}
const RUNS = arg('runs', 12);
const SLOTS = arg('slots', 2);
const STEPS = arg('steps', 30);
/** Runs in flight: by default what `rankflow submit` keeps on the embedded default (two per slot). */
const CONCURRENCY = arg('concurrency', concurrencyFor(SLOTS));
const ri = process.argv.indexOf('--recipe');
/** A recipe's runs instead of the built-in bench runs (`--recipe recipes/quickstart.yaml`: the CPU quickstart). */
const RECIPE = ri >= 0 ? process.argv[ri + 1]! : null;
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
  phases: Phases;
  /** Runs in the sweep. */
  n: number;
}

/**
 * The runs of one mode's sweep: the bench's own, or the recipe's under ids of this mode (a run id names its
 * workflow and its result: the same id in two modes would be a recorded run the second time).
 */
async function runsOf(label: string, base: number): Promise<PlannedRun[]> {
  if (!RECIPE) return benchRuns(RUNS, base, SIZE);
  const plan = await planRecipeFile(RECIPE);
  if (plan.runs.some((r) => r.spec.inputs && Object.keys(r.spec.inputs).length > 0)) {
    throw new UserError(`sweep bench: ${RECIPE} has stages (runs reading other runs); use a recipe without them`);
  }
  const rename = (id: string): string =>
    `run-${createHash('sha256').update(`${id} ${label} ${base}`).digest('hex').slice(0, 32)}`;
  return plan.runs.map((r) => ({ ...r, id: rename(r.id) }));
}

async function sweep(env: BenchEnv, label: string, base: number): Promise<SweepFigures> {
  const runs = await runsOf(label, base);
  const worker = await startWorker(env.config, { slots: { cpu: SLOTS }, shutdownGraceS: 2 });
  const connection = await Connection.connect({ address: env.config.temporalAddress });
  try {
    const sweepId = `sweep-bench-${label}-${randomBytes(4).toString('hex')}`;
    const client = new Client({ connection });
    const { status, wall, startedAt } = await timedSweep(client, env, {
      sweepId,
      runs,
      concurrency: CONCURRENCY,
    });
    const training = new Map<string, number>();
    for (const r of runs) {
      const raw = await env.store.get(resultKey(r.id));
      if (raw) training.set(r.id, ResultRecord.parse(JSON.parse(raw.toString('utf8'))).timings.wall_s);
    }
    const train = [...training.values()].reduce((a, b) => a + b, 0);
    const phases = await sweepPhases(client, training, { wall, slots: SLOTS, startedAt });
    return { wall, train, ok: status.counts.succeeded, phases, n: runs.length };
  } finally {
    await connection.close();
    await worker.shutdown();
  }
}

function report(label: string, f: SweepFigures): void {
  const eff = f.train / (f.wall * SLOTS);
  const over = (f.wall * SLOTS - f.train) / f.n;
  console.log(
    `${label.padEnd(18)} ${f.ok}/${f.n} ok  wall ${f.wall.toFixed(1)} s  Σ training ${f.train.toFixed(1)} s  ` +
      `efficiency ${eff.toFixed(2)}  overhead/run ${over.toFixed(2)} s  mean training/run ${(f.train / f.n).toFixed(2)} s`,
  );
  console.log(`${''.padEnd(18)} overhead/run: ${phasesLine(f.phases)}`);
}

async function main(): Promise<void> {
  process.env.RANKFLOW_WORKER_LOG_LEVEL ??= 'ERROR';
  await withBenchServices('sweep-bench', async (env) => {
    console.log(
      `sweep bench: ${RECIPE ? `the runs of ${RECIPE}` : `${RUNS} real runs (tiny-encoder, LoRA r=4, ${STEPS} steps, CPU)`} ` +
        `on ${SLOTS} slots, ${CONCURRENCY} in flight`,
    );
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
      if (f.ok !== f.n) process.exitCode = 1;
    }
  });
}

await main();
