/** What a person watching a sweep reads: run names, progress lines, sweep states, failure lines, export's reason. */
import { describe, expect, it } from 'vitest';
import { firstLine, sweepState } from '../cli/commands/orchestrate.js';
import { whyThisStep } from '../cli/commands/export.js';
import { formatCounts, formatRunProgress, runLabel } from '../cli/sweeps.js';
import { trainingQueues } from '../cli/queues.js';
import type { SweepStatus } from '../schemas/orchestration.js';

const counts = { succeeded: 0, skipped: 0, failed: 0, cancelled: 0, running: 0, pending: 0 };
const status = (over: Partial<SweepStatus['counts']>, extra: Partial<SweepStatus> = {}): SweepStatus =>
  ({
    total: 3,
    counts: { ...counts, ...over },
    running: [],
    failed: [],
    paused: false,
    cancelled: false,
    ...extra,
  }) as unknown as SweepStatus;

describe('status lines', () => {
  it('name runs by method, rank, dataset and seed, with the id', () => {
    const label = runLabel({ method: 'lora', rank: 8, dataset: 'glue/sst2', seed: 1 });
    expect(label).toBe('lora r=8 glue/sst2 seed 1');
    expect(runLabel({ method: 'full', rank: null, dataset: 'gsm8k', seed: 0 })).toBe('full gsm8k seed 0');
    const p = { run_id: 'run-abc', step: 0, total_steps: 40, loss: null, attempt: 1, phase: 'training' as const };
    expect(formatRunProgress(p, label)).toBe('lora r=8 glue/sst2 seed 1  (run-abc)  step 0/40');
    expect(formatRunProgress({ ...p, step: 10, loss: 0.5 }, label)).toBe(
      'lora r=8 glue/sst2 seed 1  (run-abc)  step 10/40  loss 0.5000',
    );
    expect(formatRunProgress({ ...p, step: null, total_steps: null, phase: null }, '')).toBe(
      'run-abc  loading model and data',
    );
    expect(formatRunProgress({ ...p, step: 40, phase: 'evaluating', eval_done: 12, eval_total: 50 }, '')).toBe(
      'run-abc  step 40/40  evaluating 12/50',
    );
    // a run the sweep started ahead of the slots: its training waits in the task queue
    expect(formatRunProgress({ ...p, step: null, phase: null, queued: true }, label)).toBe(
      'lora r=8 glue/sst2 seed 1  (run-abc)  waiting for a free slot',
    );
  });

  it('counts: runs queued for a slot are told apart from those training', () => {
    const s = status({ running: 4, pending: 10, succeeded: 2 }, { total: 16 } as Partial<SweepStatus>);
    expect(formatCounts(s)).toBe('2/16 done: 2 succeeded, 0 skipped, 0 failed; 4 running, 10 pending');
    expect(formatCounts(s, 2)).toBe(
      '2/16 done: 2 succeeded, 0 skipped, 0 failed; 2 running, 2 queued for a slot, 10 pending',
    );
  });

  it('sweep states: failed when every run failed, cancelling while cancelling', () => {
    expect(sweepState(status({ failed: 3 }), 'COMPLETED')).toBe('failed');
    expect(sweepState(status({ failed: 2, succeeded: 1 }), 'COMPLETED')).toBe('completed');
    expect(sweepState(status({ running: 2 }, { cancelled: true } as Partial<SweepStatus>), null)).toBe('cancelling');
    expect(sweepState(status({ running: 2 }), null)).toBe('running');
    expect(
      sweepState(status({ cancelled: 2, succeeded: 1 }, { cancelled: true } as Partial<SweepStatus>), 'COMPLETED'),
    ).toBe('cancelled');
  });

  it('failure lines never carry a stack trace', () => {
    expect(firstLine('Traceback (most recent call last):\n  File "x.py", line 1\nValueError: bad')).toBe(
      'File "x.py", line 1'.replace(/.*/, 'ValueError: bad'),
    );
    expect(firstLine('internal error: boom\n    at foo (bar.js:1)')).toBe('internal error: boom');
  });

  it("the training queues of a sweep are those of its runs' device classes", () => {
    const run = (device: 'cpu' | 'cuda' | 'auto') => ({ spec: { device } }) as never;
    expect(
      trainingQueues({ cpu: 'q-cpu', cuda: 'q-gpu', auto: 'q-cpu' }, [run('cpu'), run('auto'), run('cuda')]),
    ).toEqual(['q-cpu', 'q-gpu']);
  });
});

describe('export says which step it took and why', () => {
  const ck = (step: number, best: boolean) => ({ step, best }) as never;
  it('the best step when it is not the final one, the final one when it is both', () => {
    expect(whyThisStep(ck(20, true), [ck(20, true), ck(40, false)])).toMatch(
      /^step 20: the best evaluation .*`table --best`.*final step 40.*`--step 40`/,
    );
    expect(whyThisStep(ck(40, true), [ck(20, false), ck(40, true)])).toMatch(/final step, which is also the best/);
    expect(whyThisStep(ck(40, false), [ck(40, false)])).toMatch(/newest stored checkpoint/);
    expect(whyThisStep(ck(20, true), [ck(20, true), ck(40, false)], 20)).toBe('step 20: asked for with --step');
  });
});

describe('MNLI matched and mismatched in a table', () => {
  it('are two columns side by side, each with its own seeds; only matched counts in the GLUE average', async () => {
    const { runFromRecord } = await import('../tables/runs.js');
    const { buildTable } = await import('../tables/table.js');
    const { makeRecord } = await import('./tables-fixtures.js');
    const runs = [0, 1, 2].flatMap((seed) => [
      runFromRecord(
        makeRecord({
          method: 'lora',
          rank: 8,
          dataset: 'glue/mnli',
          seed,
          metric: 'accuracy',
          metrics: { accuracy: 0.8 + seed / 100 },
        }),
      ),
      runFromRecord(
        makeRecord({
          method: 'lora',
          rank: 8,
          dataset: 'glue/mnli-mm',
          seed,
          metric: 'accuracy',
          metrics: { accuracy: 0.7 + seed / 100 },
        }),
      ),
      runFromRecord(
        makeRecord({
          method: 'lora',
          rank: 8,
          dataset: 'glue/sst2',
          seed,
          metric: 'accuracy',
          metrics: { accuracy: 0.9 },
        }),
      ),
    ]);
    const t = buildTable(runs);
    const keys = t.columns.map((c) => c.key);
    expect(keys.slice(0, 3)).toEqual(['glue/mnli', 'glue/mnli-mm', 'glue/sst2']);
    const cells = t.rows[0]!.cells;
    const mm = cells[keys.indexOf('glue/mnli-mm')]! as unknown as { n: number; mean: number };
    expect(mm.n).toBe(3);
    expect(mm.mean).toBeCloseTo(71, 6); // ×100 in tables
  });
});
