/**
 * Where a sweep's overhead goes, read from the Temporal histories of its run workflows and the runs' own
 * training times (each result record's `wall_s`). Per run, in seconds:
 *
 * - `activity`: the training activity's time, started to completed, less the runtime's own training time:
 *   starting the runtime (a fork or a fresh Python), what it does before its clock starts and after it stops,
 *   and the uploads of checkpoints and the log;
 * - `between`: slot time with no training activity running: the workflow steps between two runs on a slot
 *   (result record, the sweep starting the next run, its result lookup) unless a run already waits queued for
 *   the slot, the sweep's start, and its tail when fewer runs than slots remain; `firstStart` is the start
 *   alone: sweep started → first training activity started.
 *
 * `activity` + `between` is the overhead per run, (wall × slots − Σ training) / N.
 */
import type { Client } from '@temporalio/client';
import { trainingSpan } from '../../tests/helpers/runs.js';

export interface Phases {
  activity: number;
  between: number;
  firstStart: number;
}

/**
 * The mean phases per run of a finished sweep (see the module comment); `training` maps run id → wall_s,
 * `startedAt` is when the sweep was started (ms since the epoch).
 */
export async function sweepPhases(
  client: Client,
  training: Map<string, number>,
  sweep: { wall: number; slots: number; startedAt: number },
): Promise<Phases> {
  let inActivity = 0;
  let busy = 0;
  let first = Infinity;
  for (const [runId, trained] of training) {
    const s = await trainingSpan(client, runId);
    inActivity += s.end - s.start - trained;
    busy += s.end - s.start;
    first = Math.min(first, s.start);
  }
  const n = training.size;
  return {
    activity: inActivity / n,
    between: (sweep.wall * sweep.slots - busy) / n,
    firstStart: first - sweep.startedAt / 1000,
  };
}

/** One line: the phases of the overhead per run. */
export function phasesLine(p: Phases): string {
  const f = (x: number): string => x.toFixed(2);
  return `in the training activity ${f(p.activity)} s, between training activities ${f(p.between)} s (first start ${f(p.firstStart)} s)`;
}
