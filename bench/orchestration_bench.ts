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
import { Client, Connection } from '@temporalio/client';
import { startWorker } from '../cli/worker.js';
import { PROJECT_ROOT } from '../core/paths.js';
import { type BenchSize, benchRuns } from './lib/spec.js';
import { timedSweep, withBenchServices } from './lib/services.js';

const runs = Number(process.argv[2] ?? 200);
const concurrency = Number(process.argv[3] ?? 8);

const SIZE: BenchSize = {
  maxLength: 16,
  trainSize: 8,
  evalSize: 8,
  rank: 2,
  steps: 2,
  batchSize: 4,
  evalBatchSize: 4,
  logEvery: 1,
};

async function main(): Promise<void> {
  process.env.RANKFLOW_RUNTIME_MODULE = 'noop_runtime';
  process.env.PYTHONPATH = join(PROJECT_ROOT, 'bench', 'noop');
  process.env.RANKFLOW_WORKER_LOG_LEVEL ??= 'ERROR';
  await withBenchServices('bench', async (env) => {
    const { config } = env;
    const worker = await startWorker(config, { slots: { cpu: concurrency }, shutdownGraceS: 2 });
    const connection = await Connection.connect({ address: config.temporalAddress });
    const client = new Client({ connection });
    const planned = benchRuns(runs, Date.now(), SIZE);
    const sweepId = `sweep-bench-${env.suffix}`;
    const { status, wall } = await timedSweep(client, env, { sweepId, runs: planned, concurrency });
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
  });
}

await main();
