/**
 * The runtime launcher's rule for relative paths: the runtime runs in the working folder of the rankflow
 * process that starts it, for training (the `train` activity) exactly as for `count` and `export`. A
 * relative `dataset.data_root` that `plan` accepts therefore also works in training. No server needed: the
 * activity runs in the Temporal SDK's MockActivityEnvironment, against a folder store and the real runtime.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { MockActivityEnvironment } from '@temporalio/testing';
import { createActivities } from '../activities/index.js';
import { LocalStore } from '../store/store.js';
import { SlotPool } from '../launcher/slots.js';
import { runtimeCwd, runtimeEnv } from '../launcher/spawn.js';
import { RUNTIME_DIR } from '../core/paths.js';
import type { RunInput, TrainOutput } from '../schemas/orchestration.js';
import { DEFAULT_POLICY } from '../cli/sweeps.js';
import { planned, tinySpec } from './helpers/runs.js';

const tmp = mkdtempSync(join(tmpdir(), 'rankflow-launcher-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** A tiny GLUE SST-2 in `<root>/glue/SST-2` (the official TSV layout: a header, then sentence<TAB>label). */
function writeSst2(root: string): void {
  const dir = join(root, 'glue', 'SST-2');
  mkdirSync(dir, { recursive: true });
  const rows = (n: number) =>
    [
      'sentence\tlabel',
      ...Array.from({ length: n }, (_, i) => `${i % 2 ? 'a good film' : 'a dull film'} ${i}\t${i % 2}`),
    ].join('\n');
  writeFileSync(join(dir, 'train.tsv'), rows(24) + '\n');
  writeFileSync(join(dir, 'dev.tsv'), rows(8) + '\n');
}

describe('launcher: one working folder and environment for every runtime call', () => {
  it("starts the runtime in the caller's working folder with the package on PYTHONPATH", () => {
    expect(runtimeCwd()).toBe(process.cwd());
    const env = runtimeEnv({ RANKFLOW_RUN_ID: 'run-x', PYTHONPATH: '/extra' });
    expect(env.PYTHONPATH).toBe(`${RUNTIME_DIR}:/extra`);
    expect(env.PYTHONUNBUFFERED).toBe('1');
    expect(env.RANKFLOW_RUN_ID).toBe('run-x');
  });

  it(
    'trains a run whose data_root is relative to the folder rankflow was started in',
    { timeout: 180_000 },
    async () => {
      const user = join(tmp, 'project');
      writeSst2(join(user, 'data'));
      const base = tinySpec({ steps: 3, checkpointEvery: 100 });
      const spec = {
        ...base,
        dataset: {
          ...base.dataset,
          name: 'glue/sst2',
          data_root: 'data',
          train_size: null,
          eval_size: null,
          eval_split: 'validation',
        },
      };
      const run = planned(spec);
      const input: RunInput = {
        run_id: run.id,
        sweep_id: 'sweep-launcher-test',
        recipe: null,
        spec,
        labels: run.labels,
        task_queue: 'rankflow-cpu',
        parent: null,
        policy: DEFAULT_POLICY,
      };
      const activities = createActivities({
        store: new LocalStore(join(tmp, 'store')),
        workDir: join(tmp, 'work'),
        slots: SlotPool.cpu(1, 1),
        versions: { rankflow: 'test', git: null },
      });
      const before = process.cwd();
      process.chdir(user);
      try {
        const out: TrainOutput = await new MockActivityEnvironment().run<
          [RunInput],
          TrainOutput,
          typeof activities.train
        >(activities.train, input);
        expect(out.metrics.accuracy).toBeGreaterThanOrEqual(0);
        expect(out.metrics.accuracy).toBeLessThanOrEqual(1);
      } finally {
        process.chdir(before);
      }
    },
  );
});
