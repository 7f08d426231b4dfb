/**
 * rankflow's Temporal workflows (deterministic code only: no I/O, clock or randomness of their own).
 *
 * - `runWorkflow` (id `run-<hash>`): skip if the result exists, train (retries resume from the latest
 *   checkpoint; config errors are never retried), record the result once, tell the sweep.
 * - `sweepWorkflow`: a sliding window of run workflows with a concurrency limit; pages through the sweep
 *   manifest; `status` query; `pause`/`resume`/`cancel` signals; continue-as-new keeps the history small.
 *   Stages: a run that reads another run's artifacts waits (outside the window) until that run succeeded, and
 *   is recorded as `blocked` when it failed; `rankflow resume` re-runs the failed one, then it.
 *   Children are abandoned-on-close and report back by signal, so they survive the parent rolling over.
 */
import {
  ActivityFailure,
  ApplicationFailure,
  CancellationScope,
  ChildWorkflowCancellationType,
  ParentClosePolicy,
  WorkflowIdReusePolicy,
  condition,
  continueAsNew,
  defineQuery,
  defineSignal,
  getExternalWorkflowHandle,
  isCancellation,
  proxyActivities,
  setHandler,
  startChild,
  workflowInfo,
  ActivityCancellationType,
} from '@temporalio/workflow';
import { WorkflowExecutionAlreadyStartedError } from '@temporalio/common';
import type { Activities } from '../activities/index.js';
import type { RunInput, RunOutcome, RunState, SweepInput, SweepStatus } from '../schemas/orchestration.js';

export const runFinished = defineSignal<[RunOutcome]>('runFinished');
export const pauseSignal = defineSignal('pause');
export const resumeSignal = defineSignal('resume');
export const cancelSignal = defineSignal('cancel');
export const statusQuery = defineQuery<SweepStatus>('status');

// Light activities and child workflows run on the workflow's own (control) task queue.
const light = proxyActivities<Activities>({
  startToCloseTimeout: '5 minutes',
  heartbeatTimeout: '1 minute',
  retry: { initialInterval: '1 second', backoffCoefficient: 2, maximumInterval: '30 seconds', maximumAttempts: 20 },
});

async function tellParent(input: RunInput, outcome: RunOutcome): Promise<void> {
  if (!input.parent) return;
  try {
    await getExternalWorkflowHandle(input.parent).signal(runFinished, outcome);
  } catch {
    // The sweep has already ended (cancelled or finished): nobody to tell.
  }
}

function failureInfo(err: unknown): { type: string; message: string; hint: string | null; attempt: number | null } {
  let cur: unknown = err;
  while (cur instanceof ActivityFailure && cur.cause) cur = cur.cause;
  if (cur instanceof ApplicationFailure) {
    const d = (cur.details?.[0] ?? null) as { kind?: string; hint?: string | null; attempt?: number } | null;
    return {
      type: d?.kind ?? cur.type ?? 'error',
      message: cur.message,
      hint: d?.hint ?? null,
      attempt: d?.attempt ?? null,
    };
  }
  return { type: 'error', message: err instanceof Error ? err.message : String(err), hint: null, attempt: null };
}

export async function runWorkflow(input: RunInput): Promise<RunOutcome> {
  // Whatever happens below (success, failure, cancellation at any await), the sweep hears about it once.
  const cancelledOutcome: RunOutcome = { run_id: input.run_id, state: 'cancelled', metric: null, message: 'cancelled' };
  try {
    const outcome = await runOnce(input);
    await CancellationScope.nonCancellable(() => tellParent(input, outcome));
    return outcome;
  } catch (err) {
    if (isCancellation(err)) {
      await CancellationScope.nonCancellable(() => tellParent(input, cancelledOutcome));
      throw err;
    }
    const f = failureInfo(err);
    await CancellationScope.nonCancellable(() =>
      tellParent(input, { run_id: input.run_id, state: 'failed', metric: null, message: f.message }),
    );
    // Fail the workflow so that its id may be used again (`rankflow resume`).
    throw ApplicationFailure.create({ type: f.type, message: f.message, nonRetryable: true });
  }
}

/**
 * Records a run's failure, then rethrows it. The run's own failure is what the user must read: when its record
 * cannot be written either (a full store), that is said after it, not instead of it.
 */
async function recordFailureOf(input: RunInput, err: unknown, startedAt: string): Promise<never> {
  const f = failureInfo(err);
  const unrecorded = await CancellationScope.nonCancellable(() =>
    light
      .recordFailure(input, {
        kind: f.type,
        message: f.message,
        hint: f.hint,
        attempts: f.attempt ?? input.policy.max_attempts,
        started_at: startedAt,
      })
      .then(
        () => null,
        (e: unknown) => e,
      ),
  );
  if (unrecorded !== null && !isCancellation(unrecorded)) {
    throw ApplicationFailure.create({
      type: f.type,
      message: `${f.message} (its failure record was not written either: ${failureInfo(unrecorded).message})`,
      nonRetryable: true,
      details: [{ kind: f.type, hint: f.hint, attempt: f.attempt }],
    });
  }
  throw err;
}

async function runOnce(input: RunInput): Promise<RunOutcome> {
  const existing = await light.lookupResult(input.run_id);
  if (existing) return existing;
  const trainer = proxyActivities<Activities>({
    taskQueue: input.task_queue,
    startToCloseTimeout: `${input.policy.run_timeout_s} seconds`,
    heartbeatTimeout: `${input.policy.heartbeat_timeout_s} seconds`,
    cancellationType: ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
    retry: {
      initialInterval: '2 seconds',
      backoffCoefficient: 2,
      maximumInterval: '1 minute',
      maximumAttempts: input.policy.max_attempts,
      nonRetryableErrorTypes: ['ConfigError'],
    },
  });
  const startedAt = new Date().toISOString();
  let out;
  try {
    out = await trainer.train(input);
  } catch (err) {
    if (isCancellation(err)) throw err;
    return await recordFailureOf(input, err, startedAt);
  }
  // Training finished: record it even if a cancellation arrives now (the work is done and paid for).
  return await CancellationScope.nonCancellable(() => light.recordResult(input, out));
}

function emptyCounts(): Record<RunState, number> {
  return { pending: 0, running: 0, succeeded: 0, failed: 0, skipped: 0, cancelled: 0, blocked: 0 };
}

type Entry = Awaited<ReturnType<Activities['loadSweepPage']>>[number];
type UpstreamState = 'running' | 'succeeded' | 'failed';

/**
 * Stages: which waiting runs may start. A run waits until every run it reads from (`entry.after`) has
 * succeeded; when one failed (or was itself blocked) the run is blocked. `upstream` holds the outcomes of the
 * runs that others read from (`entry.needed`); runs nobody reads from are not tracked.
 */
export function readiness(after: readonly string[], upstream: Record<string, UpstreamState>) {
  const failedDep = after.find((id) => upstream[id] === 'failed');
  if (failedDep) return { state: 'blocked' as const, dep: failedDep };
  return { state: after.every((id) => upstream[id] === 'succeeded') ? ('ready' as const) : ('waiting' as const) };
}

export async function sweepWorkflow(input: SweepInput): Promise<SweepStatus> {
  const info = workflowInfo();
  const st = input.state ?? { next_index: 0, running: [], outcomes: {}, failed: [], paused: false, generation: 0 };
  const running = new Set(st.running);
  const outcomes: Record<string, number> = { ...st.outcomes };
  const failed = [...st.failed];
  let paused = st.paused;
  let cancelled = false;
  let nextIndex = st.next_index;
  let externalWaits = 0;
  let buffer: Entry[] = [];
  // Stages: outcomes of runs that later runs read from, and the runs waiting for them (by manifest index).
  const upstream: Record<string, UpstreamState> = { ...(st.upstream ?? {}) };
  const needed = new Set<string>(Object.keys(upstream));
  const waiting = new Map<number, Entry | null>((st.waiting ?? []).map((i) => [i, null]));

  const finish = (o: RunOutcome): void => {
    if (!running.delete(o.run_id)) return; // duplicate or unknown notification
    outcomes[o.state] = (outcomes[o.state] ?? 0) + 1;
    if (o.state === 'failed') failed.push(o);
    if (needed.has(o.run_id))
      upstream[o.run_id] = o.state === 'succeeded' || o.state === 'skipped' ? 'succeeded' : 'failed';
  };
  const status = (): SweepStatus => {
    const counts = emptyCounts();
    for (const [k, v] of Object.entries(outcomes)) counts[k as RunState] = v;
    counts.running = running.size;
    counts.pending = input.total - nextIndex + waiting.size;
    return {
      sweep_id: input.sweep_id,
      total: input.total,
      counts,
      running: [...running],
      failed: failed.slice(-50),
      paused,
      cancelled,
      generation: st.generation,
    };
  };
  setHandler(runFinished, finish);
  setHandler(pauseSignal, () => void (paused = true));
  setHandler(resumeSignal, () => void (paused = false));
  setHandler(cancelSignal, () => void (cancelled = true));
  setHandler(statusQuery, status);

  const launch = async (entry: Entry): Promise<void> => {
    const runInput: RunInput = { ...entry.input, parent: info.workflowId, policy: input.policy };
    running.add(runInput.run_id);
    try {
      const child = await startChild(runWorkflow, {
        workflowId: runInput.run_id,
        args: [runInput],
        parentClosePolicy: ParentClosePolicy.ABANDON,
        cancellationType: ChildWorkflowCancellationType.ABANDON,
        workflowIdReusePolicy: WorkflowIdReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY,
      });
      // The child reports by signal (which survives continue-as-new); its close event is a second path
      // within this run, for a child that closed without reporting.
      void child.result().then(finish, (e: unknown) =>
        finish({
          run_id: runInput.run_id,
          state: isCancellation(e) ? 'cancelled' : 'failed',
          metric: null,
          message: failureInfo(e).message,
        }),
      );
    } catch (err) {
      if (!(err instanceof WorkflowExecutionAlreadyStartedError)) throw err;
      // Another sweep runs (or has completed) this very run: wait for it instead of training twice.
      externalWaits++;
      void light
        .awaitExternalRun(runInput.run_id)
        .then(finish)
        .finally(() => externalWaits--);
    }
  };

  /** A run whose upstream run failed: recorded as blocked (tables and `status` show it), never started. */
  const block = async (entry: Entry, dep: string): Promise<void> => {
    const message = `blocked: upstream run ${dep} failed; \`rankflow resume\` runs it again, then this one`;
    await light.recordBlocked({ ...entry.input, parent: info.workflowId, policy: input.policy }, dep, message);
    outcomes.blocked = (outcomes.blocked ?? 0) + 1;
    if (entry.needed) upstream[entry.input.run_id] = 'failed';
  };

  /** Waiting runs whose upstream runs are settled: start the ready ones (within `room`), block the others. */
  const releaseWaiting = async (room: number): Promise<Entry[]> => {
    const ready: Entry[] = [];
    for (const [index, held] of [...waiting]) {
      const entry = held ?? (await light.loadSweepPage(input.sweep_id, index, 1))[0]!;
      waiting.set(index, entry);
      const r = readiness(entry.after ?? [], upstream);
      if (r.state === 'blocked') {
        waiting.delete(index);
        await block(entry, r.dep!);
      } else if (r.state === 'ready' && ready.length < room) {
        waiting.delete(index);
        ready.push(entry);
      }
    }
    return ready;
  };

  // workflowInfo() is read afresh each time: its history length grows with every activation.
  const rollOver = (): boolean =>
    externalWaits === 0 &&
    (workflowInfo().historyLength > input.max_history_events || workflowInfo().continueAsNewSuggested);
  const settledWaiting = (): boolean =>
    [...waiting.values()].some((e) => e === null || readiness(e.after ?? [], upstream).state !== 'waiting');
  const allDone = (): boolean => nextIndex >= input.total && running.size === 0 && waiting.size === 0;

  for (;;) {
    if (cancelled) {
      await CancellationScope.nonCancellable(async () => {
        for (const id of running)
          await getExternalWorkflowHandle(id)
            .cancel()
            .catch(() => undefined);
      });
      await condition(() => running.size === 0, '10 minutes');
      return status();
    }
    if (allDone()) return status();
    if (nextIndex >= input.total && running.size === 0 && waiting.size > 0 && !settledWaiting()) {
      // Nothing runs and nothing will: the runs they wait for are not in this sweep (never happens for planned
      // manifests, whose upstream runs come first); block them rather than wait forever.
      for (const [index, held] of [...waiting]) {
        waiting.delete(index);
        const entry = held ?? (await light.loadSweepPage(input.sweep_id, index, 1))[0]!;
        await block(entry, (entry.after ?? []).find((id) => upstream[id] !== 'succeeded') ?? '(unknown)');
      }
      continue;
    }
    if (rollOver()) {
      await continueAsNew<typeof sweepWorkflow>({
        ...input,
        state: {
          next_index: nextIndex,
          running: [...running],
          outcomes,
          failed: failed.slice(-50),
          paused,
          generation: st.generation + 1,
          ...(needed.size ? { upstream } : {}),
          ...(waiting.size ? { waiting: [...waiting.keys()] } : {}),
        },
      });
    }
    // Fill the free slots; the children of one batch start together (one workflow task, not one each).
    const batch: Entry[] = waiting.size && !paused ? await releaseWaiting(input.concurrency - running.size) : [];
    while (!paused && !cancelled && running.size + batch.length < input.concurrency && nextIndex < input.total) {
      if (buffer.length === 0) buffer = await light.loadSweepPage(input.sweep_id, nextIndex, input.page_size);
      const entry = buffer.shift();
      if (!entry) break;
      const index = nextIndex++;
      if (entry.needed) {
        needed.add(entry.input.run_id);
        upstream[entry.input.run_id] = 'running'; // until it reports (tracked across continue-as-new)
      }
      if (entry.done) {
        outcomes.skipped = (outcomes.skipped ?? 0) + 1;
        if (entry.needed) upstream[entry.input.run_id] = 'succeeded';
        continue;
      }
      const r = readiness(entry.after ?? [], upstream);
      if (r.state === 'ready') batch.push(entry);
      else if (r.state === 'blocked') await block(entry, r.dep!);
      else waiting.set(index, entry);
    }
    await Promise.all(batch.map(launch));
    await condition(
      () =>
        cancelled ||
        allDone() ||
        (!paused && running.size < input.concurrency && (nextIndex < input.total || settledWaiting())) ||
        (nextIndex >= input.total && running.size === 0) ||
        rollOver(),
    );
  }
}

/** Issue 2's smoke check: one activity that runs the runtime's smoke trainer and round-trips S3. */
export async function smokeWorkflow(): Promise<{
  losses: number[];
  bytes: number;
  sha256: string;
  roundTrip: boolean;
}> {
  const { smoke } = proxyActivities<Activities>({
    startToCloseTimeout: '5 minutes',
    retry: { maximumAttempts: 2 },
  });
  return await smoke();
}
