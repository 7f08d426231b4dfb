/**
 * The recipe language: one YAML file that describes a whole comparison study. The planner
 * (`planning/planner.ts`) expands a validated Recipe into fully resolved RunSpecs (`schemas/runspec.ts`).
 *
 * A value written as a list where the run spec has one value is a sweep axis (a grid): `lr: [1e-4, 5e-4]`.
 * Shorthands: `model: tiny-encoder`, a dataset entry `glue/sst2` and a method entry `lora` stand for
 * `{name: ...}`; the loader expands them before validation (`normalizeShorthands`).
 * Every object is strict: an unknown key is an error, never silently ignored.
 */
import { z } from 'zod';
import { DatasetSpec, Task, TrainingSpec } from './runspec.js';

/** `T` or a non-empty list of `T` (a sweep axis). */
function axis<T extends z.ZodType>(t: T) {
  return z.union([t, z.array(t).min(1)]);
}

/**
 * The longest string any recipe field may hold (names, paths, tags, option values): a 1 MB tag copied into
 * 600 run labels made a 600 MB manifest that no JSON writer could build. Descriptions may be longer.
 */
export const MAX_FIELD_CHARS = 4096;
export const MAX_DESCRIPTION_CHARS = 65_536;
/** At most this many tags per recipe or entry (each is copied into the labels of every run). */
export const MAX_TAGS = 64;
const str = () => z.string().max(MAX_FIELD_CHARS, `at most ${MAX_FIELD_CHARS} characters`);

/** The longest string inside a JSON value (keys included), without recursion. */
function longestString(v: unknown): number {
  let max = 0;
  const stack: unknown[] = [v];
  while (stack.length) {
    const x = stack.pop();
    if (typeof x === 'string') max = Math.max(max, x.length);
    else if (x !== null && typeof x === 'object') {
      for (const [k, c] of Object.entries(x as object)) {
        max = Math.max(max, k.length);
        stack.push(c);
      }
    }
  }
  return max;
}
/** A free-form value (model config, options): any JSON, with no string longer than MAX_FIELD_CHARS. */
const freeValue = z
  .unknown()
  .refine((v) => longestString(v) <= MAX_FIELD_CHARS, `a string longer than ${MAX_FIELD_CHARS} characters`);
const tagList = z.array(str()).max(MAX_TAGS, `at most ${MAX_TAGS} tags`);

const posInt = z.number().int().positive();
const seedInt = z.number().int().nonnegative();
const nameList = z.union([str().min(1), z.array(str().min(1)).min(1)]);

const T = TrainingSpec.shape;

/**
 * Training settings; each field may be a list (a grid axis). Setting `max_steps` in a layer clears an
 * inherited `epochs` and vice versa (exactly one of the two ends up in the run spec).
 */
export const TrainingLayer = z.strictObject({
  optimizer: axis(T.optimizer).optional(),
  lr: axis(T.lr).optional(),
  /** Learning rates of the named parameter groups a method declares (e.g. DePT's `prompt`). */
  lr_groups: z.record(str(), axis(z.number().positive())).optional(),
  weight_decay: axis(T.weight_decay).optional(),
  schedule: axis(T.schedule).optional(),
  warmup_ratio: axis(T.warmup_ratio).optional(),
  max_steps: axis(posInt).optional(),
  epochs: axis(z.number().positive()).optional(),
  batch_size: axis(T.batch_size).optional(),
  eval_batch_size: axis(T.eval_batch_size).optional(),
  grad_accum: axis(T.grad_accum).optional(),
  max_grad_norm: axis(T.max_grad_norm).optional(),
  precision: axis(T.precision).optional(),
  eval_every: axis(T.eval_every).optional(),
  checkpoint_every: axis(T.checkpoint_every).optional(),
  log_every: axis(T.log_every).optional(),
  train_head: axis(T.train_head).optional(),
});
export type TrainingLayer = z.infer<typeof TrainingLayer>;
export const TRAINING_FIELDS = Object.keys(TrainingSpec.shape) as (keyof z.infer<typeof TrainingSpec>)[];

export const ModelEntry = z.strictObject({
  /** `tiny-encoder` | `tiny-vit` | `tiny-decoder`, a Hugging Face id (`FacebookAI/roberta-base`) or a local path. */
  name: str().min(1),
  /** Inferred: `builtin` for the built-in names, `hf` otherwise. */
  source: z.enum(['builtin', 'hf']).optional(),
  /** The task head; inferred from a built-in model or from the datasets when omitted. */
  task: Task.optional(),
  config: z.record(str(), freeValue).optional(),
  random_init: z.boolean().optional(),
  /** Allow a local/hub model folder's own Python code (`auto_map`); default false (a config error names this). */
  trust_remote_code: z.boolean().optional(),
});
export type ModelEntry = z.infer<typeof ModelEntry>;

/** Per-dataset settings (everything but the name); also the value type of `dataset_settings`. */
export const DatasetSettings = z.strictObject({
  max_length: posInt.optional(),
  train_size: posInt.nullable().optional(),
  eval_size: posInt.nullable().optional(),
  eval_split: str().min(1).optional(),
  /**
   * Evaluate these splits at every evaluation (`[validation, test]`): best checkpoint on `eval_split` (default:
   * the first listed), every split's metrics and curve in the result, for `table --select-on/--report`.
   */
  eval_splits: z.array(str().min(1)).min(1).optional(),
  metric: str().min(1).optional(),
  data_root: str().min(1).nullable().optional(),
  options: z.record(str(), freeValue).optional(),
  /** How the data is stored (`auto`: the first form found; `csv`, `tsv`, `jsonl`, `parquet`, `hf`, ...). */
  format: DatasetSpec.shape.format,
  /** Split -> file: your own data (`{train: train.csv, validation: dev.csv}`) or explicit Parquet files. */
  files: DatasetSpec.shape.files,
  /** Your own data: the text column, or two for a pair (`[premise, hypothesis]`). */
  text: z.union([str().min(1), z.array(str().min(1)).min(1).max(2)]).optional(),
  /** Your own data: the label column (classification or regression). */
  label: str().min(1).optional(),
  /** Your own data, causal LM: the prompt and target columns (loss on the target). */
  prompt: str().min(1).optional(),
  target: str().min(1).optional(),
  /** Your own classification data: the label set in id order (default: inferred from the training split). */
  labels: DatasetSpec.shape.labels,
  /** Your own labelled data: classification (default) or regression. */
  problem_type: DatasetSpec.shape.problem_type,
  /** Training overrides for runs on this dataset (lists are grid axes). */
  training: TrainingLayer.optional(),
});
export const DatasetEntry = DatasetSettings.extend({
  /** `glue/<task>`, `vtab/<task>`, `gsm8k`, `synthetic/<seq-cls|img-cls|causal-lm>`. */
  name: str().min(1),
});
export type DatasetEntry = z.infer<typeof DatasetEntry>;

/**
 * How budget matching varies a method: its rank (default), numeric option(s) set together to each of
 * `values` (NOLA: `{option: [num_basis_a, num_basis_b], values: [...]}`), or not at all.
 */
export const MatchBy = z.union([
  z.enum(['rank', 'none']),
  z.strictObject({
    option: z.union([str().min(1), z.array(str().min(1)).min(1)]),
    values: z.array(z.number()).min(1),
  }),
]);

export const MethodSettings = z.strictObject({
  /** Method options, validated against the method's schema from the runtime; a list is a grid axis. */
  options: z.record(str(), freeValue).optional(),
  /** Ranks for this method (replaces the recipe's `ranks`); under `budget`, the candidates to match from. */
  ranks: axis(posInt).optional(),
  /** Module-name patterns to adapt (empty: the model's defaults for the method). */
  targets: z.array(str().min(1)).optional(),
  /** Training overrides for this method's runs (lists are grid axes). */
  training: TrainingLayer.optional(),
  /** Budget matching knob for this method (see `budget`). */
  match_by: MatchBy.optional(),
  /** Shown in tables to tell two entries of the same method apart (`lora-rs`). */
  label: str().min(1).optional(),
  tags: tagList.optional(),
});
export const MethodEntry = MethodSettings.extend({
  /** A method registered in the runtime (`lora`, `full`, `linear-probe`, `vera`, `randlora`, ...). */
  name: str().min(1),
});
export type MethodEntry = z.infer<typeof MethodEntry>;

/** Settings applied to the runs a `when` condition selects, after dataset and method settings. */
export const Override = z.strictObject({
  when: z.strictObject({
    method: nameList.optional(),
    /** Dataset names; `*` is a wildcard (`glue/*`). */
    dataset: nameList.optional(),
    rank: axis(posInt).optional(),
  }),
  training: TrainingLayer.optional(),
  options: z.record(str(), freeValue).optional(),
  targets: z.array(str().min(1)).optional(),
});
export type Override = z.infer<typeof Override>;

/** Extra runs outside the grid: a method entry restricted to some datasets / ranks / seeds. */
export const IncludeRule = MethodEntry.omit({ match_by: true }).extend({
  datasets: nameList.optional(),
  seeds: axis(seedInt).optional(),
});
export type IncludeRule = z.infer<typeof IncludeRule>;

/** Runs to drop from the grid: every given field must match (lists mean "any of"). */
export const ExcludeRule = z.strictObject({
  method: nameList.optional(),
  /** A method entry's label. */
  label: nameList.optional(),
  dataset: nameList.optional(),
  rank: axis(posInt).optional(),
  seed: axis(seedInt).optional(),
  training: z.record(str(), freeValue).optional(),
  options: z.record(str(), freeValue).optional(),
});
export type ExcludeRule = z.infer<typeof ExcludeRule>;

/** Parameter-budget matching: every other method gets the setting whose trainable count is closest to `match` at `rank`. */
export const Budget = z.strictObject({
  match: str().min(1),
  rank: axis(posInt),
  /** Candidate ranks for methods matched by rank that give no `ranks` of their own. */
  candidates: z.array(posInt).min(1).optional(),
});
export type Budget = z.infer<typeof Budget>;

/**
 * One stage of a recipe with `stages`: its runs execute a runtime procedure (`describe` lists them) and may read
 * the artifacts (models, adapters) of an earlier stage's runs. A stage plans like a recipe of its own: the
 * recipe's fields, with the stage's `datasets`, `methods`, `ranks`, `seeds` and `training` (merged) on top;
 * `budget`, `zip`, `overrides`, `include` and `exclude` are the stage's own when it names its own `methods`,
 * else the recipe's. See recipes/README.md.
 */
export const STAGE_NAME = /^[a-z][a-z0-9_-]*$/;
export const StageEntry = z.strictObject({
  /** The runtime procedure (`finetune`, `pretrain`, `compress`, `prune`, `recover`); default `finetune`. */
  procedure: str().min(1).optional(),
  /** Procedure options, validated against the procedure's schema from the runtime; a list is a grid axis. */
  options: z.record(str(), freeValue).optional(),
  /**
   * The earlier stage(s) whose artifacts this stage's runs read: a stage name (the procedure's first input,
   * e.g. `model`), or `{input: stage}` for several (`{adapter: train, pruned: prune}`). The first entry's stage
   * drives: one run per (its run × this stage's grid point); the others are its ancestors, or stages beside it
   * whose runs of the same seed read the same runs (`{content: content, style: style, model: base}`).
   */
  from: z.union([str().min(1), z.record(str(), str().min(1))]).optional(),
  /** Which runs of the driving stage a grid point pairs with: all of them (default) or the one of its seed. */
  match: z.enum(['all', 'seed']).optional(),
  datasets: z.array(DatasetEntry).min(1).optional(),
  methods: z.array(MethodEntry).min(1).optional(),
  ranks: axis(posInt).optional(),
  seeds: axis(seedInt).optional(),
  training: TrainingLayer.optional(),
  zip: z.array(z.record(str(), z.array(freeValue).min(1))).optional(),
  overrides: z.array(Override).optional(),
  include: z.array(IncludeRule).optional(),
  exclude: z.array(ExcludeRule).optional(),
  budget: Budget.optional(),
});
export type StageEntry = z.infer<typeof StageEntry>;

export const Recipe = z.strictObject({
  /** Name of the study (part of the sweep id); defaults to the file name. */
  name: str().regex(/^[A-Za-z0-9][A-Za-z0-9._-]*$/, 'letters, digits, `.`, `_` and `-`'),
  description: z.string().max(MAX_DESCRIPTION_CHARS, `at most ${MAX_DESCRIPTION_CHARS} characters`).optional(),
  /** Recipe file(s) this one builds on, relative to this file; later ones and this file win. */
  extends: nameList.optional(),
  /** A built-in preset (`planning/presets.ts`) applied beneath this recipe. */
  preset: str().min(1).optional(),
  model: ModelEntry,
  datasets: z.array(DatasetEntry).min(1),
  /** Settings per dataset name, used whenever that dataset is in `datasets` (presets use this). */
  dataset_settings: z.record(str(), DatasetSettings).optional(),
  methods: z.array(MethodEntry).min(1),
  /** Settings per method name, beneath the method entries' own settings (presets use this). */
  method_settings: z.record(str(), MethodSettings).optional(),
  ranks: axis(posInt).optional(),
  seeds: axis(seedInt).optional(),
  training: TrainingLayer.optional(),
  /** Groups of training fields (or `rank`) that vary together: `{lr: [1e-4, 3e-4], warmup_ratio: [0.06, 0.1]}`. */
  zip: z.array(z.record(str(), z.array(freeValue).min(1))).optional(),
  overrides: z.array(Override).optional(),
  include: z.array(IncludeRule).optional(),
  exclude: z.array(ExcludeRule).optional(),
  budget: Budget.optional(),
  /** Refuse to plan more runs than this (default 2000). */
  max_runs: posInt.optional(),
  device: z.enum(['cpu', 'cuda', 'auto']).optional(),
  /** Temporal task queue of the workers that should run this sweep (not part of a run's identity). */
  queue: str().min(1).optional(),
  /** Data root for every dataset (null: `$RANKFLOW_DATA`); part of the run spec, so prefer the environment. */
  data_root: str().min(1).nullable().optional(),
  /** `eval_splits` of every dataset that sets none itself (see DatasetSettings.eval_splits). */
  eval_splits: z.array(str().min(1)).min(1).optional(),
  tags: tagList.optional(),
  /**
   * Runs that build on runs: named stages in dependency order of `from` (a stage's runs start once the runs
   * they read from have succeeded). The recipe's own `methods` and `datasets` are the defaults of every stage.
   */
  stages: z.record(str().regex(STAGE_NAME, 'lower-case letters, digits, `_` and `-`'), StageEntry).optional(),
});
export type Recipe = z.infer<typeof Recipe>;

export const DEFAULT_MAX_RUNS = 2000;

/**
 * Expand the shorthands (`model: name`, dataset and method entries given as strings) in place of their
 * long forms, leaving everything else as written. Works on any partial recipe (a layer of `extends`).
 */
export function normalizeShorthands(raw: unknown): unknown {
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) return raw;
  const r = { ...(raw as Record<string, unknown>) };
  if (typeof r.model === 'string') r.model = { name: r.model };
  for (const key of ['datasets', 'methods'] as const) {
    const v = r[key];
    if (Array.isArray(v)) r[key] = v.map((e) => (typeof e === 'string' ? { name: e } : e));
  }
  if (Array.isArray(r.include)) {
    r.include = r.include.map((e) => (typeof e === 'string' ? { name: e } : e));
  }
  if (r.stages !== null && typeof r.stages === 'object' && !Array.isArray(r.stages)) {
    const stages: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(r.stages as Record<string, unknown>)) stages[k] = normalizeShorthands(v);
    r.stages = stages;
  }
  return r;
}
