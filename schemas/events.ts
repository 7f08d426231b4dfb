/**
 * JSON-lines events printed on stdout by the native runtime, one object per line. The TypeScript side
 * validates every line with `RunnerEvent`; anything else on stdout is a protocol error.
 */
import { z } from 'zod';

const base = { time: z.number() /* unix seconds */ };

export const StartedEvent = z.strictObject({
  event: z.literal('started'),
  ...base,
  pid: z.number().int(),
  device: z.string(),
  torch: z.string(),
  python: z.string(),
  runtime: z.string(),
  /** Step the run resumes from (0 for a fresh start). */
  step: z.number().int().nonnegative(),
  total_steps: z.number().int().positive(),
  trainable_params: z.number().int().nonnegative(),
  total_params: z.number().int().nonnegative(),
});

export const ProgressEvent = z.strictObject({
  event: z.literal('progress'),
  ...base,
  step: z.number().int().nonnegative(),
  total_steps: z.number().int().positive(),
  epoch: z.number().nonnegative(),
  loss: z.number(),
  lr: z.number(),
  /** Training examples per second over the last logging window. */
  throughput: z.number().nonnegative(),
  /** Peak memory in MiB (CUDA allocator peak on GPU, max RSS on CPU). */
  peak_mem_mb: z.number().nonnegative(),
  /** Tokens per second over the last logging window (token inputs only: non-padding tokens). */
  tokens_per_s: z.number().nonnegative().optional(),
});

export const CheckpointFile = z.strictObject({
  name: z.string().min(1),
  sha256: z.string().regex(/^[0-9a-f]{64}$/),
  bytes: z.number().int().nonnegative(),
});

export const CheckpointEvent = z.strictObject({
  event: z.literal('checkpoint'),
  ...base,
  step: z.number().int().nonnegative(),
  /** Directory holding the checkpoint (manifest.json + safetensors files). */
  path: z.string().min(1),
  files: z.array(CheckpointFile).min(1),
  /** True if this checkpoint holds the best evaluation so far. */
  best: z.boolean(),
  /** `best`: written because an evaluation found a new best model (no interval checkpoint on that step). */
  reason: z.enum(['interval', 'preempt', 'final', 'best']),
});

export const EvalEvent = z.strictObject({
  event: z.literal('eval'),
  ...base,
  step: z.number().int().nonnegative(),
  split: z.string(),
  metrics: z.record(z.string(), z.number()),
  /**
   * Generative evaluation (GSM8k): the JSON-lines file with every example's prompt, generation, extracted
   * answers, reference and correctness (absolute path), and its line count.
   */
  generations: z.strictObject({ path: z.string().min(1), count: z.number().int().nonnegative() }).optional(),
});

/** Progress of a generative evaluation (decoding), at most every 2 s and at its end. */
export const EvalProgressEvent = z.strictObject({
  event: z.literal('eval_progress'),
  ...base,
  step: z.number().int().nonnegative(),
  done: z.number().int().nonnegative(),
  total: z.number().int().nonnegative(),
  elapsed_s: z.number().nonnegative(),
});

/** One evaluation of one split: the step and every metric. */
export const EvalPoint = z.strictObject({
  step: z.number().int().nonnegative(),
  metrics: z.record(z.string(), z.number()),
});
/**
 * One evaluated split of a run: its final metrics, its metrics at the best step (chosen on the selection split,
 * `dataset.eval_split`, never on this one unless it is that split) and its curve (thinned to at most 200 points).
 */
export const SplitEval = z.strictObject({
  metrics: z.record(z.string(), z.number()),
  best_metrics: z.record(z.string(), z.number()),
  curve: z.array(EvalPoint),
});
export type SplitEval = z.infer<typeof SplitEval>;

/**
 * What training cost, measured by the runtime process that finished the run (a resumed run: since its resume).
 * `step_s` and the rates cover the optimizer steps (data collation included; evaluation, checkpoints and set-up
 * excluded). `mem_kind` says what `peak_mem_mb` is: the CUDA allocator's peak (`cuda_max_allocated`) or the
 * process's peak resident set (`cpu_max_rss`, model loading included): the two are not comparable.
 */
export const Efficiency = z.strictObject({
  /** `NVIDIA H100 80GB HBM3`, `cpu: AMD EPYC 7B13`. */
  device: z.string(),
  peak_mem_mb: z.number().nonnegative(),
  mem_kind: z.enum(['cuda_max_allocated', 'cpu_max_rss']),
  steps: z.number().int().nonnegative(),
  train_s: z.number().nonnegative(),
  step_s: z.number().nonnegative(),
  examples_per_s: z.number().nonnegative(),
  /** Token inputs only (non-padding tokens). */
  tokens_per_s: z.number().nonnegative().optional(),
  /** CPU runs: torch's intra-op threads. */
  threads: z.number().int().positive().optional(),
});
export type Efficiency = z.infer<typeof Efficiency>;

export const DoneEvent = z.strictObject({
  event: z.literal('done'),
  ...base,
  step: z.number().int().nonnegative(),
  /** Metrics of the final evaluation. */
  metrics: z.record(z.string(), z.number()),
  /** Metrics of the best evaluation (by the dataset's metric), and its step. */
  best_metrics: z.record(z.string(), z.number()),
  best_step: z.number().int().nonnegative(),
  trainable_params: z.number().int().nonnegative(),
  total_params: z.number().int().nonnegative(),
  /** The task head's share of `trainable_params` (0 when frozen); absent for a model without a head. */
  head_params: z.number().int().nonnegative().optional(),
  wall_time_s: z.number().nonnegative(),
  /** Every evaluated split (`dataset.eval_splits`), by name; absent from procedures without evaluations. */
  evals: z.record(z.string(), SplitEval).optional(),
  efficiency: Efficiency.optional(),
  /**
   * Numbers a procedure reports beside the metrics (`describe` lists each procedure's): e.g. LoRD's
   * `compression_ratio`, `params_before`/`params_after` and `speedup`, LoRAM's `pruned_params`, pretraining's
   * `tokens_per_s` and `peak_mem_mb`. Tables can show them beside a downstream run's score.
   */
  stats: z.record(z.string(), z.number()).optional(),
});

/**
 * An output artifact written (a directory: safetensors shards, manifest.json, and complete.json, the marker
 * written last with every other file's sha256); the orchestrator stores it.
 */
export const ARTIFACT_KINDS = ['model', 'adapter'] as const;
export const ArtifactEvent = z.strictObject({
  event: z.literal('artifact'),
  ...base,
  /** The artifact's name within the run (`model`, `adapter`); downstream specs name it in `inputs`. */
  name: z.string().regex(/^[a-z][a-z0-9_]*$/),
  kind: z.enum(ARTIFACT_KINDS),
  /** The directory holding it (absolute). */
  path: z.string().min(1),
  /** Every file with its sha256 and size; complete.json last. */
  files: z.array(CheckpointFile).min(1),
});
export type ArtifactEvent = z.infer<typeof ArtifactEvent>;

/** `checkpoint`: the runtime refused a `--resume` checkpoint (damaged, or another run's); exit 2. */
export const ERROR_KINDS = ['config', 'checkpoint', 'data', 'oom', 'nan', 'internal'] as const;
export const ErrorEvent = z.strictObject({
  event: z.literal('error'),
  ...base,
  kind: z.enum(ERROR_KINDS),
  message: z.string(),
  hint: z.string().nullable(),
});

export const PreemptedEvent = z.strictObject({
  event: z.literal('preempted'),
  ...base,
  step: z.number().int().nonnegative(),
  /** Checkpoint written on the way out (null if the run had not taken a step yet). */
  path: z.string().nullable(),
});

/** `export`: the checkpoint's adapter written in Hugging Face PEFT format (the command's only event). */
export const ExportedEvent = z.strictObject({
  event: z.literal('exported'),
  ...base,
  /** Step of the exported checkpoint. */
  step: z.number().int().nonnegative(),
  method: z.string(),
  /** PEFT's `peft_type` in adapter_config.json (LORA, VERA, RANDLORA, MISS, PROMPT_TUNING) and its rank `r`
   *  (null for adapters without one: prompt tuning). */
  peft_type: z.string(),
  r: z.number().int().positive().nullable(),
  /** The output directory (absolute). */
  path: z.string().min(1),
  files: z.array(CheckpointFile).min(1),
});

/** One reported rank pattern: rank (or other `unit`) per adapted module, by module name. */
export const AllocationPoint = z.strictObject({
  step: z.number().int().nonnegative(),
  total: z.number().int().nonnegative(),
  /** The method's budget at that step (AdaLoRA's b(t), a growth target); null when it has none. */
  budget: z.number().int().nonnegative().nullable(),
  ranks: z.record(z.string(), z.number().int().nonnegative()),
});

/**
 * `allocation`: where a method that decides capacity during training (AdaLoRA, IncreLoRA, TriAdaptLoRA,
 * DiffoRA) has put it. Emitted at the start, whenever the pattern changes (checked at each progress log) and
 * once at the end with `final: true` and the whole `history` (thinned to at most 200 points; it survives
 * resumes). Methods without an allocation emit none.
 */
export const AllocationEvent = z.strictObject({
  event: z.literal('allocation'),
  ...base,
  step: z.number().int().nonnegative(),
  /** What `ranks` counts: `rank` (active rank per module; 0 = unadapted). */
  unit: z.string().min(1),
  ranks: z.record(z.string(), z.number().int().nonnegative()),
  total: z.number().int().nonnegative(),
  budget: z.number().int().nonnegative().nullable(),
  /** Parameters the current pattern uses (AdaLoRA: the unmasked triplets; null when the method does not say). */
  params: z.number().int().nonnegative().nullable(),
  /** Trainable parameters of the model at that step (grows with rank growth). */
  trainable_params: z.number().int().nonnegative(),
  final: z.boolean(),
  /** Only on the final event: every reported pattern, in step order. */
  history: z.array(AllocationPoint).nullable(),
});

/**
 * `lora-fair`: one federated round finished — the sampled clients, their mean local training loss, the global
 * model's evaluation and the server's aggregation report (‖B̄′Ā − ΔW*‖/‖ΔW*‖ after and before the correction,
 * mean per-layer cosines, ‖ΔB‖/‖B̄‖). `step` counts client local steps done (the run's progress unit).
 */
export const RoundEvent = z.strictObject({
  event: z.literal('round'),
  ...base,
  round: z.number().int().positive(),
  rounds: z.number().int().positive(),
  step: z.number().int().nonnegative(),
  clients: z.array(z.number().int().nonnegative()),
  client_loss: z.number(),
  metrics: z.record(z.string(), z.number()),
  aggregation: z.record(z.string(), z.number()),
});
export type RoundEvent = z.infer<typeof RoundEvent>;

export const RunnerEvent = z.discriminatedUnion('event', [
  RoundEvent,
  AllocationEvent,
  StartedEvent,
  ProgressEvent,
  CheckpointEvent,
  EvalEvent,
  EvalProgressEvent,
  DoneEvent,
  ErrorEvent,
  PreemptedEvent,
  ExportedEvent,
  ArtifactEvent,
]);
export type RunnerEvent = z.infer<typeof RunnerEvent>;
export type CheckpointEvent = z.infer<typeof CheckpointEvent>;
export type DoneEvent = z.infer<typeof DoneEvent>;
export type ProgressEvent = z.infer<typeof ProgressEvent>;
export type AllocationEvent = z.infer<typeof AllocationEvent>;

/** Process exit codes of the runtime. Mirrored in runtime-native/rankflow_runtime/errors.py. */
export const EXIT = {
  ok: 0,
  /** Bad spec, bad data, NaN loss: deterministic, never retried. */
  config: 2,
  /** OOM, internal error, lost device: may succeed on another attempt. */
  retryable: 3,
  /** Received SIGTERM, checkpointed, exited cleanly. */
  preempted: 4,
} as const;
