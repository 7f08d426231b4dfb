/**
 * Recipe composition, written once: how a layer of settings is laid over another. Used for recipe files
 * (`preset:` and `extends:`, cli/recipe-io.ts), stages (a stage's fields over its recipe's, stages.ts), and the
 * planner's training layers (defaults → recipe → zip → dataset_settings → dataset entry → method_settings →
 * method entry → matching overrides) and dataset / method entries over their `*_settings`.
 *
 * Rules: a field set in the upper layer wins; `lr_groups` (the only mapping of a training layer) merges group
 * by group; setting `max_steps` clears an inherited `epochs`, and vice versa (a run trains for a number of
 * steps or of epochs).
 */
import type { DatasetEntry, TrainingLayer } from '../schemas/recipe.js';
import type { DatasetSpec } from '../schemas/runspec.js';
import type { Task } from './plan-types.js';

/** The `max_steps`/`epochs` rule: `layer` setting one of them clears the other in `merged`, unless it sets both. */
export function applyLengthRule(
  merged: Record<string, unknown>,
  layer: { max_steps?: unknown; epochs?: unknown },
): void {
  if (layer.max_steps !== undefined && layer.epochs === undefined) delete merged.epochs;
  if (layer.epochs !== undefined && layer.max_steps === undefined) delete merged.max_steps;
}

/** Lay one training layer over `out` (in place): set fields win, `lr_groups` merge, the length rule. */
export function overlayTraining(out: Record<string, unknown>, layer: TrainingLayer): void {
  for (const [k, v] of Object.entries(layer)) {
    if (v === undefined) continue;
    if (k === 'lr_groups') {
      out.lr_groups = { ...((out.lr_groups as Record<string, unknown>) ?? {}), ...(v as Record<string, unknown>) };
    } else {
      out[k] = v;
    }
  }
  applyLengthRule(out, layer);
}

/** Merge training layers, lowest first, into one value spec (field -> value or list of values). */
export function mergeLayers(layers: readonly (TrainingLayer | undefined)[]): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const l of layers) if (l) overlayTraining(out, l);
  return out;
}

/** The training settings beneath every recipe. */
export function defaultTraining(task: Task): TrainingLayer {
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

/** A field of an entry over its settings (`datasets[i]` over `dataset_settings[name]`): the entry's when set. */
export function entryOver<E extends object, K extends keyof E>(entry: E, settings: Partial<E>, k: K): E[K] | undefined {
  return entry[k] !== undefined ? entry[k] : settings[k];
}

/** The optional DatasetSpec fields saying where and how data is read (each only when set: stable run ids). */
export function dataSource(e: Partial<DatasetEntry>, st: Partial<DatasetEntry>): Partial<DatasetSpec> {
  const pick = <K extends keyof DatasetEntry>(k: K): DatasetEntry[K] | undefined => entryOver(e, st, k);
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
