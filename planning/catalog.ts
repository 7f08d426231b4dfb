/**
 * What the planner knows about models and datasets without asking the runtime: the built-in models,
 * the dataset families with their tasks, and the per-dataset defaults (split sizes, max length, metric,
 * evaluated split) that a recipe may override. Pure data.
 */
import type { RunSpec } from '../schemas/runspec.js';

type Task = RunSpec['model']['task'];

/** Built-in CPU-sized models of the runtime and the task head each carries. */
export const BUILTIN_MODELS: Record<string, { task: Task }> = {
  'tiny-encoder': { task: 'seq-cls' },
  'tiny-vit': { task: 'img-cls' },
  'tiny-decoder': { task: 'causal-lm' },
};

export const GLUE_TASKS = ['cola', 'sst2', 'mrpc', 'qqp', 'stsb', 'mnli', 'qnli', 'rte', 'wnli'] as const;

/** The 19 VTAB-1k tasks, by group (names as the runtime's VTAB reader and metrics use them). */
export const VTAB_GROUPS = {
  natural: ['cifar', 'caltech101', 'dtd', 'oxford_flowers102', 'oxford_iiit_pet', 'svhn', 'sun397'],
  specialized: ['patch_camelyon', 'eurosat', 'resisc45', 'diabetic_retinopathy'],
  structured: [
    'clevr_count', 'clevr_dist', 'dmlab', 'kitti', 'dsprites_loc', 'dsprites_ori', 'smallnorb_azi', 'smallnorb_ele',
  ],
} as const;
export const VTAB_TASKS: readonly string[] = [...VTAB_GROUPS.natural, ...VTAB_GROUPS.specialized, ...VTAB_GROUPS.structured];

export const SYNTHETIC_KINDS = ['seq-cls', 'img-cls', 'causal-lm'] as const;

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
}

const GLUE_METRIC: Record<string, { metric: string; metrics: string[] }> = {
  cola: { metric: 'mcc', metrics: ['mcc', 'accuracy'] },
  stsb: { metric: 'pearson', metrics: ['pearson', 'spearman', 'mse'] },
  mrpc: { metric: 'accuracy', metrics: ['accuracy', 'f1'] },
  qqp: { metric: 'accuracy', metrics: ['accuracy', 'f1'] },
};

/**
 * Defaults for a dataset name, or null when the name is not one the runtime reads.
 * For image datasets `max_length` is the image resolution in pixels.
 */
export function datasetDefaults(name: string): DatasetDefaults | null {
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
      return { task: 'img-cls', max_length: 224, train_size: 1000, eval_size: null, eval_split: 'test', metric: 'top1', metrics: ['top1', 'accuracy'] };
    case 'gsm8k':
      if (slash >= 0) return null;
      return { task: 'causal-lm', max_length: 512, train_size: null, eval_size: null, eval_split: 'test', metric: 'exact_match', metrics: ['exact_match', 'exact_match_strict'] };
    case 'synthetic': {
      if (!(SYNTHETIC_KINDS as readonly string[]).includes(task)) return null;
      const t = task as Task;
      return {
        task: t,
        max_length: t === 'img-cls' ? 32 : t === 'seq-cls' ? 32 : 64,
        train_size: 512,
        eval_size: 128,
        eval_split: 'validation',
        metric: t === 'causal-lm' ? 'loss' : 'accuracy',
        metrics: t === 'causal-lm' ? ['loss', 'perplexity', 'accuracy'] : ['accuracy'],
      };
    }
    default:
      return null;
  }
}

/** Every dataset name the planner accepts (for "did you mean" hints). */
export const ALL_DATASETS: readonly string[] = [
  ...GLUE_TASKS.map((t) => `glue/${t}`),
  ...VTAB_TASKS.map((t) => `vtab/${t}`),
  'gsm8k',
  ...SYNTHETIC_KINDS.map((k) => `synthetic/${k}`),
];
