/**
 * Result records for the table tests and the table benchmark: valid `ResultRecord`s (checked against the
 * schema in the tests) with chosen metrics, built deterministically. Not a test file itself.
 */
import { createHash } from 'node:crypto';
import type { ResultRecord } from '../schemas/result.js';
import type { RunLabels, RunSpec } from '../schemas/runspec.js';

export interface RecordOptions {
  method: string;
  rank?: number | null;
  dataset: string;
  seed: number;
  setting?: string;
  model?: string;
  tags?: string[];
  /** Headline metric of the dataset (spec.dataset.metric). */
  metric?: string;
  metrics?: Record<string, number>;
  best_metrics?: Record<string, number>;
  status?: 'succeeded' | 'failed';
  trainable?: number | null;
  total?: number | null;
  sweep_id?: string;
  recipe?: string | null;
  curve?: { step: number; loss: number }[];
  error?: { kind: string; message: string; hint: string | null } | null;
}

export function runIdFor(o: Pick<RecordOptions, 'method' | 'rank' | 'dataset' | 'seed' | 'setting' | 'model'>): string {
  const h = createHash('sha256')
    .update(JSON.stringify([o.model ?? 'tiny-encoder', o.method, o.rank ?? null, o.dataset, o.seed, o.setting ?? '']))
    .digest('hex');
  return `run-${h.slice(0, 16)}`;
}

export function labelsFor(o: RecordOptions): RunLabels {
  return {
    model: o.model ?? 'tiny-encoder',
    method: o.method,
    rank: o.rank ?? null,
    dataset: o.dataset,
    seed: o.seed,
    setting: o.setting ?? '',
    tags: o.tags ?? [],
  };
}

export function specFor(o: RecordOptions): RunSpec {
  return {
    schema: 'rankflow.run/v1',
    model: { name: o.model ?? 'tiny-encoder', source: 'builtin', task: 'seq-cls', config: {}, random_init: true },
    dataset: {
      name: o.dataset,
      data_root: null,
      max_length: 32,
      train_size: 256,
      eval_size: 64,
      eval_split: 'validation',
      metric: o.metric ?? 'accuracy',
      options: {},
    },
    method: { name: o.method, rank: o.rank ?? null, options: {}, targets: [] },
    training: {
      optimizer: 'adamw',
      lr: 1e-3,
      lr_groups: {},
      weight_decay: 0,
      schedule: 'linear',
      warmup_ratio: 0,
      max_steps: 20,
      epochs: null,
      batch_size: 8,
      eval_batch_size: 16,
      grad_accum: 1,
      max_grad_norm: 1,
      precision: 'fp32',
      eval_every: null,
      checkpoint_every: null,
      log_every: 5,
      train_head: true,
    },
    seed: o.seed,
    device: 'cpu',
  };
}

export function makeRecord(o: RecordOptions): ResultRecord {
  const status = o.status ?? 'succeeded';
  const metrics = status === 'succeeded' ? (o.metrics ?? { [o.metric ?? 'accuracy']: 0.5 }) : {};
  return {
    schema: 'rankflow.result/v1',
    run_id: runIdFor(o),
    sweep_id: o.sweep_id ?? 'sweep-test',
    recipe: o.recipe === undefined ? 'recipes/test.yaml' : o.recipe,
    status,
    spec: specFor(o),
    labels: labelsFor(o),
    metrics,
    best_metrics: status === 'succeeded' ? (o.best_metrics ?? metrics) : {},
    best_step: status === 'succeeded' ? 20 : null,
    trainable_params: o.trainable === undefined ? 1000 : o.trainable,
    total_params: o.total === undefined ? 100000 : o.total,
    curve: o.curve ?? [
      { step: 5, loss: 1.0 },
      { step: 10, loss: 0.8 },
      { step: 15, loss: 0.7 },
      { step: 20, loss: 0.65 },
    ],
    error:
      status === 'failed'
        ? (o.error ?? { kind: 'nan', message: 'loss became NaN at step 7', hint: 'lower the learning rate' })
        : null,
    timings: { started_at: '2026-01-01T00:00:00Z', finished_at: '2026-01-01T00:01:00Z', wall_s: 60, attempts: 1 },
    versions: { rankflow: '0.1.0', git: null, runtime: '0.1.0', torch: '2.11.0', python: '3.11' },
    worker: { host: 'test', slot: 'cpu-0' },
  };
}

/** A small deterministic pseudo-random generator (mulberry32) for benchmark data. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
