/** The durable record of one finished (or definitively failed) run, written once per run id. */
import { z } from 'zod';
import { RunLabels, RunSpec } from './runspec.js';
import { AllocationPoint, Efficiency, SplitEval } from './events.js';

export const CurvePoint = z.strictObject({ step: z.number().int(), loss: z.number() });

/**
 * Where a method that moves rank during training put it (the runtime's final `allocation` event): the final
 * rank per adapted module, its total, the budget, the parameters the final pattern uses, and the history.
 */
export const AllocationRecord = z.strictObject({
  unit: z.string().min(1),
  ranks: z.record(z.string(), z.number().int().nonnegative()),
  total: z.number().int().nonnegative(),
  budget: z.number().int().nonnegative().nullable(),
  params: z.number().int().nonnegative().nullable(),
  history: z.array(AllocationPoint),
});
export type AllocationRecord = z.infer<typeof AllocationRecord>;
/** One finished round of a federated run (the runtime's `round` event, without the client ids). */
export const RoundPoint = z.strictObject({
  round: z.number().int().positive(),
  step: z.number().int().nonnegative(),
  client_loss: z.number(),
  /** The global model's evaluation after the round. */
  metrics: z.record(z.string(), z.number()),
  /** The server's report: `aggregation_error`, `aggregation_error_fedit`, `cosine_before/after`, `delta_b_ratio`. */
  aggregation: z.record(z.string(), z.number()),
});
export type RoundPoint = z.infer<typeof RoundPoint>;

export const ResultRecord = z.strictObject({
  schema: z.literal('rankflow.result/v1'),
  run_id: z.string(),
  /** Sweeps that asked for this run (a run shared by two recipes is recorded once). */
  sweep_id: z.string(),
  recipe: z.string().nullable(),
  status: z.enum(['succeeded', 'failed']),
  spec: RunSpec,
  labels: RunLabels,
  /** Final evaluation metrics (empty when failed). */
  metrics: z.record(z.string(), z.number()),
  best_metrics: z.record(z.string(), z.number()),
  best_step: z.number().int().nullable(),
  trainable_params: z.number().int().nullable(),
  total_params: z.number().int().nullable(),
  /**
   * The task head's share of `trainable_params` (0 when frozen; absent for a model without a head, and in
   * records written before it was recorded). Tables leave it out by default, as the LoRA paper does.
   */
  head_params: z.number().int().nullable().optional(),
  /** The procedure's own numbers (`done.stats` of the runtime: compression ratio, pruned size, tokens/s, ...). */
  stats: z.record(z.string(), z.number()).optional(),
  /** Training loss curve (subsampled to at most a few hundred points). */
  curve: z.array(CurvePoint),
  /**
   * Every evaluated split (`spec.dataset.eval_splits`, else the one `eval_split`): final metrics, metrics at
   * `best_step` (chosen on `eval_split`) and the evaluation curve. Absent in records from before it existed.
   */
  evals: z.record(z.string(), SplitEval).optional(),
  /** Peak memory, time per step, throughput and the device (the runtime's `done.efficiency`); absent before. */
  efficiency: Efficiency.optional(),
  /** Final rank pattern (AdaLoRA, IncreLoRA, TriAdaptLoRA, DiffoRA, SNELLA); absent or null for other methods. */
  allocation: AllocationRecord.nullable().optional(),
  /** Federated runs (`lora-fair`): every round's global metrics and aggregation report; absent otherwise. */
  rounds: z.array(RoundPoint).optional(),
  error: z.strictObject({ kind: z.string(), message: z.string(), hint: z.string().nullable() }).nullable(),
  timings: z.strictObject({
    started_at: z.string(),
    finished_at: z.string(),
    wall_s: z.number().nonnegative(),
    /** Attempts made (0 for a run recorded as blocked: it never started). */
    attempts: z.number().int().nonnegative(),
  }),
  versions: z.strictObject({
    rankflow: z.string(),
    git: z.string().nullable(),
    runtime: z.string().nullable(),
    torch: z.string().nullable(),
    python: z.string().nullable(),
  }),
  worker: z.strictObject({ host: z.string(), slot: z.string() }),
});
export type ResultRecord = z.infer<typeof ResultRecord>;
