/**
 * Issue 17's acceptance on the real services: a learning-rate sweep of tiny models on the CPU (the real
 * planner, Temporal, SeaweedFS, a `rankflow worker`, the Python runtime) with `eval_splits: [validation, test]`,
 * then `rankflow table --select-on validation --report test --efficiency` through the CLI; the test recomputes
 * from the stored result records which learning rate wins on validation and that setting's test mean ± std,
 * and checks the efficiency columns against the records.
 */
import { type ChildProcess } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomInt } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Config } from '../cli/config.js';
import { ResultRecord } from '../schemas/result.js';
import { resultKey } from '../store/keys.js';
import type { TableModel } from '../tables/table.js';
import { rankflowCli, testConfig, testStore, workerProcess } from './helpers/cluster.js';

let config: Config;
let worker: ChildProcess | null = null;
const seed = randomInt(1, 2 ** 30); // fresh run ids on a reused server
const rankflow = (...args: string[]) => rankflowCli(config, ...args);

beforeAll(() => {
  config = testConfig();
});
afterAll(() => {
  worker?.kill('SIGTERM');
});

const avg = (xs: number[]): number => xs.reduce((a, b) => a + b, 0) / xs.length;
const std = (xs: number[]): number => Math.sqrt(xs.reduce((a, x) => a + (x - avg(xs)) ** 2, 0) / (xs.length - 1));

async function waitClosed(
  sweep: string,
  timeoutMs: number,
): Promise<{ state: string; counts: Record<string, number> }> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const s = await rankflow('status', sweep, '--json');
    if (s.code === 0) {
      const j = JSON.parse(s.stdout) as { closed: string | null; state: string; counts: Record<string, number> };
      if (j.closed) return j;
    }
    if (Date.now() > deadline) throw new Error(`${sweep} did not finish`);
    await new Promise((res) => setTimeout(res, 3000));
  }
}

describe('select on validation, report test, on a real sweep', () => {
  it('the CLI table reports the test score of the learning rate that wins on validation', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'rankflow-select-'));
    const file = join(dir, 'lr-sweep.yaml');
    writeFileSync(
      file,
      [
        'name: lr-sweep',
        'model: {name: tiny-encoder, config: {hidden_size: 32, num_layers: 1, num_heads: 2, intermediate_size: 64}}',
        'datasets:',
        '  - {name: synthetic/seq-cls, train_size: 64, eval_size: 48}',
        'eval_splits: [validation, test]',
        'methods: [lora, full]',
        'ranks: [2]',
        `seeds: [${seed}, ${seed + 1}]`,
        'training: {lr: [3e-2, 1e-5], max_steps: 8, batch_size: 8, eval_every: 4, checkpoint_every: null, log_every: 2}',
        'device: cpu',
        '',
      ].join('\n'),
    );
    const sub = await rankflow('submit', file, '--detach');
    expect(sub.code, sub.stderr).toBe(0);
    const sweep = /(sweep-[0-9a-f]+): (\d+) runs/.exec(sub.stdout);
    expect(sweep, sub.stdout).not.toBeNull();
    expect(Number(sweep![2])).toBe(8); // 2 methods x 2 learning rates x 2 seeds
    worker = workerProcess(config);
    const st = await waitClosed(sweep![1]!, 900_000);
    expect(st.state, JSON.stringify(st)).toBe('completed');

    // the records, read independently of the table code
    const store = testStore(config);
    const manifest = JSON.parse((await store.get(`sweeps/${sweep![1]}.json`))!.toString()) as {
      runs: { id: string }[];
    };
    const records = await Promise.all(
      manifest.runs.map(async (r) => ResultRecord.parse(JSON.parse((await store.get(resultKey(r.id)))!.toString()))),
    );
    for (const r of records) {
      expect(Object.keys(r.evals ?? {}).sort()).toEqual(['test', 'validation']);
      expect(r.evals!.validation!.best_metrics).toEqual(r.best_metrics); // the best checkpoint is chosen on validation
      expect(r.evals!.test!.curve.map((p) => p.step)).toEqual([4, 8]);
      expect(r.efficiency!.mem_kind).toBe('cpu_max_rss');
      expect(r.efficiency!.steps).toBe(8);
    }
    const out = await rankflow(
      'table',
      sweep![1]!,
      '--select-on',
      'validation',
      '--report',
      'test',
      '--efficiency',
      '--format',
      'json',
    );
    expect(out.code, out.stderr).toBe(0);
    const table = JSON.parse(out.stdout) as TableModel;
    const col = table.columns.findIndex((c) => c.key === 'synthetic/seq-cls');
    for (const method of ['lora', 'full']) {
      const mine = records.filter((r) => r.labels.method === method);
      const settings = [...new Set(mine.map((r) => r.labels.setting))];
      expect(settings).toHaveLength(2);
      const valOf = (s: string) =>
        avg(mine.filter((r) => r.labels.setting === s).map((r) => r.evals!.validation!.metrics.accuracy!));
      const chosen = valOf(settings[1]!) > valOf(settings[0]!) ? settings[1]! : settings[0]!;
      const test = mine.filter((r) => r.labels.setting === chosen).map((r) => r.evals!.test!.metrics.accuracy! * 100);
      const row = table.rows.find((r) => r.dims.method === method)!;
      expect(row, JSON.stringify(table.rows.map((r) => r.label))).toBeDefined();
      expect(row.cells[col]!.n).toBe(2);
      expect(row.cells[col]!.mean).toBeCloseTo(avg(test), 9);
      expect(row.cells[col]!.std).toBeCloseTo(std(test), 9);
      const note = table.notes.find((n) => n.startsWith('Hyperparameters selected on validation'))!;
      expect(note).toMatch(
        new RegExp(`${method === 'lora' ? 'LoRA r=2' : 'Full FT'}: ${chosen.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`),
      );
      const wall = table.columns.findIndex((c) => c.label === 'Wall (s)');
      const walls = mine.filter((r) => r.labels.setting === chosen).map((r) => r.timings.wall_s);
      expect(row.cells[wall]!.mean).toBeCloseTo(avg(walls), 1);
    }
    expect(table.notes.join('\n')).toMatch(/Device: cpu: /);
    // selecting on the reported split is refused in one line
    const bad = await rankflow('table', sweep![1]!, '--select-on', 'test', '--report', 'test');
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toMatch(/selecting hyperparameters on the reported split/);
    expect(bad.stderr).not.toMatch(/\n\s+at /);
  }, 1_200_000);
});
