/**
 * Names, orderings and groupings that paper tables use: pretty dataset and method names and the papers' column
 * order (presentation, here); the GLUE tasks, VTAB-1k groups, metric directions and ratio-ness come from the
 * runtime's catalogue (schemas/catalog.ts), never restated here. Pure data.
 */
import {
  benchmarkOfDataset,
  GLUE_TASKS as CATALOG_GLUE,
  metricInfo,
  VTAB_GROUPS as CATALOG_VTAB,
} from '../schemas/catalog.js';

/** The GLUE tasks (the runtime catalogue's names). */
export const GLUE_TASKS = CATALOG_GLUE;

/** The 19 VTAB-1k tasks by group (the catalogue's: 7 Natural, 4 Specialized, 8 Structured). */
export const VTAB_GROUPS = CATALOG_VTAB;

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

/** Where a dataset belongs: `glue`, `vtab:<group>`, or null for a stand-alone dataset (the catalogue's). */
export function benchmarkOf(
  dataset: string,
): { benchmark: 'glue' | 'vtab'; group: VtabGroup | null; task: string } | null {
  const b = benchmarkOfDataset(dataset);
  if (!b) return null;
  return { benchmark: b.name, group: b.name === 'vtab' ? (b.group as VtabGroup) : null, task: b.task };
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

export type Direction = 'max' | 'min';

/** Whether higher (`max`) or lower (`min`) is better, from the catalogue (`eval_loss` is `loss`'s). */
export function metricDirection(metric: string): Direction {
  return metricInfo(metric).direction;
}

/** Whether papers print the metric in percent (a ratio; scaled by 100 when every value lies in [-1, 1]). */
export function isRatioMetric(metric: string): boolean {
  return metricInfo(metric).ratio;
}
