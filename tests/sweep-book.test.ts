/** Unit tests of the sweep workflow's bookkeeping (workflows/sweep-book.ts): no Temporal, no servers. */
import { describe, expect, it } from 'vitest';
import type { SweepInput } from '../schemas/orchestration.js';
import { type Entry, SweepBook } from '../workflows/sweep-book.js';

const POLICY = {
  max_attempts: 2,
  heartbeat_timeout_s: 60,
  run_timeout_s: 600,
  keep_checkpoints: 2,
  terminate_grace_s: 5,
};
const input = (total: number, concurrency = 2): SweepInput => ({
  sweep_id: 'sweep-x',
  total,
  concurrency,
  page_size: 10,
  max_history_events: 1000,
  policy: POLICY,
  state: null,
});
// The book reads only these fields of a page entry.
const entry = (id: string, more: { done?: boolean; after?: string[]; needed?: boolean } = {}): Entry =>
  ({ input: { run_id: id }, done: false, ...more }) as unknown as Entry;
const outcome = (id: string, state: 'succeeded' | 'failed' | 'cancelled' | 'skipped') => ({
  run_id: id,
  state,
  metric: null,
  message: state,
});

describe('SweepBook', () => {
  it('counts a run once: the second report of a run (signal and close) is ignored, an unknown one too', () => {
    const b = new SweepBook(input(3));
    b.running.add('a');
    b.finish(outcome('a', 'failed'));
    b.finish(outcome('a', 'failed'));
    b.finish(outcome('zz', 'succeeded'));
    expect(b.outcomes).toEqual({ failed: 1 });
    expect(b.failed.map((f) => f.run_id)).toEqual(['a']);
    expect(b.running.size).toBe(0);
  });

  it('admits manifest entries: done ones are skipped, waiting ones held by index, blocked ones reported', () => {
    const b = new SweepBook(input(4));
    expect(b.admit(entry('up', { needed: true }))).toEqual({ state: 'ready' });
    expect(b.upstream).toEqual({ up: 'running' });
    expect(b.admit(entry('done', { done: true, needed: true }))).toEqual({ state: 'skipped' });
    expect(b.upstream.done).toBe('succeeded');
    expect(b.admit(entry('down', { after: ['up'] }))).toEqual({ state: 'waiting' });
    expect([...b.waiting.keys()]).toEqual([2]);
    b.upstream.up = 'failed';
    expect(b.admit(entry('down2', { after: ['done', 'up'] }))).toEqual({ state: 'blocked', dep: 'up' });
    expect(b.nextIndex).toBe(4);
    expect(b.status().counts).toMatchObject({ skipped: 1, pending: 1, running: 0 });
  });

  it('an upstream run that ends settles its waiting runs: succeeded (or skipped) releases, failed blocks', () => {
    const b = new SweepBook(input(2));
    b.admit(entry('up', { needed: true }));
    b.running.add('up');
    b.admit(entry('down', { after: ['up'] }));
    expect(b.settledWaiting()).toBe(false);
    expect(b.stuck()).toBe(false); // 'up' still runs
    b.finish(outcome('up', 'skipped'));
    expect(b.upstream.up).toBe('succeeded');
    expect(b.settledWaiting()).toBe(true);
    expect(b.awake()).toBe(true);

    const c = new SweepBook(input(2));
    c.admit(entry('up', { needed: true }));
    c.running.add('up');
    c.finish(outcome('up', 'cancelled'));
    expect(c.upstream.up).toBe('failed');
    c.blocked(entry('mid', { needed: true }));
    expect(c.upstream.mid).toBe('failed');
    expect(c.outcomes).toEqual({ cancelled: 1, blocked: 1 });
  });

  it('is stuck when nothing runs and the waiting runs wait for runs outside the sweep', () => {
    const b = new SweepBook(input(1));
    b.admit(entry('down', { after: ['elsewhere'] }));
    expect(b.stuck()).toBe(true);
    expect(b.allDone()).toBe(false);
    expect(b.unsettledDep(b.waiting.get(0)!)).toBe('elsewhere');
  });

  it('reads the manifest only with a free slot, not paused or cancelled, and not past its end', () => {
    const b = new SweepBook(input(3, 2));
    expect(b.mayRead(0)).toBe(true);
    expect(b.mayRead(2)).toBe(false);
    b.running.add('a');
    expect(b.mayRead(1)).toBe(false);
    b.paused = true;
    expect(b.mayRead(0)).toBe(false);
    expect(b.awake()).toBe(false);
    b.paused = false;
    b.cancelled = true;
    expect(b.mayRead(0)).toBe(false);
    expect(b.awake()).toBe(true);
  });

  it('carries its state across continue-as-new: the next generation sees the same status, waiting runs re-read', () => {
    const b = new SweepBook(input(5, 3));
    b.admit(entry('up', { needed: true }));
    b.running.add('up');
    b.admit(entry('down', { after: ['up'] }));
    b.admit(entry('other'));
    b.running.add('other');
    b.finish(outcome('other', 'failed'));
    b.paused = true;
    const next = new SweepBook({ ...input(5, 3), state: b.carried() });
    expect(next.status()).toEqual({ ...b.status(), generation: 1 });
    expect(next.upstream).toEqual({ up: 'running' });
    expect([...next.waiting.entries()]).toEqual([[1, null]]);
    expect(next.settledWaiting()).toBe(true); // a waiting run not read back yet is looked at again
    expect(new SweepBook(input(2)).carried()).toEqual({
      next_index: 0,
      running: [],
      outcomes: {},
      failed: [],
      paused: false,
      generation: 1,
    });
  });

  it('keeps the last 50 failures', () => {
    const b = new SweepBook(input(60, 60));
    for (let i = 0; i < 60; i++) {
      b.running.add(`r${i}`);
      b.finish(outcome(`r${i}`, 'failed'));
    }
    expect(b.status().failed).toHaveLength(50);
    expect(b.carried().failed[0]!.run_id).toBe('r10');
    expect(b.status().counts.failed).toBe(60);
  });
});
