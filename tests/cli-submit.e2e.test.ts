/**
 * The user-facing path end to end: `rankflow submit` on a recipe file against the real Temporal and S3
 * servers (configured through the environment, as on a cluster), with a worker serving its queues; then a
 * resubmission runs nothing, and `status`, `ls`, `logs` and `table` read what happened.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomInt } from 'node:crypto';
import { startWorker } from '../cli/worker.js';
import type { RunningWorker } from '../cli/worker.js';
import type { Config } from '../cli/config.js';
import { rankflowCli, testConfig } from './helpers/cluster.js';

let config: Config;
let worker: RunningWorker;
let recipe: string;

const rankflow = (...args: string[]) => rankflowCli(config, ...args);

beforeAll(async () => {
  config = testConfig();
  worker = await startWorker(config, { slots: { cpu: 2 }, shutdownGraceS: 5 });
  const dir = await mkdtemp(join(tmpdir(), 'rankflow-recipe-'));
  recipe = join(dir, 'tiny.yaml');
  // A seed unique to this test run keeps run ids (Temporal workflow ids) fresh on a reused server.
  const seed = randomInt(1, 2 ** 40);
  await writeFile(
    recipe,
    [
      'name: cli-tiny',
      'model: {name: tiny-encoder, config: {hidden_size: 32, num_layers: 1, num_heads: 2, intermediate_size: 64, vocab_size: 512}}',
      'datasets:',
      '  - {name: synthetic/seq-cls, train_size: 64, eval_size: 32, max_length: 16}',
      'methods: [lora, vera]',
      'ranks: [2]',
      `seeds: [${seed}]`,
      'training: {lr: 5e-3, max_steps: 6, batch_size: 8, eval_every: null, checkpoint_every: 3, log_every: 1}',
      'device: cpu',
      '',
    ].join('\n'),
  );
});

afterAll(async () => {
  await worker?.shutdown();
});

describe('rankflow submit on a real cluster configuration', () => {
  it('runs the sweep and prints the table; resubmitting runs nothing; status, ls, logs and table read it back', async () => {
    const first = await rankflow('submit', recipe);
    expect(first.stderr).not.toMatch(/\n\s+at /);
    expect(first.code, first.stderr).toBe(0);
    const sweepId = /^(sweep-[0-9a-f]+): 2 runs \(started\)/m.exec(first.stdout)?.[1];
    expect(sweepId).toBeDefined();
    expect(first.stdout).toMatch(/completed: 2\/2 done: 2 succeeded, 0 skipped, 0 failed/);
    expect(first.stdout).toMatch(/\| LoRA/);
    expect(first.stdout).toMatch(/\| VeRA/);

    const again = await rankflow('submit', recipe, '--no-table');
    expect(again.code, again.stderr).toBe(0);
    expect(again.stdout).toMatch(/2\/2 done: 0 succeeded, 2 skipped, 0 failed/);

    const status = await rankflow('status', sweepId!, '--json');
    expect(status.code, status.stderr).toBe(0);
    expect(JSON.parse(status.stdout).counts.skipped).toBe(2);

    const ls = await rankflow('ls');
    expect(ls.code, ls.stderr).toBe(0);
    expect(ls.stdout).toContain(sweepId);

    const plan = await rankflow('plan', recipe, '--json');
    const runId = (JSON.parse(plan.stdout) as { runs: { id: string }[] }).runs[0]!.id;
    const logs = await rankflow('logs', runId);
    expect(logs.code, logs.stderr).toBe(0);
    expect(logs.stdout).toMatch(/attempt-1\.log/);
    expect(logs.stdout).toMatch(/trainable/);

    const table = await rankflow('table', sweepId!, '--format', 'csv');
    expect(table.code, table.stderr).toBe(0);
    expect(table.stdout.split('\n')[0]).toMatch(/method/i);

    const missing = await rankflow('status', 'sweep-does-not-exist');
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/no sweep `sweep-does-not-exist`/);
  }, 400_000);
});
