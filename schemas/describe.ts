/**
 * What `python -m rankflow_runtime describe` prints (the runtime's registry of methods, models and datasets),
 * and the committed snapshot of it, `schemas/methods.generated.json`, that the planner validates method
 * options against (so planning needs no Python). Objects are not strict: a newer runtime may add fields.
 */
import { z } from 'zod';

export const OptionSchema = z.object({
  type: z.enum(['number', 'integer', 'boolean', 'string', 'enum', 'list']),
  default: z.unknown(),
  help: z.string().default(''),
  choices: z.array(z.unknown()).optional(),
  min: z.number().optional(),
  max: z.number().optional(),
});
export type OptionSchema = z.infer<typeof OptionSchema>;

/** The method properties that may depend on option values. */
export const OptionProperties = z.object({
  /** the adapted model equals the base model at initialisation */
  init_is_identity: z.boolean(),
  /** ΔW can be folded into the base weights */
  mergeable: z.boolean(),
  /** `count` (shapes only) is the trained model's number; false when ranks come from the weights' values */
  count_is_exact: z.boolean().default(true),
});
export type OptionProperties = z.infer<typeof OptionProperties>;

/**
 * An option-dependent property: it applies when every option named in `when` has one of the listed values
 * (unnamed options may have any value); later rules override earlier ones.
 */
export const PropertyRule = z.object({
  when: z.record(z.string(), z.array(z.unknown()).min(1)),
  then: OptionProperties.partial(),
});
export type PropertyRule = z.infer<typeof PropertyRule>;

export const MethodDescription = z.object({
  paper: z.string(),
  needs_rank: z.boolean(),
  /** with the default options; `property_rules` says which option values change it */
  init_is_identity: z.boolean(),
  /** with the default options; `property_rules` says which option values change it */
  mergeable: z.boolean(),
  /** with the default options; `property_rules` says which option values change it */
  count_is_exact: z.boolean().default(true),
  property_rules: z.array(PropertyRule).default([]),
  lr_groups: z.array(z.string()),
  options: z.record(z.string(), OptionSchema),
});
export type MethodDescription = z.infer<typeof MethodDescription>;

/** A runtime procedure (`finetune`, `pretrain`, `compress`, `prune`, `recover`): what a run does with its model. */
export const ProcedureDescription = z.object({
  summary: z.string(),
  paper: z.string(),
  /** Whether it runs the training loop (uses the spec's training section). */
  trains: z.boolean(),
  /** The methods it accepts (null: any registered method). */
  methods: z.array(z.string()).nullable(),
  options: z.record(z.string(), OptionSchema),
  /** Named input artifacts it reads. */
  inputs: z.record(
    z.string(),
    z.object({ kind: z.enum(['model', 'adapter']), required: z.boolean(), help: z.string() }),
  ),
  /** Named artifacts it can write: name -> kind. */
  outputs: z.record(z.string(), z.enum(['model', 'adapter'])),
});
export type ProcedureDescription = z.infer<typeof ProcedureDescription>;

/** A metric of the runtime's catalogue: its direction (best checkpoint, bold in tables) and whether tables print it ×100. */
export const MetricDescription = z.object({
  direction: z.enum(['max', 'min']),
  /** A ratio in [0, 1] that papers print in percent. */
  ratio: z.boolean(),
  help: z.string().default(''),
});
export type MetricDescription = z.infer<typeof MetricDescription>;

/** The spec defaults of a dataset task that a recipe may override (image datasets: max_length is the resolution). */
export const DatasetDefaultsDescription = z.object({
  max_length: z.number().int().positive(),
  train_size: z.number().int().positive().nullable(),
  eval_size: z.number().int().positive().nullable(),
  eval_split: z.string(),
});
export type DatasetDefaultsDescription = z.infer<typeof DatasetDefaultsDescription>;

/** One task of a dataset family in `describe` (objects are loose: a newer runtime may add fields). */
export const DatasetTaskDescription = z.looseObject({
  model_task: z.string(),
  metrics: z.array(z.string()),
  default_metric: z.string(),
  /** Absent: not plannable from a recipe (no defaults). */
  defaults: DatasetDefaultsDescription.optional(),
  /** GLUE, or a VTAB-1k group. */
  benchmark: z.object({ name: z.enum(['glue', 'vtab']), group: z.string().nullable() }).optional(),
});
export type DatasetTaskDescription = z.infer<typeof DatasetTaskDescription>;

export const DatasetFamilyDescription = z.looseObject({
  tasks: z.array(z.string()),
  per_task: z.record(z.string(), DatasetTaskDescription).optional(),
  options: z.record(z.string(), OptionSchema).optional(),
  /** VTAB-1k: group -> tasks. */
  groups: z.record(z.string(), z.array(z.string())).optional(),
  /** Names that fix the evaluated split (`mnli-m` -> mnli on validation_matched). */
  named_splits: z.record(z.string(), z.object({ task: z.string(), eval_split: z.string() })).optional(),
});
export type DatasetFamilyDescription = z.infer<typeof DatasetFamilyDescription>;

export const RuntimeDescription = z.object({
  runtime: z.string().optional(),
  torch: z.string().optional(),
  methods: z.record(z.string(), MethodDescription),
  procedures: z.record(z.string(), ProcedureDescription).default({}),
  models: z.record(z.string(), z.unknown()).default({}),
  datasets: z.record(z.string(), DatasetFamilyDescription).default({}),
  /** The metric catalogue (rankflow_runtime/catalog.py). */
  metrics: z.record(z.string(), MetricDescription).default({}),
});
export type RuntimeDescription = z.infer<typeof RuntimeDescription>;

/** The committed snapshot: `describe` without the machine-dependent version fields. */
export const MethodsSnapshot = z.strictObject({
  generated_by: z.string(),
  methods: z.record(z.string(), MethodDescription),
  procedures: z.record(z.string(), ProcedureDescription),
  models: z.record(z.string(), z.unknown()),
  datasets: z.record(z.string(), DatasetFamilyDescription),
  metrics: z.record(z.string(), MetricDescription),
});
export type MethodsSnapshot = z.infer<typeof MethodsSnapshot>;
