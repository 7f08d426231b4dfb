/* eslint-disable max-lines-per-function, complexity -- a frozen copy of the old code, for the benchmark only */
// The planner as it was before planRecipe was split into phases (commit 01a5fc4), kept only so
// bench/plan_bench.ts can time it side by side with planning/; not used by rankflow.
/**
 * The sweep planner: a validated Recipe -> the exact, deduplicated list of fully resolved runs.
 *
 * Pure and deterministic (no I/O, no clock, no Node built-ins), so workflows can import it. Method option
 * schemas come in as data (the committed `describe` snapshot); trainable-parameter counts, which only the
 * runtime can compute, come in as a table keyed by `countKey(spec)`. When budget matching needs counts the
 * table lacks, the result lists them in `countRequests` (and no runs): the caller counts them with the
 * runtime and plans again.
 *
 * Expansion order (and so the order of `runs`): method entries, then `include` rules; within each, datasets;
 * ranks (or budget levels); `zip` positions; training grid axes (in TrainingSpec field order); option grid
 * axes; seeds. A run's id is `run-` + SHA-256 of the canonical JSON of its spec, so a run met twice (from two
 * entries, or from two recipes) is one run.
 */
import type { MethodDescription, OptionSchema } from '../../schemas/describe.js';
import type { z } from 'zod';
import { TrainingSpec as TrainingSpecSchema } from '../../schemas/runspec.js';
import {
  DEFAULT_MAX_RUNS,
  TRAINING_FIELDS,
  type Budget,
  type DatasetEntry,
  type ExcludeRule,
  type MethodEntry,
  type Override,
  type Recipe,
  type TrainingLayer,
} from '../../schemas/recipe.js';
import type { DatasetSpec, MethodSpec, ModelSpec, PlannedRun, RunLabels, RunSpec } from '../../schemas/runspec.js';
type TrainingSpec = z.infer<typeof TrainingSpecSchema>;
import { canonicalJson, hashValue } from '../../planning/canonical.js';
import {
  BUILTIN_MODELS,
  datasetDefaults as catalogDefaults,
  datasetLabel,
  isOwnData,
  knownDatasets,
  MNLI_SPLIT_NAMES,
  ownDataDefaults,
} from '../../planning/catalog.js';
import { formatPath, IssueList, type FieldPath, type PlanIssue } from '../../planning/issues.js';
import { Sha256, type IncrementalSha256 } from '../../planning/hash.js';
import { suggestHint } from '../../planning/suggest.js';
import { describeValue, zodIssues } from '../../planning/validate.js';

export const SPEC_SCHEMA = 'rankflow.run/v1' as const;
/** Ranks tried by budget matching for a method matched by rank that names no candidates. */
export const DEFAULT_RANK_LADDER = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024];

export interface CountResult {
  trainable: number;
  total: number;
  /**
   * Trainable count of the final pattern, for methods that move rank during training (AdaLoRA's kept
   * triplets, IncreLoRA/TriAdaptLoRA after growth, DiffoRA's selection); absent or equal to `trainable`
   * otherwise. Budget matching compares this one.
   */
  final?: number;
  /**
   * False: an estimate, because the method chooses ranks from the weights (LoRD `rank_rule: energy | ratio`);
   * the trained model's count is in the run's result record. Absent: exact.
   */
  exact?: boolean;
  /** The task head's share of `trainable` (absent without a head). */
  head?: number;
}
/** A planned run's `params` from its count (marked estimated when the count is not exact). */
const paramsOf = (c: CountResult): NonNullable<PlannedRun['params']> => ({
  trainable: c.trainable,
  total: c.total,
  ...(c.exact === false ? { estimated: true as const } : {}),
  ...(c.head !== undefined ? { head: c.head } : {}),
});
/**
 * Budget matching compares exact counts only: a method that chooses its ranks from the weights (LoRD
 * `rank_rule: energy | ratio`) has an estimate. Adds the issue and returns true when the reference (first) or a
 * candidate count is one.
 */
function refuseEstimated(
  issues: IssueList,
  refName: string,
  mm: { path: FieldPath; name: string },
  counts: (CountResult | null | undefined)[],
): boolean {
  const at = counts.findIndex((c) => c?.exact === false);
  if (at < 0) return false;
  issues.add(
    at === 0 ? ['budget', 'match'] : [...mm.path, 'name'],
    `budget matching needs exact counts, but \`${at === 0 ? refName : mm.name}\` chooses its ranks from the ` +
      'weights here (its count is only an estimate at the rank cap)',
    'use `options: {rank_rule: fixed}` for a budget-matched LoRD, or leave it out of the budget',
  );
  return true;
}
/** The count budget matching compares: the final pattern's. */
const budgetCount = (c: CountResult): number => c.final ?? c.trainable;
/** Counts by `countKey(spec)`; null marks a spec the runtime could not count (e.g. a rank too large). */
export type CountTable = Record<string, CountResult | null>;

export interface PlanOptions {
  /** Method registry: `methods` of `describe` (or of `schemas/methods.generated.json`). */
  methods: Record<string, MethodDescription>;
  counts?: CountTable;
  /** Overrides the recipe's `max_runs`. */
  maxRuns?: number;
  /** Dataset families of `describe` (the snapshot's `datasets`): tasks, metrics, option schemas. */
  datasets?: Record<string, unknown>;
  /** Another SHA-256 implementation for the run ids (bench/plan_bench.ts compares two); default planning/hash.ts. */
  sha256?: () => IncrementalSha256;
}

export interface PlanResult {
  /** The runs (empty when there are issues or when counts are missing). */
  runs: PlannedRun[];
  issues: PlanIssue[];
  /** Non-fatal remarks (an exclude rule that matches nothing, an override that selects nothing). */
  warnings: PlanIssue[];
  /** Specs budget matching needs counted (deduplicated by count key); non-empty only when counts were missing. */
  countRequests: RunSpec[];
  /** Number of grid combinations before exclude rules and deduplication. */
  gridSize: number;
}

/** The optional DatasetSpec fields saying where and how data is read (each only when set: stable run ids). */
function dataSource(e: Partial<DatasetEntry>, st: Partial<DatasetEntry>): Partial<DatasetSpec> {
  const pick = <K extends keyof DatasetEntry>(k: K): DatasetEntry[K] | undefined => (e[k] !== undefined ? e[k] : st[k]);
  const out: Partial<DatasetSpec> = {};
  const format = pick('format');
  if (format !== undefined && format !== 'auto') out.format = format;
  const files = pick('files');
  if (files !== undefined) out.files = files;
  const columns: NonNullable<DatasetSpec['columns']> = {};
  for (const k of ['text', 'label', 'prompt', 'target'] as const) {
    const v = pick(k);
    if (v !== undefined) (columns as Record<string, unknown>)[k] = v;
  }
  if (Object.keys(columns).length) out.columns = columns;
  const labels = pick('labels');
  if (labels !== undefined) out.labels = labels;
  const problem = pick('problem_type');
  if (problem === 'regression') out.problem_type = problem;
  return out;
}

/** A dataset's `eval_splits` (entry, then dataset_settings, then the recipe's), deduplicated; undefined: unset. */
function evalSplitsOf(e: Partial<DatasetEntry>, st: Partial<DatasetEntry>, recipe: string[] | undefined) {
  const splits = e.eval_splits ?? st.eval_splits ?? recipe;
  return splits ? [...new Set(splits)] : undefined;
}

/** Where an `eval_splits` problem is reported: the field that set it. */
function splitPath(e: Partial<DatasetEntry>, st: Partial<DatasetEntry>, path: FieldPath, name: string): FieldPath {
  if (e.eval_splits !== undefined || e.eval_split !== undefined) return [...path, 'eval_splits'];
  if (st.eval_splits !== undefined || st.eval_split !== undefined) return ['dataset_settings', name, 'eval_splits'];
  return ['eval_splits'];
}

/**
 * The best checkpoint is chosen on `eval_split`: it must be one of `eval_splits`, and never `test` while another
 * split is evaluated (hyperparameters and checkpoints are selected on validation, reported on test).
 */
function evalSplitsIssue(spec: DatasetSpec): { message: string; hint: string } | null {
  const splits = spec.eval_splits;
  if (!splits) return null;
  if (!splits.includes(spec.eval_split))
    return {
      message: `eval_split \`${spec.eval_split}\` (the best-checkpoint split) is not among eval_splits [${splits.join(', ')}]`,
      hint: `add ${spec.eval_split} to eval_splits, or remove eval_split (default: the first of eval_splits)`,
    };
  if (spec.eval_split === 'test' && splits.length > 1)
    return {
      message: `eval_split is \`test\` while eval_splits also has ${splits.filter((x) => x !== 'test').join(', ')}: the best checkpoint would be chosen on the reported split`,
      hint: 'list the validation split first in eval_splits (or set eval_split: validation)',
    };
  return null;
}

/**
 * The key of the parameter count of a spec: what the count depends on (model architecture, dataset shape,
 * method, head). Whether weights are loaded (`random_init`) does not change a count.
 */
export function countKey(spec: RunSpec): string {
  return hashValue(
    {
      model: { ...spec.model, random_init: true },
      dataset: {
        name: spec.dataset.name,
        max_length: spec.dataset.max_length,
        options: spec.dataset.options,
        // your own data: the label count depends on the files and the columns
        ...(spec.dataset.files
          ? {
              files: spec.dataset.files,
              columns: spec.dataset.columns ?? {},
              labels: spec.dataset.labels ?? null,
              problem_type: spec.dataset.problem_type ?? null,
              data_root: spec.dataset.data_root,
            }
          : {}),
      },
      method: spec.method,
      train_head: spec.training.train_head,
      // what a run does changes its count (compress trains nothing); absent for plain runs: keys unchanged
      ...(spec.procedure ? { procedure: spec.procedure } : {}),
    },
    24,
  );
}

/** The spec to send to `count`: the architecture only (random init), since counting needs no weights. */
export function countableSpec(spec: RunSpec): RunSpec {
  return spec.model.random_init ? spec : { ...spec, model: { ...spec.model, random_init: true } };
}

/** The spec whose `total` count is the size of the full model a run adapts (for "% of full model"). */
export function fullModelSpec(spec: RunSpec): RunSpec {
  const { procedure: _procedure, inputs: _inputs, ...plain } = spec;
  return {
    ...plain,
    method: { name: 'full', rank: null, options: {}, targets: [] },
    training: { ...spec.training, train_head: true },
  };
}

/** `run-` + 32 hex characters of SHA-256 over the canonical JSON of the spec. */
export function runId(spec: RunSpec): string {
  return 'run-' + hashValue(spec, 32);
}

/** The sweep id: a hash of the recipe name and the sorted run ids. */
export function sweepId(recipeName: string, runIds: readonly string[]): string {
  const h = new Sha256().update(recipeName + '\n');
  for (const id of [...runIds].sort()) h.update(id + '\n');
  return 'sweep-' + h.hex().slice(0, 24);
}

// ---------------------------------------------------------------------------------------------------------
// Resolution helpers
// ---------------------------------------------------------------------------------------------------------

type Task = ModelSpec['task'];

interface Layer {
  path: FieldPath;
  data: TrainingLayer;
}

interface ResolvedDataset {
  name: string;
  /** What tables group by: the name, plus the evaluated split when it is not the default (`glue/mnli-mm`). */
  label: string;
  path: FieldPath;
  spec: DatasetSpec;
  layers: Layer[];
}

interface OptionAxis {
  key: string;
  values: unknown[];
}

interface ResolvedOptions {
  fixed: Record<string, unknown>;
  axes: OptionAxis[];
}

interface ResolvedMethod {
  path: FieldPath;
  name: string;
  label: string | null;
  desc: MethodDescription;
  options: ResolvedOptions;
  ranks: number[] | null;
  targets: string[];
  layers: Layer[];
  matchBy: MethodEntry['match_by'];
  tags: string[];
  /** include rules: restrict datasets / seeds */
  datasets: string[] | null;
  seeds: number[] | null;
  isInclude: boolean;
}

interface ZipCombo {
  training: TrainingLayer;
  rank: number | undefined;
}

function asList<T>(v: T | T[] | undefined): T[] | undefined {
  if (v === undefined) return undefined;
  return Array.isArray(v) ? v : [v];
}

function uniq<T>(xs: T[]): T[] {
  const seen = new Set<string>();
  const out: T[] = [];
  for (const x of xs) {
    const k = JSON.stringify(x);
    if (!seen.has(k)) {
      seen.add(k);
      out.push(x);
    }
  }
  return out;
}

function globMatch(pattern: string, name: string): boolean {
  if (!pattern.includes('*')) return pattern === name;
  const re = new RegExp(
    '^' +
      pattern
        .split('*')
        .map((p) => p.replace(/[.+?^${}()|[\]\\]/g, '\\$&'))
        .join('.*') +
      '$',
  );
  return re.test(name);
}

function fmtValue(v: unknown): string {
  if (typeof v === 'number') {
    if (v !== 0 && Math.abs(v) < 1e-3)
      return v
        .toExponential()
        .replace('e-', 'e-')
        .replace(/\.?0+e/, 'e');
    return String(v);
  }
  if (Array.isArray(v)) return v.map(fmtValue).join('+');
  if (v === null) return 'none';
  if (typeof v === 'object') return canonicalJson(v);
  return String(v);
}

/** Check one method option value against its schema; returns the normalised value or an error message. */
function checkOption(
  s: OptionSchema,
  v: unknown,
): { ok: true; value: unknown } | { ok: false; message: string; hint?: string } {
  if (v === null && s.default === null) return { ok: true, value: null }; // "use the method's own default"
  const bad = (expected: string) => ({
    ok: false as const,
    message: `expected ${expected}, got ${describeValue(v)}`,
    hint: s.help ? `${s.help} (default ${fmtValue(s.default)})` : undefined,
  });
  switch (s.type) {
    case 'boolean':
      if (typeof v !== 'boolean') return bad('true or false');
      break;
    case 'integer':
      if (typeof v !== 'number' || !Number.isInteger(v)) return bad('an integer');
      break;
    case 'number':
      if (typeof v !== 'number' || !Number.isFinite(v)) return bad('a number');
      break;
    case 'string':
      if (typeof v !== 'string') return bad('a string');
      break;
    case 'list':
      if (!Array.isArray(v)) return bad('a list');
      break;
    case 'enum': {
      const choices = s.choices ?? [];
      if (!choices.some((c) => c === v)) {
        const names = choices.map(String);
        return {
          ok: false,
          message: `expected one of ${names.map((c) => `\`${c}\``).join(', ')}, got ${describeValue(v)}`,
          hint: typeof v === 'string' ? suggestHint(v, names, 'values') : undefined,
        };
      }
      break;
    }
  }
  if (typeof v === 'number') {
    if (s.min !== undefined && v < s.min)
      return { ok: false, message: `expected a value >= ${s.min}, got ${v}`, hint: s.help };
    if (s.max !== undefined && v > s.max)
      return { ok: false, message: `expected a value <= ${s.max}, got ${v}`, hint: s.help };
  }
  return { ok: true, value: v };
}

/**
 * Validate a method's options (values may be lists = grid axes; for list-typed options a list of lists is
 * the grid). Unknown options are errors with a "did you mean".
 */
function resolveOptions(
  method: string,
  desc: MethodDescription,
  raw: Record<string, unknown> | undefined,
  path: FieldPath,
  issues: IssueList,
  withDefaults: boolean,
): ResolvedOptions {
  const fixed: Record<string, unknown> = {};
  const axes: OptionAxis[] = [];
  if (withDefaults) {
    // Options whose default is null mean "computed by the method" (e.g. RandLoRA's α = 20·r): they are left
    // out of the spec (the runtime refuses an explicit null), everything else is written out.
    for (const [k, s] of Object.entries(desc.options)) if (s.default !== null) fixed[k] = s.default;
  }
  for (const [k, v] of Object.entries(raw ?? {})) {
    const s = desc.options[k];
    if (!s) {
      const known = Object.keys(desc.options);
      issues.add(
        [...path, k],
        `unknown option \`${k}\` for method \`${method}\``,
        known.length ? suggestHint(k, known, `options of ${method}`) : `\`${method}\` has no options`,
      );
      continue;
    }
    const isGrid = Array.isArray(v) && (s.type !== 'list' || (v.length > 0 && v.every((e) => Array.isArray(e))));
    const values = isGrid ? (v as unknown[]) : [v];
    if (isGrid && values.length === 0) {
      issues.add([...path, k], 'expected a value or a non-empty list of values, got an empty list');
      continue;
    }
    const good: unknown[] = [];
    values.forEach((val, i) => {
      const r = checkOption(s, val);
      if (r.ok) good.push(r.value);
      else issues.add(isGrid ? [...path, k, i] : [...path, k], r.message, r.hint);
    });
    if (good.length !== values.length) continue;
    if (isGrid) {
      delete fixed[k];
      axes.push({ key: k, values: uniq(good) });
    } else {
      fixed[k] = good[0];
    }
  }
  return { fixed, axes };
}

/** Merge training layers into one value spec (field -> value or list of values). */
function mergeLayers(layers: readonly (TrainingLayer | undefined)[]): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const l of layers) {
    if (!l) continue;
    for (const [k, v] of Object.entries(l)) {
      if (v === undefined) continue;
      if (k === 'lr_groups') {
        out.lr_groups = { ...((out.lr_groups as Record<string, unknown>) ?? {}), ...(v as Record<string, unknown>) };
      } else {
        out[k] = v;
      }
    }
    if (l.max_steps !== undefined && l.epochs === undefined) delete out.epochs;
    if (l.epochs !== undefined && l.max_steps === undefined) delete out.max_steps;
  }
  return out;
}

function defaultTraining(task: Task): TrainingLayer {
  return {
    optimizer: 'adamw',
    lr: 1e-4,
    weight_decay: 0,
    schedule: 'linear',
    warmup_ratio: 0,
    epochs: 3,
    batch_size: 16,
    grad_accum: 1,
    max_grad_norm: 1,
    precision: 'fp32',
    eval_every: null,
    checkpoint_every: null,
    log_every: 10,
    train_head: task !== 'causal-lm',
  };
}

/** Cartesian product of axes, calling `f` with one value per axis (last axis fastest). */
function product<T>(axes: readonly (readonly T[])[], f: (pick: T[]) => void): void {
  const n = axes.length;
  if (n === 0) {
    f([]);
    return;
  }
  if (axes.some((a) => a.length === 0)) return;
  const idx = new Array<number>(n).fill(0);
  const pick = axes.map((a) => a[0]!);
  for (;;) {
    f(pick.slice());
    let i = n - 1;
    while (i >= 0) {
      idx[i]!++;
      if (idx[i]! < axes[i]!.length) {
        pick[i] = axes[i]![idx[i]!]!;
        break;
      }
      idx[i] = 0;
      pick[i] = axes[i]![0]!;
      i--;
    }
    if (i < 0) return;
  }
}

// ---------------------------------------------------------------------------------------------------------
// The planner
// ---------------------------------------------------------------------------------------------------------

interface RunMeta {
  entry: ResolvedMethod;
  budgetTag: string | null;
}

class TooManyRuns extends Error {}
/** Grid combinations past which a plan over max_runs is refused without expanding it. */
const GRID_LIMIT = 1_000_000;
/** Training grids up to this size keep their built specs for the next option pick. */
const TRAINING_MEMO_LIMIT = 65_536;

export function planRecipe(recipe: Recipe, opts: PlanOptions): PlanResult {
  const issues = new IssueList();
  const warnings = new IssueList();
  const registry = opts.methods;
  const methodNames = Object.keys(registry);
  const maxRuns = opts.maxRuns ?? recipe.max_runs ?? DEFAULT_MAX_RUNS;
  // A dataset's defaults: a benchmark's from the catalogue, your own data's from its column mapping (the entry's
  // fields, else its dataset_settings').
  const datasetDefaults = (name: string, entry?: Partial<DatasetEntry>) => {
    const own = { ...(recipe.dataset_settings?.[name] ?? {}), ...(entry ?? {}) };
    if (isOwnData(name, own)) return ownDataDefaults(own, opts.datasets);
    return catalogDefaults(name, opts.datasets);
  };
  const ALL_DATASETS = knownDatasets(opts.datasets);
  const empty = (): PlanResult => ({
    runs: [],
    issues: issues.items,
    warnings: warnings.items,
    countRequests: [],
    gridSize: 0,
  });

  // ---- model -------------------------------------------------------------------------------------
  const m = recipe.model;
  const builtin = BUILTIN_MODELS[m.name];
  const source = m.source ?? (builtin ? 'builtin' : 'hf');
  let task: Task | undefined = m.task;
  if (source === 'builtin') {
    const heads = builtin ? [builtin.task, ...(builtin.otherTasks ?? [])] : [];
    if (!builtin) {
      issues.add(
        ['model', 'name'],
        `unknown built-in model \`${m.name}\``,
        suggestHint(m.name, Object.keys(BUILTIN_MODELS), 'built-in models'),
      );
    } else if (task !== undefined && !heads.includes(task)) {
      issues.add(
        ['model', 'task'],
        `\`${m.name}\` has a ${heads.join(' or ')} head, not ${task}`,
        `remove \`task\` or set it to ${builtin.task}`,
      );
    } else if (task === undefined) {
      // a built-in with several heads (the decoder also classifies) takes the one its datasets need
      const wanted = new Set(
        recipe.datasets.map((d) => datasetDefaults(d.name, d)?.task).filter((t) => t !== undefined),
      );
      const only = wanted.size === 1 ? [...wanted][0]! : undefined;
      task = only !== undefined && heads.includes(only) ? only : builtin.task;
    }
  } else if (builtin) {
    issues.add(['model', 'source'], `\`${m.name}\` is a built-in model, not a Hugging Face one`, 'remove `source: hf`');
  } else if (task === undefined) {
    const tasks = new Set(recipe.datasets.map((d) => datasetDefaults(d.name, d)?.task).filter((t) => t !== undefined));
    if (tasks.size === 1) task = [...tasks][0];
    else
      issues.add(
        ['model', 'task'],
        `missing the task head of Hugging Face model \`${m.name}\``,
        'add `task: seq-cls`, `img-cls` or `causal-lm`',
      );
  }
  const model: ModelSpec = {
    name: m.name,
    source,
    task: task ?? 'seq-cls',
    config: m.config ?? {},
    random_init: m.random_init ?? false,
    ...(m.trust_remote_code ? { trust_remote_code: true } : {}),
  };

  // ---- training layers: shape checks shared by every layer ---------------------------------------
  const declaredGroups = new Set<string>();
  const checkLayer = (layer: TrainingLayer | undefined, path: FieldPath): Layer[] => {
    if (!layer) return [];
    if (layer.max_steps !== undefined && layer.epochs !== undefined) {
      issues.add(
        [...path, 'epochs'],
        'both `max_steps` and `epochs` are set',
        'keep one: a run trains for a number of steps or of epochs',
      );
    }
    return [{ path, data: layer }];
  };
  const recipeLayers = checkLayer(recipe.training, ['training']);

  // ---- datasets ----------------------------------------------------------------------------------
  for (const [name, _s] of Object.entries(recipe.dataset_settings ?? {})) {
    if (!datasetDefaults(name)) {
      issues.add(
        ['dataset_settings', name],
        `unknown dataset \`${name}\``,
        suggestHint(name, ALL_DATASETS, 'datasets'),
      );
    }
  }
  const resolveDataset = (
    entry: DatasetEntry | { name: string },
    path: FieldPath,
    namePath: FieldPath,
  ): ResolvedDataset | null => {
    const defs = datasetDefaults(entry.name, entry);
    if (!defs) {
      issues.add(namePath, `unknown dataset \`${entry.name}\``, suggestHint(entry.name, ALL_DATASETS, 'datasets'));
      return null;
    }
    if (task !== undefined && defs.task !== task) {
      issues.add(
        namePath,
        `dataset \`${entry.name}\` needs a ${defs.task} model, but \`${model.name}\` is ${task}`,
        'use a model with the matching head, or a separate recipe per task',
      );
    }
    const st = recipe.dataset_settings?.[entry.name] ?? {};
    const e = entry as DatasetEntry;
    const metric = e.metric ?? st.metric ?? defs.metric;
    const splits = evalSplitsOf(e, st, recipe.eval_splits);
    if (!defs.metrics.includes(metric)) {
      const p = e.metric !== undefined ? [...path, 'metric'] : ['dataset_settings', entry.name, 'metric'];
      issues.add(
        p,
        `\`${entry.name}\` has no metric \`${metric}\``,
        suggestHint(metric, defs.metrics, `metrics of ${entry.name}`),
      );
    }
    const spec: DatasetSpec = {
      name: entry.name,
      data_root:
        e.data_root !== undefined
          ? e.data_root
          : st.data_root !== undefined
            ? st.data_root
            : (recipe.data_root ?? null),
      max_length: e.max_length ?? st.max_length ?? defs.max_length,
      train_size:
        e.train_size !== undefined ? e.train_size : st.train_size !== undefined ? st.train_size : defs.train_size,
      eval_size: e.eval_size !== undefined ? e.eval_size : st.eval_size !== undefined ? st.eval_size : defs.eval_size,
      eval_split: e.eval_split ?? st.eval_split ?? splits?.[0] ?? defs.eval_split,
      ...(splits ? { eval_splits: splits } : {}),
      metric,
      options: { ...(st.options ?? {}), ...(e.options ?? {}) },
      ...dataSource(e, st),
    };
    if (defs.options) {
      const filled: Record<string, unknown> = {};
      for (const [k, sch] of Object.entries(defs.options)) if (sch.default !== null) filled[k] = sch.default;
      for (const [k, v] of Object.entries(spec.options)) {
        const p =
          e.options && k in e.options ? [...path, 'options', k] : ['dataset_settings', entry.name, 'options', k];
        const sch = defs.options[k];
        if (!sch) {
          issues.add(
            p,
            `unknown option \`${k}\` for dataset \`${entry.name}\``,
            suggestHint(k, Object.keys(defs.options), `options of ${entry.name}`),
          );
          continue;
        }
        const r = checkOption(sch, v);
        if (!r.ok) issues.add(p, r.message, r.hint);
        else if (r.value === null) delete filled[k];
        else filled[k] = r.value;
      }
      spec.options = Object.fromEntries(Object.entries(filled).sort(([a], [b]) => (a < b ? -1 : 1)));
    }
    const splitIssue = evalSplitsIssue(spec);
    if (splitIssue) issues.add(splitPath(e, st, path, entry.name), splitIssue.message, splitIssue.hint);
    const named = MNLI_SPLIT_NAMES[entry.name];
    if (named && spec.eval_split !== named) {
      const p = e.eval_split !== undefined ? [...path, 'eval_split'] : ['dataset_settings', entry.name, 'eval_split'];
      issues.add(
        p,
        `\`${entry.name}\` evaluates ${named}, not ${spec.eval_split}`,
        `remove eval_split, or use glue/mnli with eval_split: ${spec.eval_split}`,
      );
    }
    return {
      name: entry.name,
      label: datasetLabel(entry.name, spec.eval_split, defs.eval_split),
      path,
      spec,
      layers: [
        ...checkLayer(st.training, ['dataset_settings', entry.name, 'training']),
        ...checkLayer(e.training, [...path, 'training']),
      ],
    };
  };
  const datasets: ResolvedDataset[] = [];
  recipe.datasets.forEach((d, i) => {
    const r = resolveDataset(d, ['datasets', i], ['datasets', i, 'name']);
    if (r) datasets.push(r);
  });
  const datasetByName = new Map<string, ResolvedDataset>();
  for (const d of datasets) if (!datasetByName.has(d.name)) datasetByName.set(d.name, d);

  // ---- methods -----------------------------------------------------------------------------------
  for (const name of Object.keys(recipe.method_settings ?? {})) {
    if (!registry[name])
      issues.add(['method_settings', name], `unknown method \`${name}\``, suggestHint(name, methodNames, 'methods'));
  }
  const resolveMethod = (
    entry: MethodEntry,
    path: FieldPath,
    extra: { datasets?: string[]; seeds?: number[]; isInclude: boolean },
  ): ResolvedMethod | null => {
    const desc = registry[entry.name];
    if (!desc) {
      issues.add(
        [...path, 'name'],
        `unknown method \`${entry.name}\``,
        suggestHint(entry.name, methodNames, 'methods'),
      );
      return null;
    }
    for (const g of desc.lr_groups) declaredGroups.add(g);
    const st = recipe.method_settings?.[entry.name] ?? {};
    const options = resolveOptions(
      entry.name,
      desc,
      st.options,
      ['method_settings', entry.name, 'options'],
      issues,
      true,
    );
    const own = resolveOptions(entry.name, desc, entry.options, [...path, 'options'], issues, false);
    for (const [k, v] of Object.entries(own.fixed)) {
      options.fixed[k] = v;
      options.axes = options.axes.filter((a) => a.key !== k);
    }
    for (const a of own.axes) {
      delete options.fixed[a.key];
      options.axes = options.axes.filter((x) => x.key !== a.key);
      options.axes.push(a);
    }
    const ranksRaw = entry.ranks ?? st.ranks;
    if (!desc.needs_rank && ranksRaw !== undefined) {
      const p = entry.ranks !== undefined ? [...path, 'ranks'] : ['method_settings', entry.name, 'ranks'];
      issues.add(p, `method \`${entry.name}\` takes no rank`, 'remove `ranks` for it');
    }
    const matchBy = entry.match_by ?? st.match_by;
    if (matchBy !== undefined && typeof matchBy === 'object') {
      const names = asList(matchBy.option)!;
      const base = entry.match_by !== undefined ? [...path, 'match_by'] : ['method_settings', entry.name, 'match_by'];
      names.forEach((name, k) => {
        const s = desc.options[name];
        const p = Array.isArray(matchBy.option) ? [...base, 'option', k] : [...base, 'option'];
        if (!s)
          issues.add(
            p,
            `unknown option \`${name}\` for method \`${entry.name}\``,
            suggestHint(name, Object.keys(desc.options), `options of ${entry.name}`),
          );
        else if (s.type !== 'integer' && s.type !== 'number')
          issues.add(p, `option \`${name}\` is ${s.type}; budget matching needs a numeric option`);
        else
          matchBy.values.forEach((v, i) => {
            const r = checkOption(s, v);
            if (!r.ok) issues.add([...base, 'values', i], r.message, r.hint);
          });
      });
    } else if (matchBy === 'rank' && !desc.needs_rank) {
      issues.add(
        entry.match_by !== undefined ? [...path, 'match_by'] : ['method_settings', entry.name, 'match_by'],
        `method \`${entry.name}\` takes no rank to match by`,
        'use `match_by: none` or a numeric option',
      );
    }
    return {
      path,
      name: entry.name,
      label: entry.label ?? st.label ?? null,
      desc,
      options,
      ranks: desc.needs_rank && ranksRaw !== undefined ? uniq(asList(ranksRaw)!) : null,
      targets: entry.targets ?? st.targets ?? [],
      layers: [
        ...checkLayer(st.training, ['method_settings', entry.name, 'training']),
        ...checkLayer(entry.training, [...path, 'training']),
      ],
      matchBy,
      tags: [...(st.tags ?? []), ...(entry.tags ?? [])],
      datasets: extra.datasets ?? null,
      seeds: extra.seeds ?? null,
      isInclude: extra.isInclude,
    };
  };
  const methods: ResolvedMethod[] = [];
  recipe.methods.forEach((e, j) => {
    const r = resolveMethod(e, ['methods', j], { isInclude: false });
    if (r) methods.push(r);
  });
  const includes: ResolvedMethod[] = [];
  (recipe.include ?? []).forEach((rule, k) => {
    const { datasets: ds, seeds, ...entry } = rule;
    const dsList = asList(ds);
    dsList?.forEach((name, i) => {
      if (!datasetDefaults(name)) {
        issues.add(
          ['include', k, 'datasets', ...(Array.isArray(ds) ? [i] : [])],
          `unknown dataset \`${name}\``,
          suggestHint(name, ALL_DATASETS, 'datasets'),
        );
      }
    });
    const r = resolveMethod(entry, ['include', k], { datasets: dsList, seeds: asList(seeds), isInclude: true });
    if (r) includes.push(r);
  });
  const labels = new Set(methods.map((x) => x.label).filter((x): x is string => x !== null));

  // ---- lr groups ---------------------------------------------------------------------------------
  const allLayers: Layer[] = [
    ...recipeLayers,
    ...datasets.flatMap((d) => d.layers),
    ...methods.flatMap((x) => x.layers),
    ...includes.flatMap((x) => x.layers),
    ...(recipe.overrides ?? []).flatMap((o, i) =>
      o.training ? [{ path: ['overrides', i, 'training'], data: o.training }] : [],
    ),
  ];
  for (const l of allLayers) {
    for (const g of Object.keys(l.data.lr_groups ?? {})) {
      if (!declaredGroups.has(g)) {
        issues.add(
          [...l.path, 'lr_groups', g],
          `no method in this recipe has a parameter group \`${g}\``,
          declaredGroups.size
            ? suggestHint(g, [...declaredGroups], 'groups')
            : 'only methods that declare groups (e.g. DePT `prompt`) take lr_groups',
        );
      }
    }
  }

  // ---- seeds, ranks, zip, budget -----------------------------------------------------------------
  const seeds = uniq(asList(recipe.seeds) ?? [0]);
  const recipeRanks = recipe.ranks !== undefined ? uniq(asList(recipe.ranks)!) : null;
  const zipCombos: ZipCombo[] = [];
  {
    const groups: ZipCombo[][] = [];
    (recipe.zip ?? []).forEach((group, gi) => {
      const keys = Object.keys(group);
      if (keys.length === 0) {
        issues.add(['zip', gi], 'empty zip group', 'list two or more fields that vary together');
        return;
      }
      const lens = keys.map((k) => group[k]!.length);
      if (new Set(lens).size > 1) {
        issues.add(
          ['zip', gi],
          `zip lists must have the same length; got ${keys.map((k, i) => `${k}: ${lens[i]}`).join(', ')}`,
          'each position of the lists is one setting',
        );
        return;
      }
      let ok = true;
      for (const k of keys) {
        if (k === 'rank') {
          group[k]!.forEach((v, i) => {
            if (typeof v !== 'number' || !Number.isInteger(v) || v <= 0) {
              issues.add(['zip', gi, k, i], `expected a positive integer, got ${describeValue(v)}`);
              ok = false;
            }
          });
          continue;
        }
        if (k === 'lr_groups' || !(TRAINING_FIELDS as string[]).includes(k)) {
          issues.add(
            ['zip', gi, k],
            `\`${k}\` cannot vary in a zip group`,
            k === 'lr_groups'
              ? 'zip scalar training fields only'
              : suggestHint(k, [...TRAINING_FIELDS.filter((f) => f !== 'lr_groups'), 'rank'], 'fields'),
          );
          ok = false;
          continue;
        }
        const inTraining = (recipe.training as Record<string, unknown> | undefined)?.[k];
        if (Array.isArray(inTraining)) {
          issues.add(
            ['zip', gi, k],
            `\`${k}\` is both a grid axis in \`training\` and a zip field`,
            `remove the list from training.${k}`,
          );
          ok = false;
        }
        const fieldSchema = (TrainingSpecSchema.shape as Record<string, z.ZodType>)[k]!;
        group[k]!.forEach((v, i) => {
          const r = fieldSchema.safeParse(v);
          if (!r.success) {
            for (const sub of zodIssues(r.error.issues, recipe, fieldSchema, ['zip', gi, k, i]))
              issues.add(sub.path, sub.message, sub.hint);
            ok = false;
          }
        });
      }
      if (!ok) return;
      groups.push(
        Array.from({ length: lens[0]! }, (_, i) => {
          const training: Record<string, unknown> = {};
          let rank: number | undefined;
          for (const k of keys) {
            if (k === 'rank') rank = group[k]![i] as number;
            else training[k] = group[k]![i];
          }
          return { training: training as TrainingLayer, rank };
        }),
      );
    });
    product(groups, (pick) => {
      const training: Record<string, unknown> = {};
      let rank: number | undefined;
      for (const p of pick) {
        Object.assign(training, p.training);
        if (p.rank !== undefined) rank = p.rank;
      }
      zipCombos.push({ training: training as TrainingLayer, rank });
    });
  }
  const zipHasRank = zipCombos.some((z) => z.rank !== undefined);

  const budget: Budget | undefined = recipe.budget;
  let budgetLevels: number[] = [];
  if (budget) {
    budgetLevels = uniq(asList(budget.rank)!);
    const ref = registry[budget.match];
    if (!ref)
      issues.add(
        ['budget', 'match'],
        `unknown method \`${budget.match}\``,
        suggestHint(budget.match, methodNames, 'methods'),
      );
    else if (!ref.needs_rank)
      issues.add(
        ['budget', 'match'],
        `method \`${budget.match}\` has no rank to set a budget with`,
        'match against a method with a rank, e.g. `lora`',
      );
    if (recipeRanks)
      issues.add(
        ['ranks'],
        '`ranks` is not used with `budget`',
        "budget.rank sets the reference rank; a method's own `ranks` lists its candidates",
      );
    if (zipHasRank)
      issues.add(['zip'], '`rank` in a zip group is not used with `budget`', 'remove `rank` from the zip group');
  }

  // ---- overrides, excludes ------------------------------------------------------------------------
  const overrides: Override[] = recipe.overrides ?? [];
  overrides.forEach((o, i) => {
    asList(o.when.method)?.forEach((name, k) => {
      if (!registry[name] && !labels.has(name)) {
        issues.add(
          ['overrides', i, 'when', 'method', ...(Array.isArray(o.when.method) ? [k] : [])],
          `unknown method \`${name}\``,
          suggestHint(name, [...methodNames, ...labels], 'methods'),
        );
      }
    });
    asList(o.when.dataset)?.forEach((pat, k) => {
      if (!pat.includes('*') && !datasetDefaults(pat)) {
        issues.add(
          ['overrides', i, 'when', 'dataset', ...(Array.isArray(o.when.dataset) ? [k] : [])],
          `unknown dataset \`${pat}\``,
          suggestHint(pat, ALL_DATASETS, 'datasets'),
        );
      }
    });
  });
  const excludes: ExcludeRule[] = recipe.exclude ?? [];
  excludes.forEach((x, i) => {
    if (Object.keys(x).length === 0)
      issues.add(
        ['exclude', i],
        'empty exclude rule (it would drop every run)',
        'give at least one of method, label, dataset, rank, seed, training, options',
      );
    asList(x.method)?.forEach((name, k) => {
      if (!registry[name])
        issues.add(
          ['exclude', i, 'method', ...(Array.isArray(x.method) ? [k] : [])],
          `unknown method \`${name}\``,
          suggestHint(name, methodNames, 'methods'),
        );
    });
    asList(x.label)?.forEach((name, k) => {
      if (!labels.has(name))
        issues.add(
          ['exclude', i, 'label', ...(Array.isArray(x.label) ? [k] : [])],
          `no method entry has the label \`${name}\``,
          labels.size ? suggestHint(name, [...labels], 'labels') : 'labels are set with `label:` on a method entry',
        );
    });
    for (const k of Object.keys(x.training ?? {})) {
      if (!(TRAINING_FIELDS as string[]).includes(k))
        issues.add(
          ['exclude', i, 'training', k],
          `unknown training field \`${k}\``,
          suggestHint(k, TRAINING_FIELDS, 'training fields'),
        );
    }
    for (const k of Object.keys(x.options ?? {})) {
      const owners = [...methods, ...includes].filter((mm) => k in mm.desc.options);
      if (owners.length === 0)
        issues.add(
          ['exclude', i, 'options', k],
          `no method in this recipe has an option \`${k}\``,
          suggestHint(k, [...new Set(methods.flatMap((mm) => Object.keys(mm.desc.options)))], 'options'),
        );
    }
  });

  if (issues.length) return empty();

  // ---- expansion machinery -----------------------------------------------------------------------
  const device = recipe.device ?? 'auto';
  const modelCanon = canonicalJson(model);
  const overrideOptionCache = new Map<string, ResolvedOptions>();
  const overrideOptions = (i: number, mm: ResolvedMethod): ResolvedOptions => {
    const key = `${i}\u0000${mm.name}`;
    let r = overrideOptionCache.get(key);
    if (!r) {
      r = resolveOptions(mm.name, mm.desc, overrides[i]!.options, ['overrides', i, 'options'], issues, false);
      overrideOptionCache.set(key, r);
    }
    return r;
  };
  const overrideUsed = new Array<boolean>(overrides.length).fill(false);
  const matches = (o: Override, mm: ResolvedMethod, d: ResolvedDataset, rank: number | null): boolean => {
    const ms = asList(o.when.method);
    if (ms && !ms.some((x) => x === mm.name || x === mm.label)) return false;
    const ds = asList(o.when.dataset);
    if (ds && !ds.some((p) => globMatch(p, d.name))) return false;
    const rs = asList(o.when.rank);
    if (rs && (rank === null || !rs.includes(rank))) return false;
    return true;
  };

  interface Cell {
    mm: ResolvedMethod;
    d: ResolvedDataset;
    rank: number | null;
    /** training axes in field order: [field, group|null, values] */
    trainAxes: { field: string; group: string | null; values: unknown[] }[];
    trainFixed: Record<string, unknown>;
    evalBatchFollows: boolean;
    options: ResolvedOptions;
    targets: string[];
    seeds: number[];
  }

  const buildCell = (
    mm: ResolvedMethod,
    d: ResolvedDataset,
    rank: number | null,
    z: ZipCombo,
    optionPatch?: Record<string, unknown>,
  ): Cell => {
    const matched = overrides.map((o, i) => (matches(o, mm, d, rank) ? i : -1)).filter((i) => i >= 0);
    for (const i of matched) overrideUsed[i] = true;
    const layers: (TrainingLayer | undefined)[] = [
      defaultTraining(model.task),
      recipe.training,
      z.training,
      ...d.layers.map((l) => l.data),
      ...mm.layers.map((l) => l.data),
      ...matched.map((i) => overrides[i]!.training),
    ];
    const spec = mergeLayers(layers);
    const evalBatchFollows = spec.eval_batch_size === undefined;
    const trainAxes: Cell['trainAxes'] = [];
    const trainFixed: Record<string, unknown> = {};
    for (const f of TRAINING_FIELDS) {
      if (f === 'lr_groups') {
        const groups = (spec.lr_groups as Record<string, unknown> | undefined) ?? {};
        const fixed: Record<string, unknown> = {};
        for (const g of [...mm.desc.lr_groups].sort()) {
          const v = groups[g];
          if (Array.isArray(v)) trainAxes.push({ field: 'lr_groups', group: g, values: uniq(v) });
          else if (v !== undefined) fixed[g] = v;
        }
        trainFixed.lr_groups = fixed;
        continue;
      }
      const v = spec[f];
      if (Array.isArray(v)) trainAxes.push({ field: f, group: null, values: uniq(v) });
      else trainFixed[f] = v === undefined ? null : v;
    }
    // options: entry options, then the matching overrides' options, then a budget patch
    let fixed = { ...mm.options.fixed };
    let axes = mm.options.axes.slice();
    const apply = (r: ResolvedOptions) => {
      for (const [k, v] of Object.entries(r.fixed)) {
        fixed[k] = v;
        axes = axes.filter((a) => a.key !== k);
      }
      for (const a of r.axes) {
        delete fixed[a.key];
        axes = axes.filter((x) => x.key !== a.key);
        axes.push(a);
      }
    };
    let targets = mm.targets;
    for (const i of matched) {
      if (overrides[i]!.options) apply(overrideOptions(i, mm));
      if (overrides[i]!.targets) targets = overrides[i]!.targets!;
    }
    if (optionPatch) apply({ fixed: optionPatch, axes: [] });
    fixed = Object.fromEntries(
      Object.entries(fixed)
        .filter(([, v]) => v !== null)
        .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)),
    );
    return {
      mm,
      d,
      rank,
      trainAxes,
      trainFixed,
      evalBatchFollows,
      options: { fixed, axes },
      targets,
      seeds: mm.seeds ?? seeds,
    };
  };

  const cellSize = (c: Cell): number =>
    c.trainAxes.reduce((n, a) => n * a.values.length, 1) *
    c.options.axes.reduce((n, a) => n * a.values.length, 1) *
    c.seeds.length;

  /** The training spec of one pick of the training axes. */
  const trainingOf = (c: Cell, pick: unknown[]): TrainingSpec => {
    const v: Record<string, unknown> = { ...c.trainFixed };
    const groups: Record<string, unknown> = { ...(c.trainFixed.lr_groups as object) };
    c.trainAxes.forEach((a, i) => {
      if (a.group !== null) groups[a.group] = pick[i];
      else v[a.field] = pick[i];
    });
    for (const g of c.mm.desc.lr_groups) if (groups[g] === undefined) groups[g] = v.lr;
    v.lr_groups = Object.fromEntries(Object.entries(groups).sort(([a], [b]) => (a < b ? -1 : 1)));
    if (c.evalBatchFollows) v.eval_batch_size = v.batch_size;
    // in TrainingSpec field order, for readable JSON (the id does not depend on key order)
    const t: Record<string, unknown> = {};
    for (const f of TRAINING_FIELDS) t[f] = v[f];
    return t as TrainingSpec;
  };
  const optionsOf = (c: Cell, pick: unknown[]): Record<string, unknown> => {
    if (c.options.axes.length === 0) return c.options.fixed;
    const o: Record<string, unknown> = { ...c.options.fixed };
    c.options.axes.forEach((a, i) => (o[a.key] = pick[i]));
    return Object.fromEntries(
      Object.entries(o)
        .filter(([, v]) => v !== null)
        .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)),
    );
  };
  const firstSpec = (c: Cell): RunSpec => ({
    schema: SPEC_SCHEMA,
    model,
    dataset: c.d.spec,
    method: {
      name: c.mm.name,
      rank: c.rank,
      options: optionsOf(
        c,
        c.options.axes.map((a) => a.values[0]),
      ),
      targets: c.targets,
    },
    training: trainingOf(
      c,
      c.trainAxes.map((a) => a.values[0]),
    ),
    seed: c.seeds[0] ?? 0,
    device,
  });

  // ---- rank plans (incl. budget matching) -----------------------------------------------------------
  const counts = opts.counts ?? {};
  const haveCounts = Object.keys(counts).length > 0;
  const requests = new Map<string, RunSpec>();
  const noRankWarned = new Set<string>();
  interface RankChoice {
    rank: number | null;
    patch?: Record<string, unknown>;
    tag: string | null;
  }
  const refMethod: ResolvedMethod | null = budget
    ? (methods.find((x) => x.name === budget.match) ??
      resolveMethod({ name: budget.match }, ['budget', 'match'], { isInclude: false }))
    : null;
  const rankChoices = (mm: ResolvedMethod, d: ResolvedDataset, z: ZipCombo): RankChoice[] => {
    if (!mm.desc.needs_rank && (!budget || mm.isInclude || typeof mm.matchBy !== 'object'))
      return [{ rank: null, tag: null }];
    const plain = (): RankChoice[] => {
      if (z.rank !== undefined) return [{ rank: z.rank, tag: null }];
      const rs = mm.ranks ?? recipeRanks;
      if (!rs) {
        if (!noRankWarned.has(formatPath(mm.path))) {
          noRankWarned.add(formatPath(mm.path));
          issues.add(
            [...mm.path, 'name'],
            `method \`${mm.name}\` needs a rank, and neither the recipe nor the entry gives \`ranks\``,
            budget
              ? `add \`ranks: [...]\` to this entry, or let budget matching choose (match_by: rank)`
              : 'add `ranks: [8]` to the recipe or to this entry',
          );
        }
        return [];
      }
      return rs.map((r) => ({ rank: r, tag: null }));
    };
    if (!budget || mm.isInclude) return plain();
    const out: RankChoice[] = [];
    for (const level of budgetLevels) {
      const tag = `budget:${budget.match}@${level}`;
      const isRef = mm.name === budget.match && (mm.matchBy === undefined || mm.matchBy === 'rank');
      if (isRef) {
        out.push({ rank: level, tag });
        continue;
      }
      const by = mm.matchBy ?? (mm.desc.needs_rank ? 'rank' : 'none');
      if (by === 'none') {
        out.push(...plain().map((c) => ({ ...c, tag })));
        continue;
      }
      // reference count on this dataset
      const refSpec = firstSpec(buildCell(refMethod!, d, level, z));
      const refCount = counts[countKey(refSpec)];
      const candidates: RankChoice[] =
        by === 'rank'
          ? (mm.ranks ?? budget.candidates ?? DEFAULT_RANK_LADDER).map((r) => ({ rank: r, tag }))
          : by.values.map((v) => ({
              rank: mm.desc.needs_rank ? (mm.ranks?.length === 1 ? mm.ranks[0]! : level) : null,
              patch: Object.fromEntries(asList(by.option)!.map((o) => [o, v])),
              tag,
            }));
      const specs = candidates.map((c) => firstSpec(buildCell(mm, d, c.rank, z, c.patch)));
      let missing = false;
      for (const s of [refSpec, ...specs]) {
        const k = countKey(s);
        if (!(k in counts)) {
          missing = true;
          if (!requests.has(k)) requests.set(k, s);
        }
      }
      if (missing) continue;
      if (refCount === null || refCount === undefined) {
        issues.add(
          ['budget', 'match'],
          `the runtime could not count \`${budget.match}\` at rank ${level} on \`${d.name}\``,
          'check that the rank fits the model',
        );
        continue;
      }
      if (refuseEstimated(issues, budget.match, mm, [refCount, ...specs.map((s) => counts[countKey(s)])])) continue;
      let best = -1;
      let bestKey: [number, number, number] = [Infinity, Infinity, Infinity];
      specs.forEach((s, i) => {
        const c = counts[countKey(s)];
        if (!c) return;
        const key: [number, number, number] = [Math.abs(budgetCount(c) - budgetCount(refCount)), budgetCount(c), i];
        if (
          key[0] < bestKey[0] ||
          (key[0] === bestKey[0] && (key[1] < bestKey[1] || (key[1] === bestKey[1] && key[2] < bestKey[2])))
        ) {
          best = i;
          bestKey = key;
        }
      });
      if (best < 0) {
        issues.add(
          [...mm.path, 'name'],
          `no candidate setting of \`${mm.name}\` could be counted on \`${d.name}\``,
          'give candidates with `ranks:` or `match_by: {option, values}`',
        );
        continue;
      }
      out.push(candidates[best]!);
    }
    return out;
  };

  // ---- expand --------------------------------------------------------------------------------------
  const runs: PlannedRun[] = [];
  const metas: RunMeta[] = [];
  const byId = new Map<string, number>();
  let gridSize = 0;
  let excluded = 0;
  const excludeUsed = new Array<boolean>(excludes.length).fill(false);
  const excludeSets = excludes.map((x) => ({
    method: asList(x.method),
    label: asList(x.label),
    dataset: asList(x.dataset),
    rank: asList(x.rank),
    seed: asList(x.seed),
    training: Object.entries(x.training ?? {}).map(
      ([k, v]) => [k, (Array.isArray(v) ? v : [v]).map(canonicalJson)] as const,
    ),
    options: Object.entries(x.options ?? {}).map(
      ([k, v]) => [k, (Array.isArray(v) ? v : [v]).map(canonicalJson)] as const,
    ),
  }));
  const isExcluded = (c: Cell, training: TrainingSpec, options: Record<string, unknown>, seed: number): boolean => {
    let hit = false;
    excludeSets.forEach((x, i) => {
      if (x.method && !x.method.includes(c.mm.name)) return;
      if (x.label && (c.mm.label === null || !x.label.includes(c.mm.label))) return;
      if (x.dataset && !x.dataset.some((p) => globMatch(p, c.d.name))) return;
      if (x.rank && (c.rank === null || !x.rank.includes(c.rank))) return;
      if (x.seed && !x.seed.includes(seed)) return;
      for (const [k, vals] of x.training)
        if (!vals.includes(canonicalJson((training as Record<string, unknown>)[k] ?? null))) return;
      for (const [k, vals] of x.options) if (!(k in options) || !vals.includes(canonicalJson(options[k]))) return;
      excludeUsed[i] = true;
      hit = true;
    });
    return hit;
  };

  const newHash = opts.sha256 ?? (() => new Sha256());
  const scratch = newHash();
  const expandCell = (c: Cell, tag: string | null, applyExclude: boolean): void => {
    gridSize += cellSize(c);
    const datasetCanon = canonicalJson(c.d.spec);
    const trainAxisValues = c.trainAxes.map((a) => a.values);
    // Training specs are built as the expansion reaches them (never the whole training grid up front: three
    // lists of 1,000 values are 10^9 combinations), and kept for the next option pick when the grid is small.
    const trainingCount = trainAxisValues.reduce((n, a) => n * a.length, 1);
    const memo: ({ training: TrainingSpec; canon: string } | undefined)[] | null =
      trainingCount <= TRAINING_MEMO_LIMIT ? [] : null;
    const trainingAt = (ti: number, pick: unknown[]): { training: TrainingSpec; canon: string } => {
      const hit = memo?.[ti];
      if (hit) return hit;
      const training = trainingOf(c, pick);
      const t = { training, canon: canonicalJson(training) };
      if (memo) memo[ti] = t;
      return t;
    };
    product(
      c.options.axes.map((a) => a.values),
      (opick) => {
        const options = optionsOf(c, opick);
        const method: MethodSpec = { name: c.mm.name, rank: c.rank, options, targets: c.targets };
        const keyByHead = new Map<boolean, string>();
        const prefix = newHash().update(
          `{"dataset":${datasetCanon},"device":${JSON.stringify(device)},"method":${canonicalJson(method)},"model":${modelCanon},"schema":"${SPEC_SCHEMA}","seed":`,
        );
        let ti = 0;
        product(trainAxisValues, (tpick) => {
          const { training, canon } = trainingAt(ti++, tpick);
          for (const seed of c.seeds) {
            if (applyExclude && excludeSets.length && isExcluded(c, training, options, seed)) {
              excluded++;
              continue;
            }
            const id = 'run-' + scratch.copyFrom(prefix).update(`${seed},"training":${canon}}`).hex().slice(0, 32);
            if (byId.has(id)) continue;
            if (runs.length >= maxRuns) throw new TooManyRuns();
            byId.set(id, runs.length);
            const spec: RunSpec = { schema: SPEC_SCHEMA, model, dataset: c.d.spec, method, training, seed, device };
            let cnt: CountResult | null | undefined;
            if (haveCounts) {
              let k = keyByHead.get(training.train_head);
              if (k === undefined) keyByHead.set(training.train_head, (k = countKey(spec)));
              cnt = counts[k];
            }
            runs.push({
              id,
              spec,
              labels: {
                model: model.name,
                method: c.mm.name,
                rank: c.rank,
                dataset: c.d.label,
                seed,
                setting: '',
                tags: [],
              },
              params: cnt ? paramsOf(cnt) : null,
            });
            metas.push({ entry: c.mm, budgetTag: tag });
          }
        });
      },
    );
  };

  const entryDatasets = (mm: ResolvedMethod): ResolvedDataset[] => {
    if (!mm.datasets) return datasets;
    return mm.datasets
      .map((name) => datasetByName.get(name) ?? resolveDataset({ name }, mm.path, [...mm.path, 'datasets'])!)
      .filter(Boolean);
  };

  // First pass: rank choices for every (entry, dataset, zip) -- this is where count requests arise.
  const plans: { mm: ResolvedMethod; d: ResolvedDataset; z: ZipCombo; choices: RankChoice[] }[] = [];
  // Budget matching compares counts on the entry's first dataset: the task head adds the same count to
  // every method, so the closest setting there is the closest on every dataset (and the runtime is asked
  // for a fraction of the counts).
  for (const mm of [...methods, ...includes]) {
    const ds = entryDatasets(mm);
    zipCombos.forEach((z) => {
      const choices = ds.length ? rankChoices(mm, ds[0]!, z) : [];
      for (const d of ds) plans.push({ mm, d, z, choices });
    });
  }
  if (issues.length) return empty();
  if (requests.size) {
    return { runs: [], issues: [], warnings: warnings.items, countRequests: [...requests.values()], gridSize: 0 };
  }

  // Count first: a grid far beyond max_runs is refused before any run is built (exclude rules and
  // deduplication can only shrink a grid so far; past GRID_LIMIT combinations it is not expanded at all).
  const cells = plans.flatMap((p) =>
    p.choices.map((ch) => ({
      cell: buildCell(p.mm, p.d, ch.rank, p.z, ch.patch),
      tag: ch.tag,
      apply: !p.mm.isInclude,
    })),
  );
  const total = cells.reduce((n, x) => n + cellSize(x.cell), 0);
  const tooMany = (): PlanResult => {
    issues.add(
      recipe.max_runs !== undefined ? ['max_runs'] : [],
      `the recipe expands to more than max_runs=${maxRuns} runs (${total} grid combinations before exclude rules and deduplication)`,
      'shrink an axis (ranks, seeds, a training list), add `exclude` rules, or raise `max_runs`',
    );
    return empty();
  };
  if (total > maxRuns && total > GRID_LIMIT) return tooMany();
  try {
    for (const x of cells) expandCell(x.cell, x.tag, x.apply);
  } catch (e) {
    if (!(e instanceof TooManyRuns)) throw e;
    return tooMany();
  }
  if (issues.length) return empty();

  excludeUsed.forEach((used, i) => {
    if (!used) warnings.add(['exclude', i], 'this exclude rule matches no run', 'check its values, or remove it');
  });
  overrideUsed.forEach((used, i) => {
    if (!used)
      warnings.add(['overrides', i, 'when'], 'this override selects no run', 'check its `when` values, or remove it');
  });
  if (runs.length === 0) {
    issues.add(
      excluded > 0 ? ['exclude'] : [],
      excluded > 0
        ? `the recipe expands to zero runs: the exclude rules remove all ${excluded} grid runs`
        : 'the recipe expands to zero runs',
      excluded > 0 ? 'loosen the exclude rules' : 'add datasets, methods, ranks or seeds',
    );
    return empty();
  }

  assignSettings(runs, metas, recipe.tags ?? []);
  return { runs, issues: [], warnings: warnings.items, countRequests: [], gridSize };
}

/**
 * Fill `labels.setting` and `labels.tags`. The setting names the values of the fields that vary between
 * runs of the same method entry on the same dataset (besides rank and seed), so a table row is one setting;
 * a per-dataset difference (a learning rate per GLUE task) does not split rows.
 */
function assignSettings(runs: PlannedRun[], metas: RunMeta[], recipeTags: string[]): void {
  const entryKey = (i: number) => `${metas[i]!.entry.name}\u0000${metas[i]!.entry.label ?? ''}`;
  const fieldsOf = (r: PlannedRun): [string, unknown][] => {
    const out: [string, unknown][] = [];
    for (const [k, v] of Object.entries(r.spec.method.options)) out.push([k, v]);
    if (r.spec.method.targets.length) out.push(['targets', r.spec.method.targets]);
    for (const f of TRAINING_FIELDS) {
      if (f === 'lr_groups') {
        for (const [g, v] of Object.entries(r.spec.training.lr_groups)) out.push([`lr.${g}`, v]);
      } else {
        out.push([f, r.spec.training[f]]);
      }
    }
    return out;
  };
  // (entry, dataset) -> field -> first value seen, plus the set of varying fields per entry. Runs that differ
  // only by seed share their training and method objects and come one after another: each such group is
  // looked at once.
  const first = new Map<string, Map<string, string>>();
  const varying = new Map<string, Set<string>>();
  const sameAsPrevious = (i: number): boolean => {
    if (i === 0) return false;
    const a = runs[i]!.spec;
    const b = runs[i - 1]!.spec;
    return (
      a.training === b.training &&
      a.method === b.method &&
      a.dataset === b.dataset &&
      metas[i]!.entry === metas[i - 1]!.entry
    );
  };
  runs.forEach((r, i) => {
    if (sameAsPrevious(i)) return;
    const ek = entryKey(i);
    const gk = ek + '\u0000' + r.spec.dataset.name;
    let f = first.get(gk);
    if (!f) {
      f = new Map();
      first.set(gk, f);
    }
    let vs = varying.get(ek);
    if (!vs) {
      vs = new Set();
      varying.set(ek, vs);
    }
    for (const [k, v] of fieldsOf(r)) {
      const c = typeof v === 'object' && v !== null ? canonicalJson(v) : String(v);
      const prev = f.get(k);
      if (prev === undefined) f.set(k, c);
      else if (prev !== c) vs.add(k);
    }
  });
  let setting = '';
  let tags: string[] = [];
  runs.forEach((r, i) => {
    if (!sameAsPrevious(i) || metas[i]!.budgetTag !== metas[i - 1]!.budgetTag) {
      const meta = metas[i]!;
      const vs = varying.get(entryKey(i))!;
      const parts: string[] = [];
      if (meta.entry.label) parts.push(meta.entry.label);
      if (vs.size) for (const [k, v] of fieldsOf(r)) if (vs.has(k)) parts.push(`${k}=${fmtValue(v)}`);
      setting = parts.join(' ');
      tags = [...new Set([...recipeTags, ...meta.entry.tags, ...(meta.budgetTag ? [meta.budgetTag] : [])])].sort();
    }
    (r.labels as RunLabels).setting = setting;
    (r.labels as RunLabels).tags = tags.slice();
  });
}

/** Fill `params` of planned runs from a count table (e.g. after counting them with the runtime). */
export function attachCounts(runs: PlannedRun[], counts: CountTable): void {
  for (const r of runs) {
    // A run that reads an upstream run's model is sized by that model: known once it exists.
    const c = r.spec.inputs ? null : counts[countKey(r.spec)];
    r.params = c ? paramsOf(c) : null;
  }
}

/** The specs to count so every run has params and a full-model size (deduplicated by count key). */
export function countRequestsFor(
  runs: readonly PlannedRun[],
  counts: CountTable = {},
  withFullModel = true,
): RunSpec[] {
  const out = new Map<string, RunSpec>();
  for (const r of runs) {
    if (r.spec.inputs) continue; // counted once the upstream model exists (the runtime refuses before)
    const specs = withFullModel ? [r.spec, fullModelSpec(r.spec)] : [r.spec];
    for (const s of specs) {
      const k = countKey(s);
      if (!(k in counts) && !out.has(k)) out.set(k, s);
    }
  }
  return [...out.values()];
}
