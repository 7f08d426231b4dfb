/**
 * What the planner knows about models and datasets without starting the runtime: the runtime's catalogue
 * (`describe`, committed as schemas/methods.generated.json and read through schemas/catalog.ts): built-in
 * models, dataset families and their tasks, and per task the defaults (split sizes, max length, metric,
 * evaluated split) a recipe may override. Nothing here restates a catalogue fact. Pure data.
 */
import type { DatasetTaskDescription, OptionSchema } from '../schemas/describe.js';
import type { RunSpec } from '../schemas/runspec.js';
import {
  datasetTaskDefaults,
  GLUE_TASKS as CATALOG_GLUE,
  namedSplits,
  plannableDatasets,
  SNAPSHOT_DATASETS,
  SNAPSHOT_MODELS,
  splitDatasetName,
  VTAB_GROUPS as CATALOG_VTAB,
} from '../schemas/catalog.js';

type Task = RunSpec['model']['task'];

/** Built-in CPU-sized models of the runtime: the task head each carries, and other heads it can take. */
export const BUILTIN_MODELS: Record<string, { task: Task; otherTasks?: readonly Task[] }> = Object.fromEntries(
  Object.entries(SNAPSHOT_MODELS as Record<string, { source?: string; task: Task; other_tasks?: object }>)
    .filter(([, m]) => m.source === 'builtin')
    .map(([name, m]) => [
      name,
      m.other_tasks ? { task: m.task, otherTasks: Object.keys(m.other_tasks) as Task[] } : { task: m.task },
    ]),
);

/** The GLUE tasks and the VTAB-1k groups, from the runtime's catalogue. */
export const GLUE_TASKS = CATALOG_GLUE;
export const VTAB_GROUPS = CATALOG_VTAB;

/** The defaults of one dataset: everything in a DatasetSpec except name, data_root and options. */
export interface DatasetDefaults {
  task: Task;
  max_length: number;
  train_size: number | null;
  eval_size: number | null;
  eval_split: string;
  metric: string;
  /** Metrics this dataset can report (a recipe's `metric` must be one of them). */
  metrics: readonly string[];
  /** Schema of `dataset.options` (from the runtime's `describe`), or null when unknown. */
  options: Record<string, OptionSchema> | null;
}

/** MNLI names that fix the evaluated split (the runtime honours them; a table shows each as its own column). */
export const MNLI_SPLIT_NAMES: Record<string, string> = namedSplits();

/**
 * What a table groups a run's dataset by: its name, plus the evaluated split when that is not the dataset's
 * default (`glue/mnli` on `validation_mismatched` is `glue/mnli-mm`; others `name@split`), so results on two
 * splits are two columns, never one column with seeds counted twice.
 */
export function datasetLabel(name: string, evalSplit: string, defaultSplit: string): string {
  if (evalSplit === defaultSplit) return name;
  if (name === 'glue/mnli' || name === 'glue/mnli-m') {
    const alias = Object.entries(MNLI_SPLIT_NAMES).find(([, split]) => split === evalSplit)?.[0];
    if (alias) return alias;
  }
  return `${name}@${evalSplit}`;
}

/**
 * Defaults for a dataset name, or null when the name is not one the runtime reads, or one its catalogue has
 * no defaults for (refused rather than guessed). `described` is the `datasets` section of `describe` (default:
 * the committed snapshot's). For image datasets `max_length` is the image resolution in pixels.
 */
export function datasetDefaults(name: string, described?: Record<string, unknown>): DatasetDefaults | null {
  const d = datasetTaskDefaults(name, described);
  if (!d) return null;
  const fam = (described && Object.keys(described).length ? described : SNAPSHOT_DATASETS)[
    splitDatasetName(name).family
  ] as { options?: Record<string, OptionSchema> } | undefined;
  return {
    task: d.model_task as Task,
    max_length: d.max_length,
    train_size: d.train_size,
    eval_size: d.eval_size,
    eval_split: d.eval_split,
    metric: d.metric,
    metrics: d.metrics,
    options: fam?.options ?? null,
  };
}

/** Every dataset name the runtime's catalogue can plan (for "did you mean" hints). */
export function knownDatasets(described?: Record<string, unknown>): string[] {
  return plannableDatasets(described);
}

/** The fields of a dataset entry that describe your own data (a recipe's flat `text`/`label`/... keys). */
export interface OwnDataFields {
  files?: Record<string, string | string[]>;
  text?: string | string[];
  label?: string;
  prompt?: string;
  target?: string;
  problem_type?: 'classification' | 'regression';
}

/** Whether a dataset entry names your own files (a name outside the benchmark families, with `files`). */
export function isOwnData(name: string, f: OwnDataFields): boolean {
  const family = name.split('/')[0]!;
  return f.files !== undefined && !['glue', 'vtab', 'gsm8k', 'synthetic'].includes(family);
}

/**
 * Defaults of your own data, from its column mapping (the runtime's rules, `describe`'s `custom.per_kind`):
 * prompt/target (or text without a label) is a causal LM, a label with `problem_type: regression` is
 * regression, else classification. The evaluated split is `validation`, else the one other file.
 */
export function ownDataDefaults(f: OwnDataFields, described?: Record<string, unknown>): DatasetDefaults {
  const kind =
    f.prompt || f.target || !f.label ? 'lm' : f.problem_type === 'regression' ? 'regression' : 'classification';
  const fam = ((described && Object.keys(described).length ? described : SNAPSHOT_DATASETS)['custom'] ?? {}) as {
    options?: Record<string, OptionSchema>;
    per_kind?: Record<string, DatasetTaskDescription>;
  };
  const k = fam.per_kind?.[kind];
  if (!k?.defaults) throw new Error(`the runtime's catalogue has no defaults for your own ${kind} data`);
  const splits = Object.keys(f.files ?? {}).filter((s) => s !== 'train');
  return {
    task: k.model_task as Task,
    max_length: k.defaults.max_length,
    train_size: k.defaults.train_size,
    eval_size: k.defaults.eval_size,
    eval_split: splits.includes('validation') || splits.length !== 1 ? k.defaults.eval_split : splits[0]!,
    metric: k.default_metric,
    metrics: k.metrics,
    options: fam.options ?? null,
  };
}
