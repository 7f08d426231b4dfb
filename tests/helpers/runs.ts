/** Small, fast run specs for orchestration tests (the real runtime trains them on the CPU). */
import { randomInt } from 'node:crypto';
import { spawn } from 'node:child_process';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runtimeEnv, runtimePython, spawnRuntime } from '../../launcher/spawn.js';
import type { ArtifactStore } from '../../store/store.js';
import type { CheckpointEvent, DoneEvent } from '../../schemas/events.js';
import { ResultRecord } from '../../schemas/result.js';
import { runId } from '../../planning/planner.js';
import type { PlannedRun, RunSpec } from '../../schemas/runspec.js';
import type { Client } from '@temporalio/client';
import proto from '@temporalio/proto';

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

const STOP_AT = [
  'import sys',
  'from rankflow_runtime.events import take_stdout',
  'from rankflow_runtime.spec import load_spec',
  'from rankflow_runtime.train import run_training',
  'take_stdout()',
  'sys.exit(run_training(load_spec(sys.argv[1]), sys.argv[2], resume=sys.argv[3] or None, stop_at_step=int(sys.argv[4])))',
].join('\n');

/**
 * Real checkpoints of `spec` at each step of `stops` (increasing): the runtime trains to the first stop and
 * checkpoints as if preempted there, then resumes from that checkpoint to the next, and so on. Returns the
 * `checkpoint` events (their folders stay until the process exits).
 */
export async function preemptedCheckpoints(spec: RunSpec, stops: number[]): Promise<CheckpointEvent[]> {
  const dir = await mkdtemp(join(tmpdir(), 'rankflow-stops-'));
  await writeFile(join(dir, 'spec.json'), JSON.stringify(spec));
  const out: CheckpointEvent[] = [];
  for (const [i, stop] of stops.entries()) {
    const resume = out.at(-1)?.path ?? '';
    const args = ['-c', STOP_AT, join(dir, 'spec.json'), join(dir, `out-${i}`), resume, String(stop)];
    const p = spawn(runtimePython(), args, { cwd: dir, env: runtimeEnv({ CUDA_VISIBLE_DEVICES: '' }) });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d) => (stdout += d));
    p.stderr.on('data', (d) => (stderr += d));
    const code = await new Promise<number | null>((resolve) => p.on('close', resolve));
    if (code !== 4) throw new Error(`stopping at step ${stop} exited ${code}: ${stderr.slice(-2000)}`);
    const events = stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { event: string });
    const ck = events.filter((e) => e.event === 'checkpoint').at(-1) as CheckpointEvent | undefined;
    if (!ck || ck.step !== stop) throw new Error(`no checkpoint at step ${stop}`);
    out.push(ck);
  }
  return out;
}

/**
 * When the run workflow's training activity started and completed (s since the epoch; NaN while it has not),
 * from the workflow's history (the benchmarks' overhead breakdown reads it too).
 */
export async function trainingSpan(client: Client, runId: string): Promise<{ start: number; end: number }> {
  const E = proto.temporal.api.enums.v1.EventType;
  const events = (await client.workflow.getHandle(runId).fetchHistory()).events ?? [];
  const train = events.find((e) => e.activityTaskScheduledEventAttributes?.activityType?.name === 'train');
  const of = (e: (typeof events)[number]): string =>
    String(
      e.activityTaskStartedEventAttributes?.scheduledEventId ??
        e.activityTaskCompletedEventAttributes?.scheduledEventId,
    );
  const at = (type: number): number => {
    const t = events.find((e) => train && e.eventType === type && of(e) === String(train.eventId))?.eventTime;
    return t ? Number(t.seconds ?? 0) + (t.nanos ?? 0) / 1e9 : NaN;
  };
  return { start: at(E.EVENT_TYPE_ACTIVITY_TASK_STARTED), end: at(E.EVENT_TYPE_ACTIVITY_TASK_COMPLETED) };
}
