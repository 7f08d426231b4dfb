/**
 * The training activity: download the newest good checkpoint, spawn the runtime, stream its checkpoints to
 * the store, report the outcome. Read top to bottom:
 *
 * - It heartbeats from its first line until it returns (downloads, uploads and their retries included), so a
 *   slow or unreachable store never looks like a lost worker (which would train a finished run again).
 * - A stored checkpoint that is unreadable or not this run's is skipped; one the runtime refuses (damaged,
 *   another run's: a `checkpoint` error before training starts) is marked refused and the next older one is
 *   tried, down to a fresh start. Each is one line in the run's log.
 * - A full store or disk fails the run at once with a message that says so (never 20 retries of a write that
 *   cannot succeed); the attempt's folder is removed on every exit path.
 */
import { appendFileSync } from 'node:fs';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { ApplicationFailure, CancelledFailure } from '@temporalio/common';
import { Context } from '@temporalio/activity';
import { isStoreFull, type ArtifactStore } from '../store/store.js';
import {
  CheckpointFileError,
  downloadLatestCheckpoint,
  pruneCheckpoints,
  refuseCheckpoint,
  uploadCheckpoint,
} from '../store/checkpoints.js';
import { generationsKey, logKey } from '../store/keys.js';
import { ArtifactError, downloadArtifact, uploadArtifact } from '../store/artifacts.js';
import { withRetries } from '../store/retry.js';
import type { Slot, SlotPool } from '../launcher/slots.js';
import { spawnRuntime } from '../launcher/spawn.js';
import { EXIT, type ArtifactEvent, type CheckpointEvent } from '../schemas/events.js';
import { exitVerdict, newAttempt, NO_SPACE, reduceEvent, thin, type Attempt } from './train-events.js';
import { RunInput, TrainOutput } from '../schemas/orchestration.js';
import type { TrainHeartbeat } from '../schemas/orchestration.js';

export interface TrainDeps {
  store: ArtifactStore;
  /** Local scratch folder for specs, runner output and downloaded checkpoints. */
  workDir: string;
  slots: SlotPool;
  /** Seconds between heartbeats (default 2). */
  heartbeatEveryS?: number;
}

/** One attempt's folder, log and heartbeat. */
interface Scope {
  input: RunInput;
  ctx: Context;
  attempt: number;
  dir: string;
  logFile: string;
  hb: TrainHeartbeat;
  slot: Slot;
  /** One line into the run's log (stored with the attempt). */
  note(msg: string): void;
}

/** No space left (the store refused a write, or the worker's disk is full): retrying cannot help until someone
 * frees space, so the run fails now, saying where. */
function noSpaceFailure(
  deps: { store: ArtifactStore; workDir?: string },
  what: string,
  e: unknown,
  attempt: number | null,
): ApplicationFailure {
  const why = String((e as Error)?.message ?? e)
    .split('\n')[0]!
    .slice(0, 300);
  const where = deps.workDir ? ` or on the worker's disk (${deps.workDir})` : '';
  return ApplicationFailure.create({
    type: 'NoSpace',
    nonRetryable: true,
    message:
      `no space left ${what} (${why}): free space on the artifact store (${deps.store.description})${where}, ` +
      'then `rankflow resume` the sweep',
    details: [{ kind: 'no_space', message: why, hint: 'free space, then rankflow resume', attempt }],
  });
}

/** Runs a store write of a light activity; a full store fails it at once (not 20 retries), saying so. */
export async function withoutRetryWhenFull<T>(store: ArtifactStore, what: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (e) {
    if (isNoSpace(e)) {
      throw noSpaceFailure({ store }, what, e, null);
    }
    throw e;
  }
}

/** True for any error that means "no space left", from the store, the local disk or the runtime. */
function isNoSpace(e: unknown): boolean {
  return isStoreFull(e) || NO_SPACE.test(String((e as Error)?.message ?? ''));
}

/** The checkpoint upload chain of one runtime process: uploads in order, then prunes old checkpoints. */
function uploader(
  deps: TrainDeps,
  scope: Scope,
  attempt: { uploadFailure: Error | null; artifactFailure: Error | null },
  onFull: (e: Error) => void,
) {
  let chain: Promise<void> = Promise.resolve();
  const { input } = scope;
  const upload = async (ev: CheckpointEvent): Promise<void> => {
    try {
      const key = await withRetries(() => uploadCheckpoint(deps.store, input.run_id, ev), {
        what: `uploading checkpoint step ${ev.step}`,
        fatal: (e) => e instanceof CheckpointFileError || isNoSpace(e),
      });
      scope.hb.checkpoint = key;
      scope.ctx.heartbeat(scope.hb);
      await withRetries(() => pruneCheckpoints(deps.store, input.run_id, input.policy.keep_checkpoints), {
        what: 'pruning checkpoints',
        fatal: isNoSpace,
      });
    } catch (e) {
      if (isNoSpace(e)) onFull(e as Error);
      // withRetries wraps the error: a superseded checkpoint's files (CheckpointFileError) are no failure
      else if (!(e instanceof CheckpointFileError || (e as Error).cause instanceof CheckpointFileError))
        attempt.uploadFailure ??= e as Error;
      scope.note(`checkpoint step ${ev.step} was not stored: ${(e as Error).message}`);
    }
  };
  const uploadArt = async (ev: ArtifactEvent): Promise<void> => {
    try {
      await withRetries(() => uploadArtifact(deps.store, input.run_id, ev), {
        what: `uploading artifact ${ev.name}`,
        fatal: (e) => e instanceof CheckpointFileError || isNoSpace(e),
      });
    } catch (e) {
      if (isNoSpace(e)) onFull(e as Error);
      else attempt.artifactFailure ??= e as Error;
      scope.note(`artifact ${ev.name} was not stored: ${(e as Error).message}`);
    }
  };
  return {
    add: (ev: CheckpointEvent) => void (chain = chain.then(() => upload(ev))),
    addArtifact: (ev: ArtifactEvent) => void (chain = chain.then(() => uploadArt(ev))),
    settled: () => chain,
  };
}

/** Runs the runtime once (resuming from `resume` if given) until it exits; terminates it on cancellation. */
async function runRuntimeOnce(deps: TrainDeps, scope: Scope, args: string[]): Promise<Attempt> {
  const { ctx, hb, input } = scope;
  const a = newAttempt();
  let terminate = (): void => undefined;
  let generations: Promise<void> = Promise.resolve();
  const uploads = uploader(deps, scope, a, (e) => {
    a.noSpace ??= e;
    terminate(); // nothing more can be stored: stop now, with the reason
  });
  const proc = spawnRuntime({
    args,
    logFile: scope.logFile,
    env: { ...scope.slot.env, RANKFLOW_RUN_ID: input.run_id },
    onEvent: (ev) => {
      const effect = reduceEvent(a, hb, ev);
      if (effect.kind === 'heartbeat') ctx.heartbeat(hb);
      else if (effect.kind === 'checkpoint') uploads.add(effect.event);
      else if (effect.kind === 'artifact') uploads.addArtifact(effect.event);
      else if (effect.kind === 'generations') {
        const key = generationsKey(input.run_id, effect.step);
        generations = generations.then(() =>
          withRetries(() => deps.store.putFile(key, effect.path), {
            what: `uploading the generations of step ${effect.step}`,
          }).catch((e: Error) => ctx.log.warn(`generations of step ${effect.step} were not stored: ${e.message}`)),
        );
      }
    },
  });
  terminate = () => void proc.terminate(input.policy.terminate_grace_s * 1000);
  const signal = ctx.cancellationSignal;
  signal.addEventListener('abort', terminate, { once: true });
  try {
    a.exit = await proc.exit;
  } finally {
    signal.removeEventListener('abort', terminate);
  }
  await uploads.settled();
  await generations;
  return a;
}

/** True when the runtime refused the `--resume` checkpoint before training (the caller tries an older one). */
function refusedCheckpoint(a: Attempt): boolean {
  return a.exit.code === EXIT.config && a.error?.kind === 'checkpoint' && a.started === null;
}

/**
 * Newest good checkpoint → runtime; a refused checkpoint is marked and the next older one tried (finally a
 * fresh start). Returns the last runtime attempt and the step it resumed from.
 */
async function trainWithFallback(
  deps: TrainDeps,
  scope: Scope,
  specPath: string,
): Promise<{ run: Attempt; resumedFrom: number | null }> {
  const { input, ctx } = scope;
  const refused = new Set<number>();
  for (;;) {
    const resume = await withRetries(
      () => downloadLatestCheckpoint(deps.store, input.run_id, join(scope.dir, 'resume'), scope.note, refused),
      { what: 'downloading the latest checkpoint', signal: ctx.cancellationSignal, fatal: isNoSpace },
    );
    if (ctx.cancellationSignal.aborted) throw cancelled(ctx);
    scope.hb.step = resume?.step ?? 0;
    const args = ['run', '--spec', specPath, '--out', join(scope.dir, 'out'), ...(await inputArgs(deps, scope))];
    if (resume) args.push('--resume', resume.path);
    const run = await runRuntimeOnce(deps, scope, args);
    if (!resume || !refusedCheckpoint(run)) return { run, resumedFrom: resume?.step ?? null };
    const why = run.error!.message;
    scope.note(`the runtime refused checkpoint step ${resume.step} (${why}); trying an older one`);
    refused.add(resume.step);
    await rm(resume.path, { recursive: true, force: true });
    await withRetries(() => refuseCheckpoint(deps.store, input.run_id, resume.step, why), {
      what: 'marking a refused checkpoint',
      fatal: isNoSpace,
    }).catch((e: Error) => scope.note(`could not mark checkpoint step ${resume.step} refused: ${e.message}`));
  }
}

/**
 * Stages: each input artifact of the spec (`inputs`), downloaded into the attempt's folder with every file
 * checked against its stored sha256, as `--input NAME=DIR` flags. A missing or damaged artifact fails the run
 * once (a `data` error, never retried): the runtime never sees it.
 */
async function inputArgs(deps: TrainDeps, scope: Scope): Promise<string[]> {
  const args: string[] = [];
  for (const [name, ref] of Object.entries(scope.input.spec.inputs ?? {})) {
    const dir = join(scope.dir, 'inputs', name);
    try {
      await withRetries(() => downloadArtifact(deps.store, ref.run, ref.artifact, dir), {
        what: `downloading artifact ${ref.artifact} of ${ref.run}`,
        signal: scope.ctx.cancellationSignal,
        fatal: (e) => e instanceof ArtifactError || isNoSpace(e),
      });
    } catch (e) {
      const cause = e instanceof ArtifactError ? e : (e as Error).cause;
      if (!(cause instanceof ArtifactError)) throw e;
      throw ApplicationFailure.create({
        type: 'ConfigError',
        nonRetryable: true,
        message: `data error: ${cause.message}`,
        details: [{ kind: 'data', message: cause.message, hint: null, attempt: scope.attempt }],
      });
    }
    args.push('--input', `${name}=${dir}`);
  }
  return args;
}

function cancelled(ctx: Context): Error {
  if (ctx.cancellationDetails?.workerShutdown) {
    // This worker is going away: the runner has checkpointed; another worker resumes the run.
    return ApplicationFailure.retryable('the worker shut down; the run resumes from its checkpoint', 'Preempted');
  }
  const reason: unknown = ctx.cancellationSignal.reason;
  return reason instanceof CancelledFailure ? reason : new CancelledFailure('training cancelled');
}

/** The activity's result, or the failure that says what happened. */
async function outcome(
  deps: TrainDeps,
  scope: Scope,
  run: Attempt,
  resumedFrom: number | null,
  startedAt: string,
): Promise<TrainOutput> {
  const { ctx, attempt } = scope;
  if (run.noSpace) throw noSpaceFailure(deps, 'storing a checkpoint', run.noSpace, attempt);
  if (ctx.cancellationSignal.aborted) throw cancelled(ctx);
  const v = exitVerdict(run, scope.input.run_id, attempt);
  if (v.kind === 'ok') return finished(scope, run, resumedFrom, startedAt);
  if (v.kind === 'no-space') throw noSpaceFailure(deps, 'in the runtime', v.message, attempt);
  throw v.failure;
}

function finished(scope: Scope, run: Attempt, resumedFrom: number | null, startedAt: string): TrainOutput {
  const d = run.done;
  if (!d) throw ApplicationFailure.retryable('the runtime exited 0 without a `done` event (no metrics)', 'NoMetrics');
  if (run.uploadFailure) scope.note(`finished, but a checkpoint upload failed earlier: ${run.uploadFailure.message}`);
  if (run.artifactFailure) {
    // Later stages read it: retry the run (it resumes from its final checkpoint and writes it again).
    throw ApplicationFailure.retryable(
      `an output artifact was not stored: ${run.artifactFailure.message}`,
      'ArtifactUpload',
    );
  }
  const s = run.started;
  return TrainOutput.parse({
    metrics: d.metrics,
    best_metrics: d.best_metrics,
    best_step: d.best_step,
    trainable_params: d.trainable_params,
    total_params: d.total_params,
    ...(d.head_params !== undefined ? { head_params: d.head_params } : {}),
    wall_time_s: d.wall_time_s,
    ...(d.stats ? { stats: d.stats } : {}),
    curve: thin(run.curve, 400),
    ...(d.evals ? { evals: d.evals } : {}),
    ...(d.efficiency ? { efficiency: d.efficiency } : {}),
    allocation: run.allocation,
    ...(run.rounds.length > 0 ? { rounds: run.rounds } : {}),
    runtime: s?.runtime ?? null,
    torch: s?.torch ?? null,
    python: s?.python ?? null,
    started_at: startedAt,
    attempt: scope.attempt,
    resumed_from: resumedFrom,
    slot: scope.slot.id,
    host: hostname(),
  });
}

/** The training activity (see the module comment). */
export async function train(deps: TrainDeps, raw: RunInput): Promise<TrainOutput> {
  const input = RunInput.parse(raw);
  const ctx = Context.current();
  const attempt = ctx.info.attempt;
  const hb: TrainHeartbeat = { step: 0, total_steps: null, loss: null, checkpoint: null, phase: 'loading' };
  const beat = setInterval(() => ctx.heartbeat(hb), (deps.heartbeatEveryS ?? 2) * 1000);
  ctx.heartbeat(hb);
  const dir = join(deps.workDir, input.run_id, `attempt-${attempt}-${randomBytes(3).toString('hex')}`);
  const logFile = join(dir, 'runtime.log');
  const slot = await deps.slots.acquire();
  const noted = new Set<string>();
  const note = (msg: string): void => {
    if (noted.has(msg)) return; // the same skipped checkpoint is seen again after each refusal
    noted.add(msg);
    try {
      appendFileSync(logFile, `[rankflow] ${msg}\n`);
    } catch {
      /* the folder is gone: nothing to write into */
    }
  };
  const scope: Scope = { input, ctx, attempt, dir, logFile, hb, slot, note };
  const startedAt = new Date().toISOString();
  try {
    await mkdir(dir, { recursive: true });
    const specPath = join(dir, 'spec.json');
    await writeFile(specPath, JSON.stringify({ ...input.spec, run_id: input.run_id }, null, 1));
    const { run, resumedFrom } = await trainWithFallback(deps, scope, specPath);
    await withRetries(() => deps.store.putFile(logKey(input.run_id, attempt), logFile), {
      what: 'uploading the runtime log',
      fatal: isNoSpace,
    }).catch((e: Error) => ctx.log.debug(`log upload failed: ${e.message}`));
    return await outcome(deps, scope, run, resumedFrom, startedAt);
  } catch (e) {
    if (!(e instanceof ApplicationFailure) && !(e instanceof CancelledFailure) && isNoSpace(e)) {
      throw noSpaceFailure(deps, 'preparing the run', e, attempt);
    }
    throw e;
  } finally {
    clearInterval(beat);
    deps.slots.release(slot);
    if (!process.env.RANKFLOW_KEEP_WORKDIR) await rm(dir, { recursive: true, force: true }).catch(() => undefined);
  }
}
