/** Payloads that cross Temporal: workflow inputs, activity inputs/outputs, the sweep manifest, status. */
import { z } from 'zod';
import { PlannedRun, RunLabels, RunSpec } from './runspec.js';
import { AllocationRecord, CurvePoint, RoundPoint } from './result.js';
import { Efficiency, SplitEval } from './events.js';

/** Stored at `sweeps/<sweep_id>.json` before the sweep workflow starts; the workflow pages through it. */
export const SweepManifest = z.strictObject({
  schema: z.literal('rankflow.sweep/v1'),
  sweep_id: z.string(),
  recipe: z.string().nullable(),
  created_at: z.string(),
  /** Task queue for training activities per device class (`cpu` -> `rankflow-cpu`). */
  queues: z.record(z.string(), z.string()),
  runs: z.array(PlannedRun),
});
export type SweepManifest = z.infer<typeof SweepManifest>;

export const RunInput = z.strictObject({
  run_id: z.string(),
  sweep_id: z.string(),
  recipe: z.string().nullable(),
  spec: RunSpec,
  labels: RunLabels,
  task_queue: z.string(),
  /** Workflow id of the sweep to notify when the run ends (null when started on its own). */
  parent: z.string().nullable(),
  policy: z.strictObject({
    max_attempts: z.number().int().positive(),
    heartbeat_timeout_s: z.number().positive(),
    run_timeout_s: z.number().positive(),
    keep_checkpoints: z.number().int().positive(),
    terminate_grace_s: z.number().positive(),
  }),
});
export type RunInput = z.infer<typeof RunInput>;

/** `blocked`: not started because a run it reads artifacts from failed (stages); `resume` runs it after that one. */
export const RUN_STATES = ['pending', 'running', 'succeeded', 'failed', 'skipped', 'cancelled', 'blocked'] as const;
export const RunState = z.enum(RUN_STATES);
export type RunState = z.infer<typeof RunState>;

export const RunOutcome = z.strictObject({
  run_id: z.string(),
  state: RunState,
  /** The headline metric value when succeeded. */
  metric: z.number().nullable(),
  message: z.string().nullable(),
});
export type RunOutcome = z.infer<typeof RunOutcome>;

export const TrainOutput = z.strictObject({
  metrics: z.record(z.string(), z.number()),
  best_metrics: z.record(z.string(), z.number()),
  best_step: z.number().int(),
  trainable_params: z.number().int(),
  total_params: z.number().int(),
  /** `done.head_params`: the head's share of `trainable_params` (absent without a head). */
  head_params: z.number().int().optional(),
  wall_time_s: z.number(),
  /** The procedure's own numbers (`done.stats`: compression ratio, pruned size, tokens/s, ...). */
  stats: z.record(z.string(), z.number()).optional(),
  curve: z.array(CurvePoint),
  evals: z.record(z.string(), SplitEval).optional(),
  efficiency: Efficiency.optional(),
  /** The final `allocation` event of methods that move rank during training. */
  allocation: AllocationRecord.nullable().optional(),
  /** Federated runs: one point per round (see ResultRecord.rounds). */
  rounds: z.array(RoundPoint).optional(),
  runtime: z.string().nullable(),
  torch: z.string().nullable(),
  python: z.string().nullable(),
  started_at: z.string(),
  attempt: z.number().int().positive(),
  resumed_from: z.number().int().nullable(),
  slot: z.string(),
  host: z.string(),
});
export type TrainOutput = z.infer<typeof TrainOutput>;

/** What the training activity heartbeats (small: never tensors). */
export const TrainHeartbeat = z.strictObject({
  step: z.number().int(),
  total_steps: z.number().int().nullable(),
  loss: z.number().nullable(),
  checkpoint: z.string().nullable(),
  /** What the run is doing: loading (model and data), training, or evaluating (generative: `eval_done`/`eval_total`). */
  phase: z.enum(['loading', 'training', 'evaluating']).optional(),
  eval_done: z.number().int().nonnegative().optional(),
  eval_total: z.number().int().nonnegative().optional(),
  /** The latest evaluation (step and metrics): `rankflow ui` draws a live evaluation curve from it. */
  eval: z.strictObject({ step: z.number().int(), metrics: z.record(z.string(), z.number()) }).optional(),
});
export type TrainHeartbeat = z.infer<typeof TrainHeartbeat>;

export const SweepInput = z.strictObject({
  sweep_id: z.string(),
  total: z.number().int().nonnegative(),
  concurrency: z.number().int().positive(),
  page_size: z.number().int().positive(),
  /** Roll over to a new run (continue-as-new) after this many events, or when Temporal suggests it. */
  max_history_events: z.number().int().positive(),
  policy: RunInput.shape.policy,
  /** Carried across continue-as-new. */
  state: z
    .strictObject({
      next_index: z.number().int().nonnegative(),
      running: z.array(z.string()),
      outcomes: z.record(z.string(), z.number().int()),
      failed: z.array(RunOutcome),
      paused: z.boolean(),
      generation: z.number().int().nonnegative(),
      /** Stages: states of the runs later runs read from (`running` until they report), by run id. */
      upstream: z.record(z.string(), z.enum(['running', 'succeeded', 'failed'])).optional(),
      /** Stages: manifest indices of runs waiting for their upstream runs. */
      waiting: z.array(z.number().int().nonnegative()).optional(),
    })
    .nullable(),
});
export type SweepInput = z.infer<typeof SweepInput>;

export const SweepStatus = z.strictObject({
  sweep_id: z.string(),
  total: z.number().int(),
  counts: z.record(RunState, z.number().int()),
  running: z.array(z.string()),
  failed: z.array(RunOutcome),
  paused: z.boolean(),
  cancelled: z.boolean(),
  generation: z.number().int(),
});
export type SweepStatus = z.infer<typeof SweepStatus>;
