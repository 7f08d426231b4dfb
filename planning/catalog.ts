/**
 * What the planner knows about models and datasets without asking the runtime: the built-in models,
 * the dataset families with their tasks, and the per-dataset defaults (split sizes, max length, metric,
 * evaluated split) that a recipe may override. Pure data.
 */
import type { OptionSchema } from '../schemas/describe.js';
import type { RunSpec } from '../schemas/runspec.js';

type Task = RunSpec['model']['task'];

/** Built-in CPU-sized models of the runtime: the task head each carries, and other heads it can take. */
export const BUILTIN_MODELS: Record<string, { task: Task; otherTasks?: readonly Task[] }> = {
  'tiny-encoder': { task: 'seq-cls' },
  'tiny-vit': { task: 'img-cls' },
  'tiny-decoder': { task: 'causal-lm', otherTasks: ['seq-cls'] },
};

export const GLUE_TASKS = ['cola', 'sst2', 'mrpc', 'qqp', 'stsb', 'mnli', 'qnli', 'rte', 'wnli'] as const;

/** The 19 VTAB-1k tasks, by group (names as the runtime's VTAB reader and metrics use them). */
export const VTAB_GROUPS = {
  natural: ['cifar', 'caltech101', 'dtd', 'oxford_flowers102', 'oxford_iiit_pet', 'svhn', 'sun397'],
  specialized: ['patch_camelyon', 'eurosat', 'resisc45', 'diabetic_retinopathy'],
  structured: [
    'clevr_count',
    'clevr_dist',
    'dmlab',
    'kitti',
    'dsprites_loc',
    'dsprites_ori',
    'smallnorb_azi',
    'smallnorb_ele',
  ],
} as const;
export const VTAB_TASKS: readonly string[] = [
  ...VTAB_GROUPS.natural,
  ...VTAB_GROUPS.specialized,
  ...VTAB_GROUPS.structured,
];

export const SYNTHETIC_KINDS = ['seq-cls', 'img-cls', 'causal-lm', 'regression', 'gsm8k-like'] as const;

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

const GLUE_METRIC: Record<string, { metric: string; metrics: string[] }> = {
  cola: { metric: 'mcc', metrics: ['mcc', 'accuracy'] },
  stsb: { metric: 'pearson', metrics: ['pearson', 'spearman'] },
  mrpc: { metric: 'accuracy', metrics: ['accuracy', 'f1'] },
  qqp: { metric: 'accuracy', metrics: ['accuracy', 'f1'] },
};

/**
 * Defaults for a dataset name, or null when the name is not one the runtime reads.
 * For image datasets `max_length` is the image resolution in pixels.
 */
function staticDefaults(name: string): Omit<DatasetDefaults, 'options'> | null {
  const slash = name.indexOf('/');
  const family = slash < 0 ? name : name.slice(0, slash);
  const task = slash < 0 ? '' : name.slice(slash + 1);
  switch (family) {
    case 'glue': {
      if (!(GLUE_TASKS as readonly string[]).includes(task)) return null;
      const m = GLUE_METRIC[task] ?? { metric: 'accuracy', metrics: ['accuracy'] };
      return {
        task: 'seq-cls',
        max_length: 128,
        train_size: null,
        eval_size: null,
        eval_split: task === 'mnli' ? 'validation_matched' : 'validation',
        metric: m.metric,
        metrics: m.metrics,
      };
    }
    case 'vtab':
      if (!VTAB_TASKS.includes(task)) return null;
      // VTAB-1k: train on the 800+200 examples of train800val200.txt, evaluate on test.txt.
      return {
        task: 'img-cls',
        max_length: 224,
        train_size: 1000,
        eval_size: null,
        eval_split: 'test',
        metric: 'top1',
        metrics: ['top1', 'accuracy'],
      };
    case 'gsm8k':
      if (slash >= 0) return null;
      return {
        task: 'causal-lm',
        max_length: 512,
        train_size: null,
        eval_size: null,
        eval_split: 'test',
        metric: 'exact_match',
        metrics: ['exact_match', 'exact_match_strict'],
      };
    case 'synthetic': {
      const kinds: Record<string, Omit<DatasetDefaults, 'options'>> = {
        'seq-cls': {
          task: 'seq-cls',
          max_length: 32,
          train_size: 512,
          eval_size: 128,
          eval_split: 'validation',
          metric: 'accuracy',
          metrics: ['accuracy', 'f1', 'mcc', 'loss'],
        },
        regression: {
          task: 'seq-cls',
          max_length: 32,
          train_size: 512,
          eval_size: 128,
          eval_split: 'validation',
          metric: 'pearson',
          metrics: ['pearson', 'spearman', 'mse', 'loss'],
        },
        'img-cls': {
          task: 'img-cls',
          max_length: 32,
          train_size: 512,
          eval_size: 128,
          eval_split: 'validation',
          metric: 'accuracy',
          metrics: ['accuracy', 'top1', 'loss'],
        },
        'causal-lm': {
          task: 'causal-lm',
          max_length: 64,
          train_size: 512,
          eval_size: 128,
          eval_split: 'validation',
          metric: 'perplexity',
          metrics: ['loss', 'perplexity', 'token_accuracy'],
        },
        'gsm8k-like': {
          task: 'causal-lm',
          max_length: 64,
          train_size: 512,
          eval_size: 64,
          eval_split: 'validation',
          metric: 'exact_match',
          metrics: ['exact_match', 'exact_match_strict', 'loss', 'perplexity', 'token_accuracy'],
        },
      };
      return kinds[task] ?? null;
    }
    default:
      return null;
  }
}

/** MNLI names that fix the evaluated split (the runtime honours them; a table shows each as its own column). */
export const MNLI_SPLIT_NAMES: Record<string, string> = {
  'glue/mnli-m': 'validation_matched',
  'glue/mnli-mm': 'validation_mismatched',
};

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

/** Every dataset name the planner knows statically (for "did you mean" hints). */
export const ALL_DATASETS: readonly string[] = [
  ...GLUE_TASKS.map((t) => `glue/${t}`),
  ...Object.keys(MNLI_SPLIT_NAMES),
  ...VTAB_TASKS.map((t) => `vtab/${t}`),
  'gsm8k',
  ...SYNTHETIC_KINDS.map((k) => `synthetic/${k}`),
];

interface DescribedFamily {
  tasks?: string[];
  per_task?: Record<string, { model_task?: Task; metrics?: string[]; default_metric?: string }>;
  options?: Record<string, OptionSchema>;
}

/**
 * Defaults for a dataset name, or null when the name is not one the runtime reads. With the `datasets`
 * section of the runtime's `describe` (the committed snapshot), its task list, metrics, default metric,
 * model task and option schema win over the static table; split sizes, max length and the evaluated split
 * come from the static table. For image datasets `max_length` is the image resolution in pixels.
 */
export function datasetDefaults(name: string, described?: Record<string, unknown>): DatasetDefaults | null {
  const named = MNLI_SPLIT_NAMES[name];
  if (named) {
    const mnli = datasetDefaults('glue/mnli', described);
    return mnli ? { ...mnli, eval_split: named } : null;
  }
  const st = staticDefaults(name);
  const slash = name.indexOf('/');
  const family = slash < 0 ? name : name.slice(0, slash);
  const task = slash < 0 ? name : name.slice(slash + 1);
  const fam =
    described && Object.keys(described).length ? (described[family] as DescribedFamily | undefined) : undefined;
  if (!fam) return st ? { ...st, options: null } : null;
  if (fam.tasks && !fam.tasks.includes(task)) return null;
  if (!st) return null; // the runtime knows it but we have no defaults for it: refuse rather than guess
  const pt = fam.per_task?.[task];
  return {
    ...st,
    task: pt?.model_task ?? st.task,
    metric: pt?.default_metric ?? st.metric,
    metrics: pt?.metrics ?? st.metrics,
    options: fam.options ?? null,
  };
}

/** Every dataset name known to the runtime description (or the static table without one). */
export function knownDatasets(described?: Record<string, unknown>): string[] {
  if (!described || Object.keys(described).length === 0) return [...ALL_DATASETS];
  return ALL_DATASETS.filter((n) => datasetDefaults(n, described) !== null);
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
  const fam = (described?.['custom'] ?? {}) as {
    options?: Record<string, OptionSchema>;
    per_kind?: Record<string, { model_task: Task; metrics: string[]; default_metric: string }>;
  };
  const fallback = {
    classification: {
      model_task: 'seq-cls' as Task,
      metrics: ['accuracy', 'f1', 'mcc', 'loss'],
      default_metric: 'accuracy',
    },
    regression: {
      model_task: 'seq-cls' as Task,
      metrics: ['pearson', 'spearman', 'mse', 'loss'],
      default_metric: 'pearson',
    },
    lm: {
      model_task: 'causal-lm' as Task,
      metrics: ['loss', 'perplexity', 'token_accuracy'],
      default_metric: 'perplexity',
    },
  }[kind];
  const k = fam.per_kind?.[kind] ?? fallback;
  const splits = Object.keys(f.files ?? {}).filter((s) => s !== 'train');
  return {
    task: k.model_task,
    max_length: kind === 'lm' ? 256 : 128,
    train_size: null,
    eval_size: null,
    eval_split: splits.includes('validation') || splits.length !== 1 ? 'validation' : splits[0]!,
    metric: k.default_metric,
    metrics: k.metrics,
    options: fam.options ?? null,
  };
}
