/**
 * The pure parts of the training activity, each unit-tested (tests/train-activity.test.ts):
 *
 * - `reduceEvent`: one runner event into the attempt's state and the heartbeat, returning the side effect it
 *   asks for (a heartbeat, a checkpoint upload, a generations upload); the activity performs the effects.
 * - `exitVerdict`: how the runtime's exit (code, signal, stray stdout, its `error` event) maps to the
 *   activity's outcome: success, a failure that is retried, one that is not (a config error), or no space.
 */
import { ApplicationFailure } from '@temporalio/common';
import type { RunnerExit } from '../launcher/spawn.js';
import { EXIT } from '../schemas/events.js';
import type { AllocationEvent, ArtifactEvent, CheckpointEvent, DoneEvent, RunnerEvent } from '../schemas/events.js';
import type { AllocationRecord, RoundPoint } from '../schemas/result.js';
import type { TrainHeartbeat } from '../schemas/orchestration.js';

type ErrorEv = Extract<RunnerEvent, { event: 'error' }>;
type StartedEv = Extract<RunnerEvent, { event: 'started' }>;

/** What one runtime process did. */
export interface Attempt {
  exit: RunnerExit;
  started: StartedEv | null;
  done: DoneEvent | null;
  error: ErrorEv | null;
  curve: { step: number; loss: number }[];
  /** The first checkpoint upload that failed (the run goes on; a later checkpoint may be stored). */
  uploadFailure: Error | null;
  /** An output artifact (stages) that could not be stored: later stages need it, so the run is retried. */
  artifactFailure: Error | null;
  /** A write the store refused for want of space: the attempt stops at once. */
  noSpace: Error | null;
  /** From the final `allocation` event (methods that move rank during training). */
  allocation: AllocationRecord | null;
  /** Federated runs: one point per `round` event (a resumed runtime first replays its checkpoint's rounds). */
  rounds: RoundPoint[];
}

export function newAttempt(): Attempt {
  return {
    exit: { code: null, signal: null, badLines: [] },
    started: null,
    done: null,
    error: null,
    curve: [],
    uploadFailure: null,
    artifactFailure: null,
    noSpace: null,
    allocation: null,
    rounds: [],
  };
}

/** Subsample a loss curve to at most `max` points, keeping the first and last. */
export function thin<T>(points: T[], max: number): T[] {
  if (points.length <= max) return points;
  const out: T[] = [];
  for (let i = 0; i < max; i++) out.push(points[Math.round((i * (points.length - 1)) / (max - 1))]!);
  return out;
}

/** The result record's point of a `round` event (without the client ids). */
function roundPoint(ev: Extract<RunnerEvent, { event: 'round' }>): RoundPoint {
  return {
    round: ev.round,
    step: ev.step,
    client_loss: ev.client_loss,
    metrics: ev.metrics,
    aggregation: ev.aggregation,
  };
}

/**
 * The result record's allocation from the runtime's final `allocation` event; the history is thinned to at
 * most 50 patterns (first and last kept) so the activity result stays small for models with many modules.
 */
function allocationRecord(ev: AllocationEvent): AllocationRecord {
  const { unit, ranks, total, budget, params, history } = ev;
  return { unit, ranks, total, budget, params, history: thin(history ?? [], 50) };
}

/** The side effect an event asks the activity for. */
export type Effect =
  | { kind: 'none' }
  | { kind: 'heartbeat' }
  | { kind: 'checkpoint'; event: CheckpointEvent }
  | { kind: 'artifact'; event: ArtifactEvent }
  | { kind: 'generations'; step: number; path: string };

const NONE: Effect = { kind: 'none' };
const BEAT: Effect = { kind: 'heartbeat' };

/** Folds one runner event into the attempt and the heartbeat (mutated in place); returns its side effect. */
export function reduceEvent(a: Attempt, hb: TrainHeartbeat, ev: RunnerEvent): Effect {
  switch (ev.event) {
    case 'started':
      a.started = ev;
      hb.total_steps = ev.total_steps;
      hb.phase = 'training';
      return BEAT; // step and total from the first seconds, not "?" until the first progress
    case 'progress':
      hb.step = ev.step;
      hb.loss = ev.loss;
      hb.total_steps = ev.total_steps;
      hb.phase = 'training';
      delete hb.eval_done;
      delete hb.eval_total;
      a.curve.push({ step: ev.step, loss: ev.loss });
      return BEAT;
    case 'eval_progress':
      hb.phase = ev.done < ev.total ? 'evaluating' : 'training';
      hb.eval_done = ev.done;
      hb.eval_total = ev.total;
      return BEAT;
    case 'eval':
      hb.eval = { step: ev.step, metrics: ev.metrics }; // the dashboard's live evaluation curve
      // a generative evaluation's per-example outputs go beside the run's result, to check the metric
      return ev.generations ? { kind: 'generations', step: ev.step, path: ev.generations.path } : BEAT;
    case 'checkpoint':
      return { kind: 'checkpoint', event: ev };
    case 'artifact':
      return { kind: 'artifact', event: ev };
    case 'allocation':
      if (ev.final) a.allocation = allocationRecord(ev);
      return NONE;
    case 'round':
      a.rounds.push(roundPoint(ev));
      return NONE;
    case 'done':
      a.done = ev;
      return NONE;
    case 'error':
      a.error = ev;
      return NONE;
    default:
      return NONE;
  }
}

export const NO_SPACE = /no space left on device|disk quota exceeded|errno 28\b|storagefull/i;

/** How the runtime's exit maps to the activity's outcome. */
export type ExitVerdict =
  { kind: 'ok' } | { kind: 'no-space'; message: string } | { kind: 'failure'; failure: ApplicationFailure };

/**
 * The exit-code → failure map. Stray stdout is a retryable protocol error; exit 2 (a config, data, NaN or
 * checkpoint error) is a non-retryable ConfigError with the runtime's kind, message and hint; 0 is success;
 * 4 (SIGTERM, checkpointed) is a retryable Preempted; a "no space" error is its own outcome; anything else
 * (exit 3, a signal, a crash) is a retryable RunnerFailed. Messages are one line: a Python traceback stays in
 * the run's log (`rankflow logs`), never in failure records or tables.
 */
export function exitVerdict(a: Pick<Attempt, 'exit' | 'error'>, runId: string, attempt: number): ExitVerdict {
  const { exit, error: e } = a;
  if (exit.badLines.length > 0) {
    const failure = ApplicationFailure.retryable(
      `the runtime printed ${exit.badLines.length} line(s) on stdout that are not valid events, e.g. ${exit.badLines[0]!.slice(0, 200)}`,
      'ProtocolError',
    );
    return { kind: 'failure', failure };
  }
  const describe = e ? `${e.kind} error: ${e.message}${e.hint ? ` (hint: ${e.hint})` : ''}` : '';
  const logs = `its log: \`rankflow logs ${runId}\``;
  if (exit.code === EXIT.config) {
    const failure = ApplicationFailure.create({
      type: 'ConfigError',
      nonRetryable: true,
      message: describe || `the runtime rejected the run (exit 2); ${logs}`,
      details: [{ kind: e?.kind ?? 'config', message: e?.message ?? '', hint: e?.hint ?? null, attempt }],
    });
    return { kind: 'failure', failure };
  }
  if (exit.code === EXIT.ok) return { kind: 'ok' };
  if (exit.code === EXIT.preempted) {
    const failure = ApplicationFailure.retryable(
      'the runtime was preempted (SIGTERM); it checkpointed and will resume',
      'Preempted',
    );
    return { kind: 'failure', failure };
  }
  if (e && NO_SPACE.test(e.message)) return { kind: 'no-space', message: e.message };
  const how = exit.signal ? `was killed by ${exit.signal}` : `exited with code ${exit.code}`;
  const failure = ApplicationFailure.retryable(
    `the runtime ${how}${describe ? `: ${describe}` : ''}; ${logs}`,
    'RunnerFailed',
  );
  return { kind: 'failure', failure };
}
