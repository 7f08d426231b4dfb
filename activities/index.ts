/**
 * Temporal activities: all of rankflow's I/O during a sweep. `createActivities(deps)` binds them to one
 * worker's artifact store, work folder and device slots. The artifact store lives in `store/`, the runtime
 * launcher and device slots in `launcher/`; this folder holds only the activity bodies.
 */
import { mkdir, readFile, readdir, rm } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { createHash, randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { ApplicationFailure } from '@temporalio/common';
import { Context, getClient } from '@temporalio/activity';
import type { ArtifactStore } from '../store/store.js';
import { failureKey, resultKey, sweepKey } from '../store/keys.js';
import type { SlotPool } from '../launcher/slots.js';
import { spawnRuntime } from '../launcher/spawn.js';
import { ResultRecord } from '../schemas/result.js';
import { RunInput, RunOutcome, SweepManifest } from '../schemas/orchestration.js';
import type { TrainOutput } from '../schemas/orchestration.js';
import { train, withoutRetryWhenFull } from './train.js';

export interface ActivityDeps {
  store: ArtifactStore;
  /** Local scratch folder for specs, runner output and downloaded checkpoints. */
  workDir: string;
  slots: SlotPool;
  versions: { rankflow: string; git: string | null };
  /** Seconds between heartbeats while the runner is alive. */
  heartbeatEveryS?: number;
}

function primaryMetric(input: RunInput, metrics: Record<string, number>): number | null {
  const m = metrics[input.spec.dataset.metric];
  return m === undefined ? null : m;
}

type SweepPageEntry = { input: Omit<RunInput, 'parent' | 'policy'>; done: boolean; after?: string[]; needed?: boolean };

/** One run of a sweep page: its input, whether its result exists, the upstream runs it still waits for. */
async function pageEntry(
  deps: ActivityDeps,
  sweepId: string,
  m: SweepManifest,
  needed: boolean,
  r: SweepManifest['runs'][number],
): Promise<SweepPageEntry> {
  const ups = [...new Set(Object.values(r.spec.inputs ?? {}).map((x) => x.run))];
  const pending: string[] = [];
  for (const u of ups) if (!(await deps.store.exists(resultKey(u)))) pending.push(u);
  return {
    input: {
      run_id: r.id,
      sweep_id: sweepId,
      recipe: m.recipe,
      spec: r.spec,
      labels: r.labels,
      task_queue: m.queues[r.spec.device] ?? m.queues['cpu'] ?? 'rankflow-cpu',
    },
    done: await deps.store.exists(resultKey(r.id)),
    ...(pending.length ? { after: pending } : {}),
    ...(needed ? { needed: true } : {}),
  };
}

/** Waits for a run workflow that another sweep started (same run id) and reports its outcome. */
async function awaitRun(deps: ActivityDeps, runId: string): Promise<RunOutcome> {
  const ctx = Context.current();
  const timer = setInterval(() => ctx.heartbeat(), 5000);
  try {
    const outcome = RunOutcome.parse(await getClient().workflow.getHandle(runId).result());
    return { ...outcome, state: outcome.state === 'succeeded' ? 'skipped' : outcome.state };
  } catch (e) {
    const body = await deps.store.get(resultKey(runId));
    if (body) return { run_id: runId, state: 'skipped', metric: null, message: 'result recorded by another sweep' };
    return {
      run_id: runId,
      state: 'failed',
      metric: null,
      message: `run started by another sweep failed: ${(e as Error).message}`,
    };
  } finally {
    clearInterval(timer);
  }
}

/** The failure record of a run that did not succeed (never trained, blocked, or failed for good). */
function failedRecord(
  input: RunInput,
  versions: ActivityDeps['versions'],
  error: NonNullable<ResultRecord['error']>,
  timings: ResultRecord['timings'],
): ResultRecord {
  return {
    schema: 'rankflow.result/v1',
    run_id: input.run_id,
    sweep_id: input.sweep_id,
    recipe: input.recipe,
    status: 'failed',
    spec: input.spec,
    labels: input.labels,
    metrics: {},
    best_metrics: {},
    best_step: null,
    trainable_params: null,
    total_params: null,
    curve: [],
    error,
    timings,
    versions: { ...versions, runtime: null, torch: null, python: null },
    worker: { host: hostname(), slot: '' },
  };
}

/** The result record of a run that trained. */
function succeededRecord(
  input: RunInput,
  out: TrainOutput,
  versions: ActivityDeps['versions'],
  now: Date,
): ResultRecord {
  return {
    schema: 'rankflow.result/v1',
    run_id: input.run_id,
    sweep_id: input.sweep_id,
    recipe: input.recipe,
    status: 'succeeded',
    spec: input.spec,
    labels: input.labels,
    metrics: out.metrics,
    best_metrics: out.best_metrics,
    best_step: out.best_step,
    trainable_params: out.trainable_params,
    total_params: out.total_params,
    ...(out.head_params !== undefined ? { head_params: out.head_params } : {}),
    ...(out.stats ? { stats: out.stats } : {}),
    curve: out.curve,
    ...(out.evals ? { evals: out.evals } : {}),
    ...(out.efficiency ? { efficiency: out.efficiency } : {}),
    allocation: out.allocation ?? null,
    ...(out.rounds ? { rounds: out.rounds } : {}),
    error: null,
    timings: {
      started_at: out.started_at,
      finished_at: now.toISOString(),
      wall_s: out.wall_time_s,
      attempts: out.attempt,
    },
    versions: { ...versions, runtime: out.runtime, torch: out.torch, python: out.python },
    worker: { host: out.host, slot: out.slot },
  };
}

/**
 * Issue 2's smoke check: the runtime trains a two-layer MLP for a few steps and writes a file; the file goes
 * to the store and is read back byte for byte.
 */
async function runSmoke(
  deps: ActivityDeps,
): Promise<{ losses: number[]; bytes: number; sha256: string; roundTrip: boolean }> {
  const dir = join(deps.workDir, `smoke-${randomBytes(4).toString('hex')}`);
  await mkdir(dir, { recursive: true });
  try {
    const losses: number[] = [];
    let done = false;
    const proc = spawnRuntime({
      args: ['smoke', '--out', join(dir, 'out')],
      logFile: join(dir, 'runtime.log'),
      onEvent: (ev) => {
        if (ev.event === 'progress') losses.push(ev.loss);
        if (ev.event === 'done') done = true;
      },
    });
    const exit = await proc.exit;
    if (exit.code !== 0 || !done) {
      const log = existsSync(join(dir, 'runtime.log')) ? await readFile(join(dir, 'runtime.log'), 'utf8') : '';
      throw ApplicationFailure.nonRetryable(
        `smoke runtime exited with ${exit.code ?? exit.signal}, done=${done}\n${log.slice(-2000)}`,
      );
    }
    const files = (await readdir(join(dir, 'out'))).sort();
    if (files.length === 0) throw ApplicationFailure.nonRetryable('the smoke runtime wrote no output file');
    const local = join(dir, 'out', files[0]!);
    const original = await readFile(local);
    const key = `smoke/${randomBytes(6).toString('hex')}/${files[0]}`;
    await deps.store.putFile(key, local);
    const back = await deps.store.get(key);
    await deps.store.delete(key);
    return {
      losses,
      bytes: original.length,
      sha256: createHash('sha256').update(original).digest('hex'),
      roundTrip: back !== null && Buffer.compare(back, original) === 0,
    };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

export function createActivities(deps: ActivityDeps) {
  const manifests = new Map<string, SweepManifest>();
  const readFrom = new Map<string, Set<string>>();

  /** The run ids of a sweep that some run of it reads artifacts from (cached with the manifest). */
  function upstreamIndex(sweepId: string, m: SweepManifest): Set<string> {
    let ids = readFrom.get(sweepId);
    if (!ids) {
      ids = new Set(m.runs.flatMap((r) => Object.values(r.spec.inputs ?? {}).map((x) => x.run)));
      readFrom.set(sweepId, ids);
    }
    return ids;
  }

  async function loadManifest(sweepId: string): Promise<SweepManifest> {
    const cached = manifests.get(sweepId);
    if (cached) return cached;
    const body = await deps.store.get(sweepKey(sweepId));
    if (!body) {
      throw ApplicationFailure.nonRetryable(
        `sweep manifest ${sweepKey(sweepId)} is missing from ${deps.store.description}`,
      );
    }
    const manifest = SweepManifest.parse(JSON.parse(body.toString('utf8')));
    if (manifests.size > 8) manifests.clear();
    manifests.set(sweepId, manifest);
    return manifest;
  }

  return {
    /**
     * A page of a sweep's runs, each marked done when its result record already exists. Stages: `after` lists
     * the runs it reads artifacts from that have no result yet (it waits for them), `needed` says later runs read
     * from this one.
     */
    async loadSweepPage(sweepId: string, offset: number, limit: number): Promise<SweepPageEntry[]> {
      const m = await loadManifest(sweepId);
      const read = upstreamIndex(sweepId, m);
      const page = m.runs.slice(offset, offset + limit);
      return await Promise.all(page.map((r) => pageEntry(deps, sweepId, m, read.has(r.id), r)));
    },

    /** Records a run that did not start because a run it reads from failed (a failure record, kind `blocked`). */
    async recordBlocked(raw: RunInput, upstreamRun: string, message: string): Promise<void> {
      const input = RunInput.parse(raw);
      if (await deps.store.exists(resultKey(input.run_id))) return;
      const now = new Date().toISOString();
      const record = failedRecord(
        input,
        deps.versions,
        { kind: 'blocked', message, hint: `resume the sweep once ${upstreamRun} can succeed` },
        { started_at: now, finished_at: now, wall_s: 0, attempts: 0 },
      );
      await deps.store.put(failureKey(input.run_id), JSON.stringify(ResultRecord.parse(record), null, 1));
    },

    async lookupResult(runId: string): Promise<RunOutcome | null> {
      const body = await deps.store.get(resultKey(runId));
      if (!body) return null;
      const rec = ResultRecord.parse(JSON.parse(body.toString('utf8')));
      return {
        run_id: runId,
        state: 'skipped',
        metric: rec.metrics[rec.spec.dataset.metric] ?? null,
        message: 'result already recorded',
      };
    },

    /** Waits for a run workflow that another sweep started (same run id) and reports its outcome. */
    async awaitExternalRun(runId: string): Promise<RunOutcome> {
      return await awaitRun(deps, runId);
    },

    /** The training activity (`train.ts`): spawn the runtime, stream checkpoints, resume on retries. */
    async train(raw: RunInput): Promise<TrainOutput> {
      return await train(deps, raw);
    },

    /** Issue 2's smoke check (runSmoke). */
    async smoke(): Promise<{ losses: number[]; bytes: number; sha256: string; roundTrip: boolean }> {
      return await runSmoke(deps);
    },

    /** Writes the result record once per run id; a second attempt returns the recorded outcome. */
    async recordResult(raw: RunInput, out: TrainOutput): Promise<RunOutcome> {
      const input = RunInput.parse(raw);
      const now = new Date();
      const record = succeededRecord(input, out, deps.versions, now);
      const written = await withoutRetryWhenFull(deps.store, 'recording the result', () =>
        deps.store.putIfAbsent(resultKey(input.run_id), JSON.stringify(ResultRecord.parse(record), null, 1)),
      );
      await deps.store.delete(failureKey(input.run_id));
      const metric = primaryMetric(input, out.metrics);
      return {
        run_id: input.run_id,
        state: written ? 'succeeded' : 'skipped',
        metric,
        message: written ? null : 'result was already recorded (not overwritten)',
      };
    },

    /** Records the last failure of a run (overwritable; a later success supersedes it). */
    async recordFailure(
      raw: RunInput,
      failure: { kind: string; message: string; hint: string | null; attempts: number; started_at: string },
    ): Promise<void> {
      const input = RunInput.parse(raw);
      if (await deps.store.exists(resultKey(input.run_id))) return;
      const record = failedRecord(
        input,
        deps.versions,
        { kind: failure.kind, message: failure.message, hint: failure.hint },
        {
          started_at: failure.started_at,
          finished_at: new Date().toISOString(),
          wall_s: 0,
          attempts: failure.attempts,
        },
      );
      await withoutRetryWhenFull(deps.store, 'recording the failure', () =>
        deps.store.put(failureKey(input.run_id), JSON.stringify(ResultRecord.parse(record), null, 1)),
      );
    },
  };
}

export type Activities = ReturnType<typeof createActivities>;
