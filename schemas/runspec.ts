/**
 * The fully resolved specification of one training run: what the planner produces and what the
 * native runtime (`python -m rankflow_runtime run --spec run.json`) consumes. Every field is explicit
 * (defaults filled by the planner), so the canonical JSON of a RunSpec identifies the run.
 */
import { z } from 'zod';

/** `img-gen`: conditional image generation (the `tiny-denoiser` on `synthetic/content-style`). */
export const TASKS = ['seq-cls', 'img-cls', 'causal-lm', 'img-gen'] as const;
export const Task = z.enum(TASKS);

export const ModelSpec = z.strictObject({
  /** Built-in model name (`tiny-encoder`, `tiny-vit`, `tiny-decoder`, ...) or a Hugging Face id / local path. */
  name: z.string().min(1),
  source: z.enum(['builtin', 'hf']),
  task: Task,
  /** Architecture overrides (hidden size, layers, ...) for built-in or config-built models. */
  config: z.record(z.string(), z.unknown()),
  /** For `hf`: build from the bundled/local config with random weights instead of loading weights. */
  random_init: z.boolean(),
  /**
   * For `hf`: allow a model folder's own Python code (`auto_map` in its config.json). Optional: absent means
   * false, so specs and run ids from before the field existed are unchanged; the planner writes it only when true.
   */
  trust_remote_code: z.boolean().optional(),
});
export type ModelSpec = z.infer<typeof ModelSpec>;

/** `dataset.format` values (the runtime's `describe` lists which each dataset family reads). */
export const DATA_FORMATS = ['auto', 'official', 'tsv', 'csv', 'jsonl', 'parquet', 'arrow', 'hf'] as const;

export const DatasetSpec = z.strictObject({
  /** `glue/<task>`, `vtab/<task>`, `gsm8k`, `synthetic/<kind>`. */
  name: z.string().min(1),
  /** Where the on-disk data lives; null means `$RANKFLOW_DATA` (or synthetic data needing none). */
  data_root: z.string().nullable(),
  max_length: z.number().int().positive(),
  /** Cap on the number of training / evaluation examples (null = the full split). */
  train_size: z.number().int().positive().nullable(),
  eval_size: z.number().int().positive().nullable(),
  /** The split evaluated (`validation`, `validation_matched`, `test`, ...). */
  eval_split: z.string().min(1),
  /**
   * Every split evaluated at each evaluation, in order (`[validation, test]`); `eval_split` is among them and is
   * the one best-checkpoint choice and `metrics` use (never `test` when another split is listed). Optional:
   * absent means `[eval_split]`, so specs and run ids from before the field existed are unchanged.
   */
  eval_splits: z.array(z.string().min(1)).min(1).optional(),
  /** Metric used for best-checkpoint selection and headline tables. */
  metric: z.string().min(1),
  options: z.record(z.string(), z.unknown()),
  // Where and how the data is read. Optional: absent means the default, so the specs (and run ids) of runs
  // planned before these fields existed are unchanged; the planner writes them only when they are set.
  /** `auto` (absent): the first form found; `tsv`/`jsonl`/`official` (the benchmark's own files), `hf`. */
  format: z.enum(DATA_FORMATS).optional(),
  /** Split -> file (or files): your own data, or explicit Parquet/Arrow files of a benchmark. */
  files: z.record(z.string(), z.union([z.string().min(1), z.array(z.string().min(1)).min(1)])).optional(),
  /** Your own data: which columns hold the text (one, or two for a pair), label, or prompt/target (causal LM). */
  columns: z
    .strictObject({
      text: z.union([z.string().min(1), z.array(z.string().min(1)).min(1).max(2)]).optional(),
      label: z.string().min(1).optional(),
      prompt: z.string().min(1).optional(),
      target: z.string().min(1).optional(),
    })
    .optional(),
  /** Your own classification data: the label set in id order (default: the sorted distinct training labels). */
  labels: z
    .array(z.union([z.string(), z.number()]))
    .min(2)
    .optional(),
  /** Your own labelled data: `classification` (absent) or `regression`. */
  problem_type: z.enum(['classification', 'regression']).optional(),
});
export type DatasetSpec = z.infer<typeof DatasetSpec>;

export const MethodSpec = z.strictObject({
  /** Registered runtime method name (`lora`, `full`, `linear-probe`, `randlora`, `nola`, ...). */
  name: z.string().min(1),
  /** Rank (or the method's equivalent size knob); null for methods without one. */
  rank: z.number().int().positive().nullable(),
  /** Method options, validated by the method's own schema in the runtime (`describe`). */
  options: z.record(z.string(), z.unknown()),
  /** Module-name patterns to adapt; empty = the model's default targets for this method. */
  targets: z.array(z.string()),
});
export type MethodSpec = z.infer<typeof MethodSpec>;

export const TrainingSpec = z
  .strictObject({
    optimizer: z.enum(['adamw', 'sgd']),
    lr: z.number().positive(),
    /** Extra learning rates for named parameter groups a method declares (e.g. DePT's `prompt`). */
    lr_groups: z.record(z.string(), z.number().positive()),
    weight_decay: z.number().nonnegative(),
    schedule: z.enum(['constant', 'linear', 'cosine']),
    warmup_ratio: z.number().min(0).max(1),
    /** Exactly one of max_steps / epochs is set. */
    max_steps: z.number().int().positive().nullable(),
    epochs: z.number().positive().nullable(),
    batch_size: z.number().int().positive(),
    eval_batch_size: z.number().int().positive(),
    grad_accum: z.number().int().positive(),
    max_grad_norm: z.number().positive().nullable(),
    precision: z.enum(['fp32', 'bf16', 'fp16']),
    /** Evaluate every N optimizer steps (null = only at the end). */
    eval_every: z.number().int().positive().nullable(),
    /** Checkpoint every N optimizer steps (null = only when preempted and at the end). */
    checkpoint_every: z.number().int().positive().nullable(),
    log_every: z.number().int().positive(),
    /** Train the task head (classifier) alongside the method's parameters. */
    train_head: z.boolean(),
  })
  .meta({
    // Exactly one of max_steps / epochs is set: written once, as JSON Schema (the runtime validates specs against
    // the generated schema; the planner's composition keeps it). x-message / x-hint are the runtime's error text.
    oneOf: [
      { properties: { max_steps: { type: 'null' } }, required: ['max_steps'] },
      { properties: { epochs: { type: 'null' } }, required: ['epochs'] },
    ],
    'x-message': '{path}.max_steps/{path}.epochs: exactly one must be set',
    'x-hint': 'set one of them and the other to null',
  });
export type TrainingSpec = z.infer<typeof TrainingSpec>;

/** A run id: `run-<hash of the canonical spec>`. */
export const RunIdString = z
  .string()
  .regex(/^run-[0-9a-f]{16,64}$/)
  .meta({ title: 'a run id (run-<hex>)' });

/**
 * What the run does with its model: a procedure registered in the runtime (`describe` lists them with their
 * options, inputs and outputs): `finetune` (the standard training loop, the default), `pretrain`, `compress`,
 * `prune`, `recover`. Absent from a spec means `{name: finetune, options: {}}`; the planner omits it then, so
 * the ids of plain runs do not change.
 */
export const DEFAULT_PROCEDURE = 'finetune';
export const ProcedureSpec = z.strictObject({
  name: z.string().min(1),
  /** Procedure options, validated by the procedure's own schema in the runtime (`describe`). */
  options: z.record(z.string(), z.unknown()),
});
export type ProcedureSpec = z.infer<typeof ProcedureSpec>;

/** An artifact of an upstream run that this run reads: part of the run's identity. */
export const InputRef = z.strictObject({
  /** The upstream run's id. */
  run: RunIdString,
  /** The artifact's name in that run (`model`, `adapter`). */
  artifact: z.string().min(1),
});
export type InputRef = z.infer<typeof InputRef>;
export const INPUT_NAME = /^[a-z][a-z0-9_]*$/;

export const RunSpec = z.strictObject({
  schema: z.literal('rankflow.run/v1'),
  model: ModelSpec,
  dataset: DatasetSpec,
  method: MethodSpec,
  training: TrainingSpec,
  seed: z.number().int().nonnegative(),
  /** Hardware class the run needs; a worker's task queue serves one class. */
  device: z.enum(['cpu', 'cuda', 'auto']),
  /** Absent: the default procedure (`finetune`) with no options. */
  procedure: ProcedureSpec.optional(),
  /** Named input artifacts of upstream runs (`{model: {run, artifact: model}}`); absent: none. */
  inputs: z
    .record(z.string().regex(INPUT_NAME).meta({ title: 'an input name is lower-case letters, digits and _' }), InputRef)
    .optional(),
});
export type RunSpec = z.infer<typeof RunSpec>;

/** The spec file the runtime reads (`run --spec FILE`): a RunSpec plus, optionally, the run's id. */
export const RunSpecFile = RunSpec.extend({ run_id: RunIdString.optional() });
export type RunSpecFile = z.infer<typeof RunSpecFile>;

/** What a table groups by; derived from the spec by the planner and kept beside it. */
export const RunLabels = z.strictObject({
  model: z.string(),
  method: z.string(),
  rank: z.number().int().nullable(),
  dataset: z.string(),
  seed: z.number().int(),
  /** Human-readable summary of the non-default settings that distinguish this run's group (`lr=1e-3`). */
  setting: z.string(),
  tags: z.array(z.string()),
  /** The recipe stage the run belongs to (recipes with `stages` only). */
  stage: z.string().optional(),
});
export type RunLabels = z.infer<typeof RunLabels>;

export const PlannedRun = z.strictObject({
  /** `run-<hash of the canonical spec>` */
  id: RunIdString,
  spec: RunSpec,
  labels: RunLabels,
  /**
   * Trainable / total parameters, when the planner asked the runtime to count them. `estimated`: the method
   * chooses its ranks from the weights (LoRD `rank_rule: energy | ratio`), so this is the count at the rank cap,
   * not the trained model's; the result record has the real one (tables use it).
   */
  params: z
    .strictObject({
      trainable: z.number().int(),
      total: z.number().int(),
      estimated: z.literal(true).optional(),
      /** The task head's share of `trainable` (absent without a head). */
      head: z.number().int().optional(),
    })
    .nullable(),
});
export type PlannedRun = z.infer<typeof PlannedRun>;
