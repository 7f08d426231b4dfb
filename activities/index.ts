/**
 * Temporal activities: all of rankflow's I/O during a sweep. `createActivities(deps)` binds them to one
 * worker's artifact store, work folder and device slots. The artifact store lives in `store/`, the runtime
 * launcher and device slots in `launcher/`; this folder holds only the activity bodies.
 */
import { mkdir, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { createHash, randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { ApplicationFailure, CancelledFailure } from '@temporalio/common';
import { Context, getClient } from '@temporalio/activity';
import type { ArtifactStore } from '../store/store.js';
import {
  CheckpointFileError,
  downloadLatestCheckpoint,
  pruneCheckpoints,
  uploadCheckpoint,
} from '../store/checkpoints.js';
import { failureKey, logKey, resultKey, sweepKey } from '../store/keys.js';
import { withRetries } from '../store/retry.js';
import type { SlotPool } from '../launcher/slots.js';
import { spawnRuntime } from '../launcher/spawn.js';
import { EXIT } from '../schemas/events.js';
import type { AllocationEvent, DoneEvent, RunnerEvent } from '../schemas/events.js';
import { ResultRecord, type AllocationRecord } from '../schemas/result.js';
import { RunInput, RunOutcome, SweepManifest, TrainOutput } from '../schemas/orchestration.js';
import type { TrainHeartbeat } from '../schemas/orchestration.js';

export interface ActivityDeps {
  store: ArtifactStore;
  /** Local scratch folder for specs, runner output and downloaded checkpoints. */
  workDir: string;
  slots: SlotPool;
  versions: { rankflow: string; git: string | null };
  /** Seconds between heartbeats while the runner is alive. */
  heartbeatEveryS?: number;
}

/** Subsample a loss curve to at most `max` points, keeping the first and last. */
function thin<T>(points: T[], max: number): T[] {
  if (points.length <= max) return points;
  const out: T[] = [];
  for (let i = 0; i < max; i++) out.push(points[Math.round((i * (points.length - 1)) / (max - 1))]!);
  return out;
}

function primaryMetric(input: RunInput, metrics: Record<string, number>): number | null {
  const m = metrics[input.spec.dataset.metric];
  return m === undefined ? null : m;
}

/**
 * The result record's allocation from the runtime's final `allocation` event; the history is thinned to at
 * most 50 patterns (first and last kept) so the activity result stays small for models with many modules.
 */
function allocationRecord(ev: AllocationEvent): AllocationRecord {
  const { unit, ranks, total, budget, params, history } = ev;
  return { unit, ranks, total, budget, params, history: thin(history ?? [], 50) };
}

export function createActivities(deps: ActivityDeps) {
  const manifests = new Map<string, SweepManifest>();

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
    /** A page of a sweep's runs, each marked done when its result record already exists. */
    async loadSweepPage(
      sweepId: string,
      offset: number,
      limit: number,
    ): Promise<{ input: Omit<RunInput, 'parent' | 'policy'>; done: boolean }[]> {
      const m = await loadManifest(sweepId);
      const page = m.runs.slice(offset, offset + limit);
      return await Promise.all(
        page.map(async (r) => ({
          input: {
            run_id: r.id,
            sweep_id: sweepId,
            recipe: m.recipe,
            spec: r.spec,
            labels: r.labels,
            task_queue: m.queues[r.spec.device] ?? m.queues['cpu'] ?? 'rankflow-cpu',
          },
          done: await deps.store.exists(resultKey(r.id)),
        })),
      );
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
    },

    /** The training activity: spawn the runtime, stream checkpoints to the store, resume on retries. */
    async train(raw: RunInput): Promise<TrainOutput> {
      const input = RunInput.parse(raw);
      const ctx = Context.current();
      const signal = ctx.cancellationSignal; // keep it: calling it inside the listener throws
      const attempt = ctx.info.attempt;
      const slot = await deps.slots.acquire();
      const dir = join(deps.workDir, input.run_id, `attempt-${attempt}-${randomBytes(3).toString('hex')}`);
      const logFile = join(dir, 'runtime.log');
      const warn = (msg: string): void => {
        ctx.log.warn(msg);
        void writeFile(logFile, `[rankflow] ${msg}\n`, { flag: 'a' });
      };
      try {
        await mkdir(dir, { recursive: true });
        const specPath = join(dir, 'spec.json');
        await writeFile(specPath, JSON.stringify({ ...input.spec, run_id: input.run_id }, null, 1));
        const resume = await withRetries(
          () => downloadLatestCheckpoint(deps.store, input.run_id, join(dir, 'resume'), warn),
          {
            what: 'downloading the latest checkpoint',
            signal,
          },
        );
        const args = ['run', '--spec', specPath, '--out', join(dir, 'out')];
        if (resume) args.push('--resume', resume.path);

        const hb: TrainHeartbeat = {
          step: resume?.step ?? 0,
          total_steps: null,
          loss: null,
          checkpoint: null,
          phase: 'loading',
        };
        const curve: { step: number; loss: number }[] = [];
        let done: DoneEvent | null = null;
        let allocation: AllocationRecord | null = null;
        let error: Extract<RunnerEvent, { event: 'error' }> | null = null;
        let started: Extract<RunnerEvent, { event: 'started' }> | null = null;
        let uploads: Promise<void> = Promise.resolve();
        let uploadFailure: Error | null = null;
        const startedAt = new Date().toISOString();

        const proc = spawnRuntime({
          args,
          logFile,
          env: { ...slot.env, RANKFLOW_RUN_ID: input.run_id },
          onEvent: (ev) => {
            switch (ev.event) {
              case 'started':
                started = ev;
                hb.total_steps = ev.total_steps;
                hb.phase = 'training';
                ctx.heartbeat(hb); // step and total from the first seconds, not "?" until the first progress
                break;
              case 'progress':
                hb.step = ev.step;
                hb.loss = ev.loss;
                hb.total_steps = ev.total_steps;
                hb.phase = 'training';
                delete hb.eval_done;
                delete hb.eval_total;
                curve.push({ step: ev.step, loss: ev.loss });
                ctx.heartbeat(hb);
                break;
              case 'eval_progress':
                hb.phase = ev.done < ev.total ? 'evaluating' : 'training';
                hb.eval_done = ev.done;
                hb.eval_total = ev.total;
                ctx.heartbeat(hb);
                break;
              case 'checkpoint':
                uploads = uploads.then(async () => {
                  try {
                    const key = await withRetries(() => uploadCheckpoint(deps.store, input.run_id, ev), {
                      what: `uploading checkpoint step ${ev.step}`,
                      fatal: (e) => e instanceof CheckpointFileError,
                    });
                    hb.checkpoint = key;
                    ctx.heartbeat(hb);
                    await withRetries(() => pruneCheckpoints(deps.store, input.run_id, input.policy.keep_checkpoints), {
                      what: 'pruning checkpoints',
                    });
                  } catch (e) {
                    if (!(e instanceof CheckpointFileError)) uploadFailure = e as Error;
                    warn(`checkpoint step ${ev.step} was not stored: ${(e as Error).message}`);
                  }
                });
                break;
              case 'allocation':
                if (ev.final) allocation = allocationRecord(ev);
                break;
              case 'done':
                done = ev;
                break;
              case 'error':
                error = ev;
                break;
              default:
                break;
            }
          },
        });
        const beat = setInterval(() => ctx.heartbeat(hb), (deps.heartbeatEveryS ?? 2) * 1000);
        const onAbort = (): void => void proc.terminate(input.policy.terminate_grace_s * 1000);
        signal.addEventListener('abort', onAbort, { once: true });
        let exit;
        try {
          exit = await proc.exit;
        } finally {
          clearInterval(beat);
          signal.removeEventListener('abort', onAbort);
        }
        await uploads;
        await withRetries(() => deps.store.putFile(logKey(input.run_id, attempt), logFile), {
          what: 'uploading the runtime log',
        }).catch((e: Error) => ctx.log.warn(`log upload failed: ${e.message}`));

        if (signal.aborted) {
          if (ctx.cancellationDetails?.workerShutdown) {
            // This worker is going away: the runner has checkpointed; another worker resumes the run.
            throw ApplicationFailure.retryable(
              'the worker shut down; the run resumes from its checkpoint',
              'Preempted',
            );
          }
          throw signal.reason instanceof CancelledFailure ? signal.reason : new CancelledFailure('training cancelled');
        }
        if (exit.badLines.length > 0) {
          throw ApplicationFailure.retryable(
            `the runtime printed ${exit.badLines.length} line(s) on stdout that are not valid events, e.g. ${exit.badLines[0]!.slice(0, 200)}`,
            'ProtocolError',
          );
        }
        const errEv = error as Extract<RunnerEvent, { event: 'error' }> | null;
        const describe = errEv
          ? `${errEv.kind} error: ${errEv.message}${errEv.hint ? ` (hint: ${errEv.hint})` : ''}`
          : '';
        if (exit.code === EXIT.config) {
          throw ApplicationFailure.create({
            type: 'ConfigError',
            nonRetryable: true,
            message: describe || `the runtime rejected the run (exit 2); its log: \`rankflow logs ${input.run_id}\``,
            details: [
              { kind: errEv?.kind ?? 'config', message: errEv?.message ?? '', hint: errEv?.hint ?? null, attempt },
            ],
          });
        }
        if (exit.code === EXIT.ok) {
          const d = done as DoneEvent | null;
          if (!d)
            throw ApplicationFailure.retryable('the runtime exited 0 without a `done` event (no metrics)', 'NoMetrics');
          if (uploadFailure)
            warn(`finished, but a checkpoint upload failed earlier: ${(uploadFailure as Error).message}`);
          const s = started as Extract<RunnerEvent, { event: 'started' }> | null;
          return TrainOutput.parse({
            metrics: d.metrics,
            best_metrics: d.best_metrics,
            best_step: d.best_step,
            trainable_params: d.trainable_params,
            total_params: d.total_params,
            wall_time_s: d.wall_time_s,
            curve: thin(curve, 400),
            allocation,
            runtime: s?.runtime ?? null,
            torch: s?.torch ?? null,
            python: s?.python ?? null,
            started_at: startedAt,
            attempt,
            resumed_from: resume?.step ?? null,
            slot: slot.id,
            host: hostname(),
          });
        }
        if (exit.code === EXIT.preempted) {
          throw ApplicationFailure.retryable(
            'the runtime was preempted (SIGTERM); it checkpointed and will resume',
            'Preempted',
          );
        }
        const how = exit.signal ? `was killed by ${exit.signal}` : `exited with code ${exit.code}`;
        // One line: a Python traceback stays in the run's log (`rankflow logs`), never in failure records or tables.
        throw ApplicationFailure.retryable(
          `the runtime ${how}${describe ? `: ${describe}` : ''}; its log: \`rankflow logs ${input.run_id}\``,
          'RunnerFailed',
        );
      } finally {
        deps.slots.release(slot);
        if (!process.env.RANKFLOW_KEEP_WORKDIR) await rm(dir, { recursive: true, force: true }).catch(() => undefined);
      }
    },

    /**
     * Issue 2's smoke check: the runtime trains a two-layer MLP for a few steps and writes a file; the
     * file goes to the store and is read back byte for byte.
     */
    async smoke(): Promise<{ losses: number[]; bytes: number; sha256: string; roundTrip: boolean }> {
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
    },

    /** Writes the result record once per run id; a second attempt returns the recorded outcome. */
    async recordResult(raw: RunInput, out: TrainOutput): Promise<RunOutcome> {
      const input = RunInput.parse(raw);
      const now = new Date();
      const record: ResultRecord = {
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
        curve: out.curve,
        allocation: out.allocation ?? null,
        error: null,
        timings: {
          started_at: out.started_at,
          finished_at: now.toISOString(),
          wall_s: out.wall_time_s,
          attempts: out.attempt,
        },
        versions: { ...deps.versions, runtime: out.runtime, torch: out.torch, python: out.python },
        worker: { host: out.host, slot: out.slot },
      };
      const written = await deps.store.putIfAbsent(
        resultKey(input.run_id),
        JSON.stringify(ResultRecord.parse(record), null, 1),
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
      const record: ResultRecord = {
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
        error: { kind: failure.kind, message: failure.message, hint: failure.hint },
        timings: {
          started_at: failure.started_at,
          finished_at: new Date().toISOString(),
          wall_s: 0,
          attempts: failure.attempts,
        },
        versions: { ...deps.versions, runtime: null, torch: null, python: null },
        worker: { host: hostname(), slot: '' },
      };
      await deps.store.put(failureKey(input.run_id), JSON.stringify(ResultRecord.parse(record), null, 1));
    },
  };
}

export type Activities = ReturnType<typeof createActivities>;
