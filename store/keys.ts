/**
 * The key layout of the artifact store, written once (the same keys on S3 and in a local folder):
 *
 * | key | what |
 * | --- | --- |
 * | `sweeps/<sweep_id>.json` | the sweep manifest (runs and their specs) |
 * | `results/<run_id>.json` | the result record of a finished run (write-once) |
 * | `failed/<run_id>.json` | the last failure of a run (overwritable; a later success supersedes it) |
 * | `checkpoints/<run_id>/<step, 10 digits>/<file>` | checkpoint files; `stored.json` is written last |
 * | `logs/<run_id>/attempt-<n>.log` | the runtime's log of each attempt |
 * | `artifacts/<run_id>/<name>/<file>` | a run's output artifacts (`model`, `adapter`); `stored.json` is written last |
 */
export const SWEEPS_PREFIX = 'sweeps/';
export const RESULTS_PREFIX = 'results/';
export const FAILED_PREFIX = 'failed/';

export const sweepKey = (sweepId: string): string => `${SWEEPS_PREFIX}${sweepId}.json`;
export const resultKey = (runId: string): string => `${RESULTS_PREFIX}${runId}.json`;
export const failureKey = (runId: string): string => `${FAILED_PREFIX}${runId}.json`;
export const logsPrefix = (runId: string): string => `logs/${runId}/`;
/** A generative evaluation's per-example generations and extracted answers (JSON lines), beside the result. */
export const generationsKey = (runId: string, step: number): string =>
  `generations/${runId}/step-${String(step).padStart(8, '0')}.jsonl`;
export const logKey = (runId: string, attempt: number | string): string => `${logsPrefix(runId)}attempt-${attempt}.log`;

/** The marker written last: a checkpoint without it is incomplete and never used. */
export const STORED_MARKER = 'stored.json';

export function checkpointPrefix(runId: string, step?: number): string {
  return step === undefined ? `checkpoints/${runId}/` : `checkpoints/${runId}/${String(step).padStart(10, '0')}/`;
}

export function artifactPrefix(runId: string, name?: string): string {
  return name === undefined ? `artifacts/${runId}/` : `artifacts/${runId}/${name}/`;
}

/** The sweep id of a `sweeps/<id>.json` key, or null for other keys. */
export function sweepIdOfKey(key: string): string | null {
  return key.startsWith(SWEEPS_PREFIX) && key.endsWith('.json')
    ? key.slice(SWEEPS_PREFIX.length, -'.json'.length)
    : null;
}
