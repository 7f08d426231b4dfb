/**
 * The unit the tables and plots work on: one planned run, finished or not. A run of a sweep manifest with no
 * result record is `missing`; a result record with `status: failed` is `failed`. Neither is ever dropped:
 * cells count them and the renderers show them.
 */
import type { ResultRecord, RoundPoint } from '../schemas/result.js';
import type { Efficiency, SplitEval } from '../schemas/events.js';
import type { RunLabels } from '../schemas/runspec.js';

export type RunStatus = 'succeeded' | 'failed' | 'missing';

export interface RunRow {
  run_id: string;
  /** Sweep that listed the run (or the record's own sweep id when read without a manifest). */
  sweep_id: string | null;
  labels: RunLabels;
  status: RunStatus;
  /** Final evaluation metrics (empty unless succeeded). */
  metrics: Record<string, number>;
  /** Metrics at the best checkpoint (empty unless succeeded). */
  best_metrics: Record<string, number>;
  /** The dataset's headline metric (`spec.dataset.metric`); null for a missing run. */
  headline: string | null;
  /** The split `metrics` are of and the best checkpoint was chosen on (`spec.dataset.eval_split`); null: missing. */
  eval_split: string | null;
  /** Every evaluated split of the record (`evals`; empty for records from before it and unfinished runs). */
  evals: Record<string, SplitEval>;
  /** The runtime's efficiency figures (`efficiency` of the record), else null. */
  efficiency: Efficiency | null;
  /** The run's wall time (`timings.wall_s`: the runtime process that finished it), null unless finished. */
  wall_s: number | null;
  trainable: number | null;
  total: number | null;
  /** Versions the record names (rankflow, git, runtime, torch, python); null for a missing run. */
  versions: Record<string, string | null> | null;
  /** The task head's share of `trainable` (null when the record does not say: no head, or written before). */
  head: number | null;
  curve: { step: number; loss: number }[];
  /** Final rank per adapted module, for methods that move rank during training (else null). */
  allocation: { unit: string; ranks: Record<string, number> } | null;
  /** Federated runs: the global metrics and aggregation report of every round (empty otherwise). */
  rounds: RoundPoint[];
  /** One line: the failure (`kind: message`) or, for a missing run, why it is missing when known. */
  error: string | null;
  /**
   * Stages: the run's procedure numbers (`stats` of its record: compression ratio, pruned size, tokens/s) and,
   * joined by the results reader, those of the runs it builds on (nearest first, never overriding its own).
   */
  stats: Record<string, number>;
  /** Stages: the ids of the runs whose artifacts it read (`spec.inputs`). */
  upstream: string[];
}

export function runFromRecord(r: ResultRecord): RunRow {
  return {
    run_id: r.run_id,
    sweep_id: r.sweep_id,
    labels: r.labels,
    status: r.status,
    metrics: r.status === 'succeeded' ? r.metrics : {},
    best_metrics: r.status === 'succeeded' ? r.best_metrics : {},
    headline: r.spec.dataset.metric,
    eval_split: r.spec.dataset.eval_split,
    evals: r.status === 'succeeded' ? (r.evals ?? {}) : {},
    efficiency: r.status === 'succeeded' ? (r.efficiency ?? null) : null,
    wall_s: r.status === 'succeeded' ? r.timings.wall_s : null,
    trainable: r.trainable_params,
    total: r.total_params,
    head: r.head_params ?? null,
    versions: { ...r.versions },
    curve: r.curve,
    allocation:
      r.status === 'succeeded' && r.allocation ? { unit: r.allocation.unit, ranks: r.allocation.ranks } : null,
    rounds: r.rounds ?? [],
    error: r.error
      ? `${r.error.kind}: ${r.error.message}`
      : r.status === 'failed'
        ? 'failed (no error recorded)'
        : null,
    stats: r.status === 'succeeded' ? { ...(r.stats ?? {}) } : {},
    upstream: [...new Set(Object.values(r.spec.inputs ?? {}).map((x) => x.run))],
  };
}

export function missingRun(
  run_id: string,
  sweep_id: string | null,
  labels: RunLabels,
  why: string | null = null,
  planned: { trainable: number; total: number; estimated?: true; head?: number } | null = null,
): RunRow {
  // An estimated planned count (ranks chosen from the weights) is not the run's: only its record will say.
  const params = planned?.estimated ? null : planned;
  return {
    run_id,
    sweep_id,
    labels,
    status: 'missing',
    metrics: {},
    best_metrics: {},
    headline: null,
    eval_split: null,
    evals: {},
    efficiency: null,
    wall_s: null,
    trainable: params?.trainable ?? null,
    total: params?.total ?? null,
    head: params?.head ?? null,
    versions: null,
    curve: [],
    allocation: null,
    rounds: [],
    error: why,
    stats: {},
    upstream: [],
  };
}

/** A finished run's metrics on `split` (`final` or at the best checkpoint), or null when it did not evaluate it. */
export function splitMetrics(r: RunRow, split: string, which: 'final' | 'best'): Record<string, number> | null {
  const e = r.evals[split];
  if (e) return which === 'best' ? e.best_metrics : e.metrics;
  if (split === r.eval_split) return which === 'best' ? r.best_metrics : r.metrics;
  return null;
}
