/**
 * rankflow's Temporal workflows (deterministic code only: no I/O, clock or randomness of their own); the
 * worker bundles this file.
 *
 * - `runWorkflow` (workflows/run.ts, id `run-<hash>`): one run, trained and recorded once; tells its sweep.
 * - `sweepWorkflow` (workflows/sweep.ts, bookkeeping in workflows/sweep-book.ts): a sliding window of run
 *   workflows over the sweep manifest, with stages, `status`, `pause`/`resume`/`cancel` and continue-as-new.
 * - `smokeWorkflow`: issue 2's smoke check.
 */
import { proxyActivities } from '@temporalio/workflow';
import type { Activities } from '../activities/index.js';

export { runWorkflow } from './run.js';
export { sweepWorkflow } from './sweep.js';
export { readiness } from './sweep-book.js';
export { cancelSignal, pauseSignal, resumeSignal, runFinished, statusQuery } from './signals.js';

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
