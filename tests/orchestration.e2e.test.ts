/**
 * Sweeps on the real parts (Temporal dev server, SeaweedFS S3, the Python runtime): results are recorded
 * once, resubmitting runs nothing, an edited axis runs only the new runs, an invalid run fails once
 * without retries while the rest of the sweep continues, runs in flight beyond the worker's slots wait queued
 * (and say so) while no more runs train than there are slots, and a runner killed with SIGKILL resumes from
 * its last checkpoint to the same final metrics as an uninterrupted run.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import type { Client } from '@temporalio/client';
import { Worker } from '@temporalio/worker';
import { startWorker, workflowBundle } from '../cli/worker.js';
import type { RunningWorker } from '../cli/worker.js';
import type { Config } from '../cli/config.js';
import { runProgress, startSweep, sweepStatus, writeManifest } from '../cli/sweeps.js';
import { LiveSource } from '../cli/ui/source.js';
import type { SubmitOptions } from '../cli/sweeps.js';
import { type ResultRecord } from '../schemas/result.js';
import type { SweepStatus } from '../schemas/orchestration.js';
import { listCheckpoints } from '../store/checkpoints.js';
import type { S3Store } from '../store/store.js';
import type { PlannedRun } from '../schemas/runspec.js';
import { testClient, testConfig, testStore, uniqueId } from './helpers/cluster.js';
import { planned, readRecord, tinySpec, trainingSpan, uninterrupted, waitFor } from './helpers/runs.js';

let config: Config;
let store: S3Store;
let client: Client;
let closeClient: () => Promise<void>;
let worker: RunningWorker;

beforeAll(async () => {
  config = testConfig();
  store = testStore(config);
  await store.ensureBucket();
  ({ client, close: closeClient } = await testClient(config));
  worker = await startWorker(config, { slots: { cpu: 2 }, shutdownGraceS: 5 });
});

afterAll(async () => {
  await closeClient?.();
  await worker?.shutdown();
});

async function runSweep(runs: PlannedRun[], extra: Partial<SubmitOptions> = {}): Promise<SweepStatus> {
  const sweepId = uniqueId('sweep-test');
  const opts: SubmitOptions = {
    sweepId,
    recipe: 'test',
    runs,
    concurrency: 2,
    policy: { heartbeat_timeout_s: 20, max_attempts: 4 },
    ...extra,
  };
  await writeManifest(store, config, opts);
  expect(await startSweep(client, config, opts)).toBe(true);
  return (await client.workflow.getHandle(sweepId).result()) as SweepStatus;
}

function pids(pattern: string): number[] {
  try {
    return execFileSync('pgrep', ['-f', pattern]).toString().trim().split('\n').filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

describe('sweeps on real Temporal + S3 + runtime', () => {
  it('records each result once; an invalid run fails once without retries; resubmission runs only new runs', async () => {
    const a = planned(tinySpec({ method: 'lora', rank: 2 }));
    const b = planned(tinySpec({ method: 'vera', rank: 4 }));
    const bad = planned(tinySpec({ method: 'lora', rank: 2, options: { alpha: 'sixteen' } }));
    // A tiny history limit forces continue-as-new while children run: they report to the new run.
    const first = await runSweep([a, bad, b], { maxHistoryEvents: 25, pageSize: 1 });
    expect(first.generation).toBeGreaterThan(0);
    expect(first.counts.succeeded).toBe(2);
    expect(first.counts.failed).toBe(1);
    expect(first.failed[0]!.run_id).toBe(bad.id);

    // The invalid run was tried exactly once (config errors are never retried) and says why.
    const history = await client.workflow.getHandle(bad.id).fetchHistory();
    const trainAttempts = (history.events ?? []).filter(
      (e) => e.activityTaskStartedEventAttributes && e.activityTaskStartedEventAttributes.attempt !== undefined,
    );
    const scheduled = (history.events ?? []).filter(
      (e) => e.activityTaskScheduledEventAttributes?.activityType?.name === 'train',
    );
    expect(scheduled).toHaveLength(1);
    expect(trainAttempts.filter((e) => e.activityTaskStartedEventAttributes!.attempt! > 1)).toHaveLength(0);
    const failure = JSON.parse((await store.get(`failed/${bad.id}.json`))!.toString('utf8')) as ResultRecord;
    expect(failure.status).toBe('failed');
    expect(failure.error!.message).toMatch(/alpha/);
    expect(failure.timings.attempts).toBe(1);
    expect(await readRecord(store, bad.id)).toBeNull();

    const ra = (await readRecord(store, a.id))!;
    const rb = (await readRecord(store, b.id))!;
    for (const [r, p] of [
      [ra, a],
      [rb, b],
    ] as const) {
      expect(r.status).toBe('succeeded');
      expect(r.run_id).toBe(p.id);
      expect(r.spec).toEqual(p.spec);
      expect(r.metrics.accuracy).toBeGreaterThanOrEqual(0);
      expect(r.trainable_params).toBeGreaterThan(0);
      expect(r.curve.length).toBeGreaterThan(0);
      expect(r.versions.torch).toMatch(/^\d+\.\d+/);
    }
    expect(rb.trainable_params!).toBeLessThan(ra.trainable_params!); // VeRA trains fewer parameters than LoRA

    // Determinism: the recorded histories replay against the current workflow code.
    for (const id of [a.id, bad.id]) {
      await Worker.runReplayHistory(
        { workflowBundle: await workflowBundle() },
        await client.workflow.getHandle(id).fetchHistory(),
      );
    }

    // Resubmitting the finished runs plus one new seed runs only the new one; old records are untouched.
    const c = planned({ ...a.spec, seed: a.spec.seed + 1 });
    const second = await runSweep([a, b, c]);
    expect(second.counts.skipped).toBe(2);
    expect(second.counts.succeeded).toBe(1);
    expect((await readRecord(store, a.id))!.timings.finished_at).toBe(ra.timings.finished_at);
    expect(await readRecord(store, c.id)).not.toBeNull();
  }, 400_000);

  it('runs in flight beyond the slots wait queued, say so, and never train more at once than there are slots', async () => {
    const runs = [0, 1, 2, 3].map((seed) => planned(tinySpec({ seed, steps: 1200 })));
    const sweepId = uniqueId('sweep-ahead');
    const opts: SubmitOptions = { sweepId, recipe: 'test', runs, concurrency: 4, policy: { heartbeat_timeout_s: 20 } };
    await writeManifest(store, config, opts);
    expect(await startSweep(client, config, opts)).toBe(true);
    // The worker has 2 slots: with 4 runs in flight, two train and two wait for a slot; `status` and the
    // dashboard's sweep page both tell them apart.
    const ui = new LiveSource(config);
    try {
      const seen = await waitFor(
        'two runs training and two queued',
        async () => {
          const { status } = await sweepStatus(client, sweepId, { queryTimeoutMs: 10_000 });
          const progress = await runProgress(client, status.running);
          const rows = ((await ui.sweep(sweepId))?.runs ?? []).map((r) => r.state);
          const queued = progress.filter((p) => p.queued).length;
          return progress.length === 4 && queued === 2 && rows.includes('queued') ? { progress, rows } : null;
        },
        240_000,
      );
      expect(seen.progress.filter((p) => !p.queued).length).toBe(2);
      expect(seen.rows.filter((x) => x === 'running').length).toBeLessThanOrEqual(2);
    } finally {
      await ui.close();
    }
    const status = (await client.workflow.getHandle(sweepId).result()) as SweepStatus;
    expect(status.counts.succeeded).toBe(4);
    const spans = await Promise.all(runs.map((r) => trainingSpan(client, r.id)));
    expect(spans.every((x) => x.end > x.start)).toBe(true); // NaN (no such event) fails too
    const overlapAt = (t: number): number => spans.filter((x) => x.start <= t && t < x.end).length;
    expect(Math.max(...spans.map((x) => overlapAt(x.start)))).toBe(2);
  }, 400_000);

  it('a runner killed with SIGKILL (as by the OOM killer) is retried alone and resumes to the same metrics', async () => {
    // Long enough that the runner is still training when its first checkpoint is stored (a warm runtime starts
    // in a fraction of a second: 24 steps were over before the kill).
    const spec = tinySpec({ steps: 600, checkpointEvery: 40 });
    const run = planned(spec);
    // Its neighbour on the worker's other slot trains on: the kill is not its failure.
    const neighbour = planned(tinySpec({ steps: 600, checkpointEvery: 40, seed: 7 }));
    const reference = uninterrupted(spec);
    const sweep = runSweep([run, neighbour], { concurrency: 2 });
    // Wait until a checkpoint is fully stored, then kill the runner (its command line holds the run id).
    await waitFor('a stored checkpoint', async () => (await listCheckpoints(store, run.id)).length > 0, 240_000);
    const victims = pids(`rankflow_runtime.*${run.id}|${run.id}.*spec.json`);
    expect(victims.length).toBeGreaterThan(0);
    for (const pid of victims) process.kill(pid, 'SIGKILL');
    const status = await sweep;
    expect(status.counts.succeeded).toBe(2);
    const rec = (await readRecord(store, run.id))!;
    expect(rec.timings.attempts).toBeGreaterThanOrEqual(2);
    expect((await readRecord(store, neighbour.id))!.timings.attempts).toBe(1);
    const ref = await reference;
    expect(rec.metrics).toEqual(ref.metrics);
    // The second attempt resumed: its log says so.
    const log2 = (await store.get(`logs/${run.id}/attempt-2.log`))?.toString('utf8') ?? '';
    expect(log2).toMatch(/resum/i);
  }, 400_000);
});
