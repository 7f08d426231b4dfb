/** Small, fast run specs for orchestration tests (the real runtime trains them on the CPU). */
import { randomInt } from 'node:crypto';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnRuntime } from '../../launcher/spawn.js';
import type { ArtifactStore } from '../../store/store.js';
import type { DoneEvent } from '../../schemas/events.js';
import { ResultRecord } from '../../schemas/result.js';
import { runId } from '../../planning/planner.js';
import type { PlannedRun, RunSpec } from '../../schemas/runspec.js';

export function tinySpec(
  over: {
    method?: string;
    rank?: number | null;
    options?: Record<string, unknown>;
    seed?: number;
    steps?: number;
    checkpointEvery?: number;
  } = {},
): RunSpec {
  return {
    schema: 'rankflow.run/v1',
    model: {
      name: 'tiny-encoder',
      source: 'builtin',
      task: 'seq-cls',
      config: { hidden_size: 32, num_layers: 1, num_heads: 2, intermediate_size: 64, vocab_size: 512 },
      random_init: true,
    },
    dataset: {
      name: 'synthetic/seq-cls',
      data_root: null,
      max_length: 16,
      train_size: 96,
      eval_size: 32,
      eval_split: 'validation',
      metric: 'accuracy',
      options: {},
    },
    method: {
      name: over.method ?? 'lora',
      rank: over.rank === undefined ? 2 : over.rank,
      options: over.options ?? {},
      targets: [],
    },
    training: {
      optimizer: 'adamw',
      lr: 0.005,
      lr_groups: {},
      weight_decay: 0,
      schedule: 'linear',
      warmup_ratio: 0,
      max_steps: over.steps ?? 8,
      epochs: null,
      batch_size: 8,
      eval_batch_size: 32,
      grad_accum: 1,
      max_grad_norm: 1,
      precision: 'fp32',
      eval_every: null,
      checkpoint_every: over.checkpointEvery ?? 4,
      log_every: 1,
      train_head: true,
    },
    // A random seed keeps run ids (= Temporal workflow ids) unique across test runs on one server.
    seed: over.seed ?? randomInt(1, 2 ** 40),
    device: 'cpu',
  };
}

export function planned(spec: RunSpec): PlannedRun {
  return {
    id: runId(spec),
    spec,
    labels: {
      model: spec.model.name,
      method: spec.method.name,
      rank: spec.method.rank,
      dataset: spec.dataset.name,
      seed: spec.seed,
      setting: '',
      tags: [],
    },
    params: null,
  };
}

/** Polls `fn` until it returns something truthy (errors count as "not yet"). */
export async function waitFor<T>(
  what: string,
  fn: () => Promise<T | null | undefined | false>,
  timeoutMs: number,
): Promise<T> {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    const v = await fn().catch(() => null);
    if (v) return v;
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
}

/** The same spec trained directly by the runtime, never interrupted: the reference for exact resume. */
export async function uninterrupted(spec: RunSpec): Promise<DoneEvent> {
  const dir = await mkdtemp(join(tmpdir(), 'rankflow-ref-'));
  await writeFile(join(dir, 'spec.json'), JSON.stringify(spec));
  let done: DoneEvent | null = null;
  const p = spawnRuntime({
    args: ['run', '--spec', join(dir, 'spec.json'), '--out', join(dir, 'out')],
    logFile: join(dir, 'log'),
    env: { CUDA_VISIBLE_DEVICES: '' },
    onEvent: (e) => {
      if (e.event === 'done') done = e;
    },
  });
  const exit = await p.exit;
  if (exit.code !== 0 || !done) throw new Error(`reference run failed (exit ${exit.code}); log in ${dir}/log`);
  return done;
}

/** The result record of a run, or null. */
export async function readRecord(store: ArtifactStore, runId: string): Promise<ResultRecord | null> {
  const body = await store.get(`results/${runId}.json`);
  return body ? ResultRecord.parse(JSON.parse(body.toString('utf8'))) : null;
}
