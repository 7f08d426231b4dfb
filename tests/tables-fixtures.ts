/**
 * Result records for the table tests and the table benchmark: valid `ResultRecord`s (checked against the
 * schema in the tests) with chosen metrics, built deterministically. Not a test file itself.
 */
import { createHash } from 'node:crypto';
import type { ResultRecord } from '../schemas/result.js';
import type { Efficiency, SplitEval } from '../schemas/events.js';
import type { RunLabels, RunSpec } from '../schemas/runspec.js';
import { missingRun, runFromRecord, type RunRow } from '../tables/runs.js';

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
  /** The head's share of `trainable` (`head_params`; omitted from the record when undefined). */
  head?: number | null;
  sweep_id?: string;
  recipe?: string | null;
  curve?: { step: number; loss: number }[];
  error?: { kind: string; message: string; hint: string | null } | null;
  /** Per evaluated split (the record's `evals`; `metrics` is then the validation split's). */
  evals?: Record<string, SplitEval>;
  efficiency?: Efficiency;
  wall_s?: number;
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
    ...(o.head !== undefined ? { head_params: o.head } : {}),
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
    ...(o.evals ? { evals: o.evals } : {}),
    ...(o.efficiency ? { efficiency: o.efficiency } : {}),
    timings: {
      started_at: '2026-01-01T00:00:00Z',
      finished_at: '2026-01-01T00:01:00Z',
      wall_s: o.wall_s ?? 60,
      attempts: 1,
    },
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

/**
 * Three methods on three GLUE tasks, three seeds each: a tie for the best CoLA value (Full FT and LoRA),
 * one failed LoRA run on RTE, one missing run of the third method on RTE, and names needing LaTeX escapes.
 */
export function glueRuns(): RunRow[] {
  const datasets = ['glue/sst2', 'glue/cola', 'glue/rte'];
  const base: Record<string, number[]> = {
    full: [0.9, 0.6, 0.7],
    lora: [0.91, 0.6, 0.68],
    my_method: [0.85, 0.55, 0.71],
  };
  const runs: RunRow[] = [];
  for (const method of Object.keys(base)) {
    for (const [i, dataset] of datasets.entries()) {
      for (const seed of [0, 1, 2]) {
        const metric = dataset === 'glue/cola' ? 'mcc' : 'accuracy';
        const o: RecordOptions = {
          method,
          rank: method === 'full' ? null : 8,
          dataset,
          seed,
          metric,
          setting: method === 'my_method' ? 'lr=1e-3 & 50% #2' : '',
          metrics: { [metric]: base[method]![i]! + 0.01 * seed },
          trainable: method === 'full' ? 125_000_000 : method === 'lora' ? 800_000 : 300_000,
          total: 125_000_000 + (method === 'full' ? 0 : method === 'lora' ? 800_000 : 300_000),
          status: method === 'lora' && dataset === 'glue/rte' && seed === 1 ? 'failed' : 'succeeded',
        };
        if (method === 'my_method' && dataset === 'glue/rte' && seed === 2) {
          runs.push(missingRun(`run-missing-${seed}`, 'sweep-test', labelsFor(o)));
          continue;
        }
        runs.push(runFromRecord(makeRecord(o)));
      }
    }
  }
  return runs;
}

/** Three methods on six VTAB-1k tasks (two per group), two seeds each. */
export function vtabRuns(): RunRow[] {
  const runs: RunRow[] = [];
  const tasks = ['vtab/cifar', 'vtab/caltech101', 'vtab/eurosat', 'vtab/resisc45', 'vtab/dmlab', 'vtab/kitti'];
  for (const [mi, method] of ['lora', 'vera', 'linear-probe'].entries()) {
    for (const [ti, t] of tasks.entries()) {
      for (const seed of [0, 1]) {
        runs.push(
          runFromRecord(
            makeRecord({
              method,
              rank: method === 'linear-probe' ? null : 8,
              dataset: t,
              seed,
              metric: 'top1',
              metrics: { top1: 0.5 + 0.05 * ti - 0.03 * mi + 0.002 * seed },
            }),
          ),
        );
      }
    }
  }
  return runs;
}

/** A record's `evals` with one value per split of `metric` (final = best, a two-point curve). */
export function splitEvals(metric: string, values: Record<string, number>): Record<string, SplitEval> {
  const out: Record<string, SplitEval> = {};
  for (const [split, v] of Object.entries(values)) {
    const m = { [metric]: v };
    out[split] = {
      metrics: m,
      best_metrics: m,
      curve: [
        { step: 10, metrics: { [metric]: v - 0.05 } },
        { step: 20, metrics: m },
      ],
    };
  }
  return out;
}

/**
 * A learning-rate sweep with validation and test evaluations: LoRA and Full FT at lr=1e-3 and lr=1e-4 on SST-2
 * and RTE, three seeds. Validation favours lr=1e-3 for LoRA and lr=1e-4 for Full FT; test favours the other
 * (so selecting on test would pick differently). Full FT ran on a GPU, LoRA on the CPU.
 */
export function lrSweepRuns(): RunRow[] {
  const val: Record<string, Record<string, number[]>> = {
    lora: { 'lr=1e-3': [0.9, 0.7], 'lr=1e-4': [0.88, 0.66] },
    full: { 'lr=1e-3': [0.89, 0.64], 'lr=1e-4': [0.92, 0.69] },
  };
  const test: Record<string, Record<string, number[]>> = {
    lora: { 'lr=1e-3': [0.87, 0.65], 'lr=1e-4': [0.9, 0.67] },
    full: { 'lr=1e-3': [0.91, 0.7], 'lr=1e-4': [0.9, 0.66] },
  };
  const runs: RunRow[] = [];
  for (const method of ['lora', 'full']) {
    for (const setting of ['lr=1e-3', 'lr=1e-4']) {
      for (const [di, dataset] of ['glue/sst2', 'glue/rte'].entries()) {
        for (const seed of [0, 1, 2]) {
          const v = val[method]![setting]![di]! + 0.01 * seed;
          const t = test[method]![setting]![di]! - 0.005 * seed;
          const gpu = method === 'full';
          runs.push(
            runFromRecord(
              makeRecord({
                method,
                rank: gpu ? null : 8,
                dataset,
                seed,
                setting,
                metrics: { accuracy: v },
                evals: splitEvals('accuracy', { validation: v, test: t }),
                trainable: gpu ? 4_000_000 : 40_000,
                total: 4_000_000 + (gpu ? 0 : 40_000),
                efficiency: {
                  device: gpu ? 'NVIDIA H100 80GB HBM3' : 'cpu: AMD EPYC 7B13',
                  peak_mem_mb: (gpu ? 2048 : 512) + 8 * seed,
                  mem_kind: gpu ? 'cuda_max_allocated' : 'cpu_max_rss',
                  steps: 20,
                  train_s: (gpu ? 0.4 : 2) + 0.02 * seed,
                  step_s: ((gpu ? 0.4 : 2) + 0.02 * seed) / 20,
                  examples_per_s: (20 * 8) / ((gpu ? 0.4 : 2) + 0.02 * seed),
                },
                wall_s: (gpu ? 10 : 30) + seed,
              }),
            ),
          );
        }
      }
    }
  }
  return runs;
}
