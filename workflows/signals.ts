/** The sweep's signals and query (the CLI and `rankflow ui` send them; child runs report by `runFinished`). */
import { defineQuery, defineSignal } from '@temporalio/workflow';
import type { RunOutcome, SweepStatus } from '../schemas/orchestration.js';

export const runFinished = defineSignal<[RunOutcome]>('runFinished');
export const pauseSignal = defineSignal('pause');
export const resumeSignal = defineSignal('resume');
export const cancelSignal = defineSignal('cancel');
export const statusQuery = defineQuery<SweepStatus>('status');
