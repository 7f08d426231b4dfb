/**
 * `runWorkflow` (id `run-<hash>`): skip if the result exists, train (retries resume from the latest checkpoint;
 * config errors are never retried), record the result once, tell the sweep.
 */
import {
  ActivityCancellationType,
  ActivityFailure,
  ApplicationFailure,
  CancellationScope,
  getExternalWorkflowHandle,
  isCancellation,
  proxyActivities,
} from '@temporalio/workflow';
import type { Activities } from '../activities/index.js';
import type { RunInput, RunOutcome } from '../schemas/orchestration.js';
import { light } from './light.js';
import { runFinished } from './signals.js';

async function tellParent(input: RunInput, outcome: RunOutcome): Promise<void> {
  if (!input.parent) return;
  try {
    await getExternalWorkflowHandle(input.parent).signal(runFinished, outcome);
  } catch {
    // The sweep has already ended (cancelled or finished): nobody to tell.
  }
}

/** The kind, message, hint and attempt of a failed activity or child workflow (its ApplicationFailure's details). */
export function failureInfo(err: unknown): {
  type: string;
  message: string;
  hint: string | null;
  attempt: number | null;
} {
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
