/**
 * The rank allocation of a method that moves rank during training reaches the result record: the train
 * activity (MockActivityEnvironment, the real runtime, a folder store) keeps the runtime's final `allocation`
 * event, and recordResult stores it in a record that parses with the shared ResultRecord schema.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { MockActivityEnvironment } from '@temporalio/testing';
import { createActivities } from '../activities/index.js';
import { LocalStore } from '../store/store.js';
import { SlotPool } from '../launcher/slots.js';
import { resultKey } from '../store/keys.js';
import { ResultRecord } from '../schemas/result.js';
import type { RunInput, TrainOutput } from '../schemas/orchestration.js';
import { DEFAULT_POLICY } from '../cli/sweeps.js';
import { planned, tinySpec } from './helpers/runs.js';

const tmp = mkdtempSync(join(tmpdir(), 'rankflow-alloc-record-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe('allocation in the result record', () => {
  it('stores the final rank pattern and its history of an AdaLoRA run', { timeout: 180_000 }, async () => {
    const spec = tinySpec({ method: 'adalora', rank: 1, options: { init_r: 3, tinit: 1, tfinal: 2 }, steps: 8 });
    const run = planned(spec);
    const input: RunInput = {
      run_id: run.id,
      sweep_id: 'sweep-alloc-test',
      recipe: null,
      spec,
      labels: run.labels,
      task_queue: 'rankflow-cpu',
      parent: null,
      policy: DEFAULT_POLICY,
    };
    const store = new LocalStore(join(tmp, 'store'));
    const activities = createActivities({
      store,
      workDir: join(tmp, 'work'),
      slots: SlotPool.cpu(1, 1),
      versions: { rankflow: 'test', git: null },
    });
    const env = new MockActivityEnvironment();
    const out: TrainOutput = await env.run<[RunInput], TrainOutput, typeof activities.train>(activities.train, input);
    expect(out.allocation).toBeTruthy();
    await env.run(activities.recordResult, input, out);
    const rec = ResultRecord.parse(JSON.parse((await store.get(resultKey(run.id)))!.toString('utf8')));
    const a = rec.allocation!;
    const modules = Object.keys(a.ranks);
    expect(modules.length).toBe(2); // tiny-encoder, one layer: query and value
    expect(a.total).toBe(2); // target rank 1 per module at the end
    expect(a.budget).toBe(2);
    expect(a.history[0]!.total).toBe(6); // init_r 3 × 2 modules at step 0
    expect(a.history.at(-1)!.ranks).toEqual(a.ranks);
  });
});
