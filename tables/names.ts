/**
 * Names, orderings and groupings that paper tables use: pretty dataset and method names, the GLUE and
 * VTAB-1k benchmark groups, metric direction
 * (higher or lower is better) and whether a metric is a ratio that papers print in percent. Pure data.
 */

/** The GLUE tasks (the names the planner and the runtime use). */
export const GLUE_TASKS = ['cola', 'sst2', 'mrpc', 'qqp', 'stsb', 'mnli', 'qnli', 'rte', 'wnli'] as const;

/**
 * The 19 VTAB-1k tasks by group, as the runtime's VTAB reader and `metrics.vtab_group_means` name them
 * (the standard grouping of Zhai et al. 2019: 7 Natural, 4 Specialized, 8 Structured). The planner's catalog
 * holds the same lists; a test checks that they agree.
 */
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

/** GLUE columns in the order the LoRA / AdaLoRA / DoRA papers print them; WNLI last (not averaged). */
export const GLUE_ORDER = [
  'mnli',
  'mnli-m',
  'mnli-mm',
  'sst2',
  'mrpc',
  'cola',
  'qnli',
  'qqp',
  'rte',
  'stsb',
  'wnli',
] as const;
/** GLUE tasks excluded from the GLUE average (as in the LoRA paper and most PEFT papers: MNLI counts as matched). */
export const GLUE_NOT_AVERAGED: readonly string[] = ['wnli', 'mnli-mm'];

export const VTAB_GROUP_NAMES = ['natural', 'specialized', 'structured'] as const;
export type VtabGroup = (typeof VTAB_GROUP_NAMES)[number];

const PRETTY_DATASET: Record<string, string> = {
  'glue/mnli': 'MNLI',
  'glue/mnli-m': 'MNLI-m',
  'glue/mnli-mm': 'MNLI-mm',
  'glue/sst2': 'SST-2',
  'glue/mrpc': 'MRPC',
  'glue/cola': 'CoLA',
  'glue/qnli': 'QNLI',
  'glue/qqp': 'QQP',
  'glue/rte': 'RTE',
  'glue/stsb': 'STS-B',
  'glue/wnli': 'WNLI',
  'vtab/cifar': 'CIFAR-100',
  'vtab/caltech101': 'Caltech101',
  'vtab/dtd': 'DTD',
  'vtab/oxford_flowers102': 'Flowers102',
  'vtab/oxford_iiit_pet': 'Pets',
  'vtab/svhn': 'SVHN',
  'vtab/sun397': 'Sun397',
  'vtab/patch_camelyon': 'Camelyon',
  'vtab/eurosat': 'EuroSAT',
  'vtab/resisc45': 'Resisc45',
  'vtab/diabetic_retinopathy': 'Retinopathy',
  'vtab/clevr_count': 'Clevr-Count',
  'vtab/clevr_dist': 'Clevr-Dist',
  'vtab/dmlab': 'DMLab',
  'vtab/kitti': 'KITTI-Dist',
  'vtab/dsprites_loc': 'dSpr-Loc',
  'vtab/dsprites_ori': 'dSpr-Ori',
  'vtab/smallnorb_azi': 'sNORB-Azim',
  'vtab/smallnorb_ele': 'sNORB-Ele',
  gsm8k: 'GSM8K',
};

export function prettyDataset(name: string): string {
  return PRETTY_DATASET[name] ?? name;
}

const PRETTY_METHOD: Record<string, string> = {
  full: 'Full FT',
  'linear-probe': 'Linear probe',
  'head-only': 'Head only',
  lora: 'LoRA',
  dora: 'DoRA',
  vera: 'VeRA',
  adalora: 'AdaLoRA',
  pissa: 'PiSSA',
  randlora: 'RandLoRA',
  triadaptlora: 'TriAdaptLoRA',
  sltrain: 'SLTrain',
  loldu: 'LoLDU',
  mos: 'MoS',
  diffora: 'DiffoRA',
  nola: 'NOLA',
  salt: 'SALT',
  b4m: 'B4M',
  bone: 'Bone',
  miss: 'MiSS',
  svfit: 'SVFit',
  dept: 'DePT',
  increlora: 'IncreLoRA',
  snell: 'SNELL',
  snella: 'SNELLA',
  'lora-fair': 'LoRA-FAIR',
  'lora-ggpo': 'LoRA-GGPO',
  lord: 'LoRD',
  loram: 'LoRAM',
};

export function prettyMethod(name: string): string {
  return PRETTY_METHOD[name] ?? name;
}

/** Where a dataset belongs: `glue`, `vtab:<group>`, or null for a stand-alone dataset. */
export function benchmarkOf(
  dataset: string,
): { benchmark: 'glue' | 'vtab'; group: VtabGroup | null; task: string } | null {
  const slash = dataset.indexOf('/');
  if (slash < 0) return null;
  const family = dataset.slice(0, slash);
  const task = dataset.slice(slash + 1);
  if (
    family === 'glue' &&
    ((GLUE_TASKS as readonly string[]).includes(task) || task === 'mnli-m' || task === 'mnli-mm')
  )
    return { benchmark: 'glue', group: null, task };
  if (family === 'vtab') {
    for (const g of VTAB_GROUP_NAMES) {
      if ((VTAB_GROUPS[g] as readonly string[]).includes(task)) return { benchmark: 'vtab', group: g, task };
    }
  }
  return null;
}

/** Sort key for dataset columns: GLUE in paper order, then VTAB-1k in group order, then the rest by name. */
export function datasetOrder(a: string, b: string): number {
  const rank = (d: string): [number, number] => {
    const bm = benchmarkOf(d);
    if (bm?.benchmark === 'glue') return [0, (GLUE_ORDER as readonly string[]).indexOf(bm.task)];
    if (bm?.benchmark === 'vtab') {
      const all: string[] = [...VTAB_GROUPS.natural, ...VTAB_GROUPS.specialized, ...VTAB_GROUPS.structured];
      return [1, all.indexOf(bm.task)];
    }
    return [2, 0];
  };
  const [ga, ia] = rank(a);
  const [gb, ib] = rank(b);
  if (ga !== gb) return ga - gb;
  if (ia !== ib) return ia - ib;
  return a < b ? -1 : a > b ? 1 : 0;
}

/** Metrics where a smaller value is better. Anything else is higher-is-better. */
const LOWER_IS_BETTER = /(^|[_\-/])(loss|perplexity|ppl|mse|mae|rmse|error|err|wer|cer|hd95|nll|bpb|bpc)($|[_\-/])/i;

export type Direction = 'max' | 'min';

export function metricDirection(metric: string): Direction {
  return LOWER_IS_BETTER.test(metric) ? 'min' : 'max';
}

/** Ratio metrics that papers print in percent (scaled by 100 when every value lies in [-1, 1]). */
const RATIO_METRICS = new Set([
  'accuracy',
  'acc',
  'top1',
  'top5',
  'f1',
  'mcc',
  'matthews_correlation',
  'pearson',
  'spearman',
  'spearmanr',
  'exact_match',
  'exact_match_strict',
  'em',
  'dice',
  'iou',
  'miou',
  'pass@1',
  'token_accuracy',
]);

export function isRatioMetric(metric: string): boolean {
  return RATIO_METRICS.has(metric.toLowerCase());
}
