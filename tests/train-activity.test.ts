/**
 * The training activity's pure parts (the event reducer, the exit-code → failure map) and, through the
 * Temporal SDK's MockActivityEnvironment with a folder store and the real runtime, a config error that fails
 * once, without retries. No server.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ApplicationFailure } from '@temporalio/common';
import { MockActivityEnvironment } from '@temporalio/testing';
import { exitVerdict, newAttempt, reduceEvent, thin } from '../activities/train-events.js';
import { train } from '../activities/train.js';
import { LocalStore } from '../store/store.js';
import { SlotPool } from '../launcher/slots.js';
import { DEFAULT_POLICY } from '../cli/sweeps.js';
import type { RunnerEvent } from '../schemas/events.js';
import type { RunInput, TrainHeartbeat, TrainOutput } from '../schemas/orchestration.js';
import { planned, tinySpec } from './helpers/runs.js';

const base = { run_id: 'run-0123456789abcdef', ts: 0 } as const;
const ev = (e: Record<string, unknown>): RunnerEvent => ({ ...base, ...e }) as unknown as RunnerEvent;
const heartbeat = (): TrainHeartbeat => ({
  step: 0,
  total_steps: null,
  loss: null,
  checkpoint: null,
  phase: 'loading',
});

describe('reduceEvent: runner events into the attempt and the heartbeat', () => {
  it('tracks steps, loss, phases and the curve, and asks for the effects', () => {
    const a = newAttempt();
    const hb = heartbeat();
    const started = ev({ event: 'started', total_steps: 10, runtime: '0.1', torch: '2', python: '3', device: 'cpu' });
    expect(reduceEvent(a, hb, started)).toEqual({ kind: 'heartbeat' });
    expect(hb).toMatchObject({ total_steps: 10, phase: 'training' });
    expect(reduceEvent(a, hb, ev({ event: 'eval_progress', done: 1, total: 4, step: 2 }))).toEqual({
      kind: 'heartbeat',
    });
    expect(hb).toMatchObject({ phase: 'evaluating', eval_done: 1, eval_total: 4 });
    reduceEvent(a, hb, ev({ event: 'progress', step: 3, total_steps: 10, loss: 0.5, lr: 1e-3 }));
    expect(hb).toMatchObject({ step: 3, loss: 0.5, phase: 'training' });
    expect(hb.eval_done).toBeUndefined();
    expect(a.curve).toEqual([{ step: 3, loss: 0.5 }]);
    const ck = ev({ event: 'checkpoint', step: 3, path: '/x', files: [], best: false, reason: 'interval' });
    expect(reduceEvent(a, hb, ck)).toEqual({ kind: 'checkpoint', event: ck });
    const gen = ev({ event: 'eval', step: 3, split: 'test', metrics: {}, generations: { path: '/g.jsonl', count: 2 } });
    expect(reduceEvent(a, hb, gen)).toEqual({ kind: 'generations', step: 3, path: '/g.jsonl' });
    expect(reduceEvent(a, hb, ev({ event: 'eval', step: 4, split: 'test', metrics: { accuracy: 1 } }))).toEqual({
      kind: 'heartbeat',
    });
    expect(hb.eval).toEqual({ step: 4, metrics: { accuracy: 1 } }); // the dashboard's live evaluation curve
    const err = ev({ event: 'error', kind: 'config', message: 'bad', hint: 'fix it' });
    expect(reduceEvent(a, hb, err)).toEqual({ kind: 'none' });
    expect(a.error).toBe(err);
    expect(a.started).toBe(started);
  });

  it('thins a curve to at most n points, first and last kept', () => {
    const pts = Array.from({ length: 1000 }, (_, i) => i);
    const t = thin(pts, 10);
    expect(t).toHaveLength(10);
    expect(t[0]).toBe(0);
    expect(t.at(-1)).toBe(999);
  });
});

describe('exitVerdict: the exit-code → failure map', () => {
  const exit = (code: number | null, signal: NodeJS.Signals | null = null, badLines: string[] = []) => ({
    code,
    signal,
    badLines,
  });
  const failure = (v: ReturnType<typeof exitVerdict>): ApplicationFailure => {
    if (v.kind !== 'failure') throw new Error(`expected a failure, got ${v.kind}`);
    return v.failure;
  };
  const errorEv = (kind: string, message: string, hint: string | null = null) =>
    ev({ event: 'error', kind, message, hint }) as Extract<RunnerEvent, { event: 'error' }>;

  it('0 is success; 2 is a non-retryable ConfigError with the runtime kind, message and hint', () => {
    expect(exitVerdict({ exit: exit(0), error: null }, 'run-x', 1)).toEqual({ kind: 'ok' });
    const f = failure(exitVerdict({ exit: exit(2), error: errorEv('data', 'no file', 'add it') }, 'run-x', 3));
    expect(f.type).toBe('ConfigError');
    expect(f.nonRetryable).toBe(true);
    expect(f.message).toBe('data error: no file (hint: add it)');
    expect(f.details).toEqual([{ kind: 'data', message: 'no file', hint: 'add it', attempt: 3 }]);
    const bare = failure(exitVerdict({ exit: exit(2), error: null }, 'run-x', 1));
    expect(bare.message).toMatch(/exit 2.*rankflow logs run-x/);
  });

  it('4 is a retryable Preempted; 3, signals and crashes are retryable RunnerFailed, one line', () => {
    const p = failure(exitVerdict({ exit: exit(4), error: null }, 'run-x', 1));
    expect([p.type, p.nonRetryable]).toEqual(['Preempted', false]);
    const oom = failure(exitVerdict({ exit: exit(3), error: errorEv('oom', 'CUDA out of memory') }, 'run-x', 1));
    expect([oom.type, oom.nonRetryable]).toEqual(['RunnerFailed', false]);
    expect(oom.message).toBe(
      'the runtime exited with code 3: oom error: CUDA out of memory; its log: `rankflow logs run-x`',
    );
    const killed = failure(exitVerdict({ exit: exit(null, 'SIGKILL'), error: null }, 'run-x', 1));
    expect(killed.message).toMatch(/^the runtime was killed by SIGKILL; /);
    expect(killed.message).not.toContain('\n');
  });

  it('stray stdout is a protocol error; a full disk in the runtime is its own outcome', () => {
    const bad = failure(exitVerdict({ exit: exit(0, null, ['hello']), error: null }, 'run-x', 1));
    expect(bad.type).toBe('ProtocolError');
    const full = exitVerdict({ exit: exit(3), error: errorEv('internal', 'OSError: No space left on device') }, 'r', 1);
    expect(full).toEqual({ kind: 'no-space', message: 'OSError: No space left on device' });
  });
});

describe('the train activity in MockActivityEnvironment (real runtime, folder store)', () => {
  const tmp = mkdtempSync(join(tmpdir(), 'rankflow-train-'));
  afterAll(() => rmSync(tmp, { recursive: true, force: true }));

  it(
    'a spec the runtime rejects fails once with a non-retryable ConfigError naming the field',
    { timeout: 120_000 },
    async () => {
      const spec = tinySpec({ options: { alpah: 3 } });
      const run = planned(spec);
      const input: RunInput = {
        run_id: run.id,
        sweep_id: 'sweep-train-test',
        recipe: null,
        spec,
        labels: run.labels,
        task_queue: 'rankflow-cpu',
        parent: null,
        policy: DEFAULT_POLICY,
      };
      const deps = { store: new LocalStore(join(tmp, 'store')), workDir: join(tmp, 'work'), slots: SlotPool.cpu(1, 1) };
      const err = await new MockActivityEnvironment()
        .run<[RunInput], TrainOutput, (i: RunInput) => Promise<TrainOutput>>((i) => train(deps, i), input)
        .then(
          () => null,
          (e: unknown) => e,
        );
      expect(err).toBeInstanceOf(ApplicationFailure);
      expect((err as ApplicationFailure).nonRetryable).toBe(true);
      expect((err as ApplicationFailure).type).toBe('ConfigError');
      expect((err as ApplicationFailure).message).toMatch(/method\.options\.alpah: unknown option/);
      // the attempt's log went to the store
      expect((await deps.store.list(`logs/${run.id}/`)).length).toBe(1);
    },
  );
});
