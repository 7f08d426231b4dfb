/**
 * `rankflow export`'s choices, on a real artifact store in a local folder: which spec (a run that never
 * finished is found through the sweep manifest that lists it; another sweep's broken manifest does not hide
 * it) and which checkpoint (--step, else the newest marked best, else the newest).
 */
import { afterAll, describe, expect, it } from 'vitest';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LocalStore } from '../store/store.js';
import type { StoredCheckpoint } from '../store/checkpoints.js';
import { findRunSpec, pickCheckpoint } from '../cli/commands/export.js';
import { planned, tinySpec } from './helpers/runs.js';

const dirs: string[] = [];
afterAll(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

const ck = (step: number, best: boolean): StoredCheckpoint => ({
  run_id: 'run-x',
  step,
  best,
  reason: 'interval',
  files: [],
  stored_at: '',
});

describe('rankflow export', () => {
  it('picks --step, else the newest best checkpoint, else the newest', () => {
    const all = [ck(2, true), ck(4, true), ck(6, false), ck(8, false)];
    expect(pickCheckpoint(all)?.step).toBe(4);
    expect(pickCheckpoint(all.map((c) => ({ ...c, best: false })))?.step).toBe(8);
    expect(pickCheckpoint(all, 6)?.step).toBe(6);
    expect(pickCheckpoint(all, 5)).toBeUndefined();
    expect(pickCheckpoint([])).toBeUndefined();
  });

  it('finds the spec of an unfinished run in a sweep manifest', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'rankflow-export-unit-'));
    dirs.push(dir);
    const store = new LocalStore(dir);
    const run = planned(tinySpec({ method: 'lora', rank: 2, seed: 11 }));
    await store.put('sweeps/sweep-a.json', '{not json');
    await store.put(
      'sweeps/sweep-b.json',
      JSON.stringify({
        schema: 'rankflow.sweep/v1',
        sweep_id: 'sweep-b',
        recipe: null,
        created_at: '',
        queues: {},
        runs: [run],
      }),
    );
    const found = await findRunSpec(store, run.id);
    expect(found?.from).toBe('sweeps/sweep-b.json');
    expect(found?.spec).toEqual(run.spec);
    expect(await findRunSpec(store, 'run-0000000000000000')).toBeNull();
  });
});
