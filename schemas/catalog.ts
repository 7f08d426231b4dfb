/**
 * The runtime's catalogue of datasets and metrics (rankflow_runtime/catalog.py), read from the committed
 * `describe` snapshot (schemas/methods.generated.json, `npm run gen`): dataset tasks with their defaults and
 * benchmark group, the GLUE tasks and VTAB-1k groups, and each metric's direction and ratio-ness. The
 * planner and the tables read these facts here; nothing in TypeScript restates them. Pure data.
 */
import snapshotJson from './methods.generated.json' with { type: 'json' };
import {
  DatasetFamilyDescription,
  MetricDescription,
  type DatasetDefaultsDescription,
  type DatasetTaskDescription,
} from './describe.js';
import { z } from 'zod';

const SNAPSHOT = z
  .object({
    datasets: z.record(z.string(), DatasetFamilyDescription),
    metrics: z.record(z.string(), MetricDescription),
    models: z.record(z.string(), z.unknown()),
  })
  .parse(snapshotJson);

/** The `datasets` section of the committed snapshot (what planning uses when it is given no other). */
export const SNAPSHOT_DATASETS: Record<string, DatasetFamilyDescription> = SNAPSHOT.datasets;
/** The `models` section of the committed snapshot. */
export const SNAPSHOT_MODELS: Record<string, unknown> = SNAPSHOT.models;
/** The metric catalogue. */
export const METRICS: Record<string, MetricDescription> = SNAPSHOT.metrics;

const families = (described?: Record<string, unknown>): Record<string, DatasetFamilyDescription> =>
  described && Object.keys(described).length
    ? (described as Record<string, DatasetFamilyDescription>)
    : SNAPSHOT_DATASETS;

/** `family/task` (or `gsm8k`) split in two. */
export function splitDatasetName(name: string): { family: string; task: string } {
  const slash = name.indexOf('/');
  return slash < 0 ? { family: name, task: name } : { family: name.slice(0, slash), task: name.slice(slash + 1) };
}

/** A named task of the catalogue with its facts; `named_splits` (glue/mnli-mm) resolve to their task. */
export function datasetTask(
  name: string,
  described?: Record<string, unknown>,
): { family: string; task: string; facts: DatasetTaskDescription; eval_split?: string } | null {
  const { family, task } = splitDatasetName(name);
  const fam = families(described)[family];
  if (!fam) return null;
  const named = fam.named_splits?.[task];
  const key = named ? named.task : task;
  if (!fam.tasks.includes(key)) return null;
  const facts = fam.per_task?.[key];
  if (!facts) return null;
  return named ? { family, task: key, facts, eval_split: named.eval_split } : { family, task: key, facts };
}

/** The spec defaults of a dataset name, or null when the catalogue has none (not plannable). */
export function datasetTaskDefaults(
  name: string,
  described?: Record<string, unknown>,
): (DatasetDefaultsDescription & { model_task: string; metric: string; metrics: string[] }) | null {
  const t = datasetTask(name, described);
  if (!t?.facts.defaults) return null;
  const d = t.facts.defaults;
  return {
    ...d,
    eval_split: t.eval_split ?? d.eval_split,
    model_task: t.facts.model_task,
    metric: t.facts.default_metric,
    metrics: t.facts.metrics,
  };
}

/** Every plannable dataset name of the catalogue (benchmark tasks, named splits, synthetic kinds). */
export function plannableDatasets(described?: Record<string, unknown>): string[] {
  const out: string[] = [];
  for (const [family, fam] of Object.entries(families(described))) {
    for (const task of fam.tasks) {
      if (!fam.per_task?.[task]?.defaults) continue;
      out.push(family === task ? task : `${family}/${task}`);
    }
    for (const alias of Object.keys(fam.named_splits ?? {})) out.push(`${family}/${alias}`);
  }
  return out;
}

/** Names that fix the evaluated split: `glue/mnli-mm` -> `validation_mismatched`. */
export function namedSplits(described?: Record<string, unknown>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [family, fam] of Object.entries(families(described)))
    for (const [alias, n] of Object.entries(fam.named_splits ?? {})) out[`${family}/${alias}`] = n.eval_split;
  return out;
}

/** The GLUE tasks of the catalogue. */
export const GLUE_TASKS: readonly string[] = SNAPSHOT_DATASETS['glue']?.tasks ?? [];

/** The VTAB-1k tasks by group (Natural, Specialized, Structured). */
export const VTAB_GROUPS: Record<'natural' | 'specialized' | 'structured', readonly string[]> = {
  natural: SNAPSHOT_DATASETS['vtab']?.groups?.['natural'] ?? [],
  specialized: SNAPSHOT_DATASETS['vtab']?.groups?.['specialized'] ?? [],
  structured: SNAPSHOT_DATASETS['vtab']?.groups?.['structured'] ?? [],
};

/** The benchmark a dataset name belongs to (GLUE, or a VTAB-1k group), or null. */
export function benchmarkOfDataset(name: string): { name: 'glue' | 'vtab'; group: string | null; task: string } | null {
  const { family, task } = splitDatasetName(name);
  const t = datasetTask(name);
  if (!t?.facts.benchmark) return null;
  return { ...t.facts.benchmark, task: family === 'glue' ? task : t.task };
}

/**
 * A metric's catalogue entry. A name the catalogue lacks takes the entry of its last `_`/`-`/`/`-separated
 * part that it has (`eval_loss` is `loss`); else it is higher-is-better and not a ratio.
 */
export function metricInfo(metric: string): MetricDescription {
  const direct = METRICS[metric] ?? METRICS[metric.toLowerCase()];
  if (direct) return direct;
  const parts = metric.toLowerCase().split(/[_\-/]/);
  for (let i = parts.length - 1; i >= 0; i--) {
    const m = METRICS[parts[i]!];
    if (m) return m;
  }
  return { direction: 'max', ratio: false, help: '' };
}
