/** The run spec of the orchestration benchmarks: LoRA on the built-in tiny encoder, synthetic data, on the CPU. */
import { runId } from '../../planning/planner.js';
import type { PlannedRun, RunSpec } from '../../schemas/runspec.js';

export interface BenchSize {
  maxLength: number;
  trainSize: number;
  evalSize: number;
  rank: number;
  steps: number;
  batchSize: number;
  evalBatchSize: number;
  logEvery: number;
}

export function benchSpec(seed: number, size: BenchSize): RunSpec {
  return {
    schema: 'rankflow.run/v1',
    model: { name: 'tiny-encoder', source: 'builtin', task: 'seq-cls', config: {}, random_init: true },
    dataset: {
      name: 'synthetic/seq-cls',
      data_root: null,
      max_length: size.maxLength,
      train_size: size.trainSize,
      eval_size: size.evalSize,
      eval_split: 'validation',
      metric: 'accuracy',
      options: {},
    },
    method: { name: 'lora', rank: size.rank, options: {}, targets: [] },
    training: {
      optimizer: 'adamw',
      lr: 1e-3,
      lr_groups: {},
      weight_decay: 0,
      schedule: 'constant',
      warmup_ratio: 0,
      max_steps: size.steps,
      epochs: null,
      batch_size: size.batchSize,
      eval_batch_size: size.evalBatchSize,
      grad_accum: 1,
      max_grad_norm: null,
      precision: 'fp32',
      eval_every: null,
      checkpoint_every: null,
      log_every: size.logEvery,
      train_head: true,
    },
    seed,
    device: 'cpu',
  };
}

/** `n` planned runs of `size`, seeds `base`, `base + 1`, ... (a fresh base gives fresh run ids). */
export function benchRuns(n: number, base: number, size: BenchSize): PlannedRun[] {
  return Array.from({ length: n }, (_, i) => {
    const s = benchSpec(base + i, size);
    const labels = {
      model: 'tiny-encoder',
      method: 'lora',
      rank: size.rank,
      dataset: 'synthetic/seq-cls',
      seed: s.seed,
    };
    return { id: runId(s), spec: s, labels: { ...labels, setting: '', tags: [] }, params: null };
  });
}
