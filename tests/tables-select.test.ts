/**
 * `table --select-on validation --report test` (tables/select.ts) and `--efficiency` (tables/efficiency.ts):
 * the selected setting and its test scores recomputed here from the runs, refusals, notes, and golden files in
 * every format (UPDATE_GOLDEN=1 rewrites them; review the diff).
 */
import { describe, expect, it } from 'vitest';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ResultRecord } from '../schemas/result.js';
import { buildTable, TableInputError, type TableModel } from '../tables/table.js';
import { render, FORMATS } from '../tables/render.js';
import { runFromRecord, type RunRow } from '../tables/runs.js';
import { applySplits } from '../tables/select.js';
import { addStatColumns } from '../tables/stats.js';
import { lrSweepRuns, makeRecord } from './tables-fixtures.js';

const GOLDEN = join(import.meta.dirname, 'golden', 'tables');
function golden(name: string, text: string): void {
  const path = join(GOLDEN, name);
  if (process.env.UPDATE_GOLDEN || !existsSync(path)) {
    mkdirSync(GOLDEN, { recursive: true });
    writeFileSync(path, text);
    if (!process.env.UPDATE_GOLDEN) throw new Error(`golden file ${name} was missing and has been written; rerun`);
  }
  expect(text).toBe(readFileSync(path, 'utf8'));
}

const avg = (xs: number[]): number => xs.reduce((a, b) => a + b, 0) / xs.length;
const std = (xs: number[]): number => Math.sqrt(xs.reduce((a, x) => a + (x - avg(xs)) ** 2, 0) / (xs.length - 1));

/** The protocol, computed the plain way: per (method, dataset?) the setting with the best mean validation score. */
function expected(runs: RunRow[], perDataset: boolean) {
  const out = new Map<string, { setting: string; test: number[] }>();
  const groups = new Map<string, RunRow[]>();
  for (const r of runs) {
    const k = perDataset ? `${r.labels.method}|${r.labels.dataset}` : r.labels.method;
    groups.set(k, [...(groups.get(k) ?? []), r]);
  }
  for (const [k, g] of groups) {
    const settings = [...new Set(g.map((r) => r.labels.setting))];
    const datasets = [...new Set(g.map((r) => r.labels.dataset))];
    const score = (s: string): number =>
      avg(
        datasets.map((d) =>
          avg(
            g
              .filter((r) => r.labels.setting === s && r.labels.dataset === d)
              .map((r) => r.evals.validation!.metrics.accuracy!),
          ),
        ),
      );
    const setting = settings.reduce((a, b) => (score(b) > score(a) ? b : a));
    for (const d of datasets) {
      const test = g
        .filter((r) => r.labels.setting === setting && r.labels.dataset === d)
        .map((r) => r.evals.test!.metrics.accuracy! * 100);
      out.set(perDataset ? k : `${k}|${d}`, { setting, test });
    }
  }
  return out;
}

function cell(model: TableModel, method: string, dataset: string) {
  const row = model.rows.find((r) => r.dims.method === method)!;
  return row.cells[model.columns.findIndex((c) => c.key === dataset)]!;
}

describe('select on validation, report test', () => {
  const runs = lrSweepRuns();
  it('fixtures are valid records whose validation and test choices differ', () => {
    for (const r of runs) expect(r.evals.test).toBeDefined();
    const rec = makeRecord({ method: 'lora', dataset: 'glue/sst2', seed: 0 });
    expect(ResultRecord.safeParse(rec).success).toBe(true);
    const onVal = expected(runs, false);
    const onTest = expected(
      runs.map((r) => ({ ...r, evals: { validation: r.evals.test!, test: r.evals.test! } })),
      false,
    );
    expect(onVal.get('lora|glue/sst2')!.setting).not.toBe(onTest.get('lora|glue/sst2')!.setting);
  });
  for (const per of ['method', 'dataset'] as const) {
    it(`picks per ${per} the setting with the best mean validation score and shows its test mean ± std`, () => {
      const model = buildTable(runs, { selectOn: 'validation', report: 'test', selectPer: per });
      const want = expected(runs, per === 'dataset');
      expect(model.rows.map((r) => r.label)).toEqual(['LoRA (r=8)', 'Full FT']);
      for (const [k, w] of want) {
        const [method, dataset] = k.split('|') as [string, string];
        const c = cell(model, method, dataset);
        expect(c.n).toBe(3);
        expect(c.mean).toBeCloseTo(avg(w.test), 9);
        expect(c.std).toBeCloseTo(std(w.test), 9);
      }
      const note = model.notes.find((n) => n.startsWith('Hyperparameters selected on validation'))!;
      expect(note).toContain('scores reported on test');
      const on = per === 'dataset' ? ' on SST-2, RTE' : '';
      expect(note).toContain(`Selected: LoRA r=8: lr=1e-3${on}; Full FT: lr=1e-4${on}.`);
    });
  }
  it('without selection, --report test shows every setting on test', () => {
    const model = buildTable(runs, { report: 'test' });
    expect(model.rows).toHaveLength(4);
    const r = model.rows.find((x) => x.label.startsWith('LoRA') && x.dims.setting === 'lr=1e-4')!;
    const t = runs
      .filter((x) => x.labels.method === 'lora' && x.labels.setting === 'lr=1e-4' && x.labels.dataset === 'glue/rte')
      .map((x) => x.evals.test!.metrics.accuracy! * 100);
    expect(r.cells[model.columns.findIndex((c) => c.key === 'glue/rte')]!.mean).toBeCloseTo(avg(t), 9);
    expect(model.notes).toContain('Scores on test.');
  });
  it('refuses selecting on the reported split, a missing --report, and runs without the split', () => {
    expect(() => buildTable(runs, { selectOn: 'test', report: 'test' })).toThrow(
      /selecting hyperparameters on the reported split/,
    );
    expect(() => buildTable(runs, { selectOn: 'validation' })).toThrow(/needs --report SPLIT/);
    const old = [runFromRecord(makeRecord({ method: 'lora', dataset: 'glue/sst2', seed: 0 }))];
    expect(() => buildTable(old, { selectOn: 'validation', report: 'test' })).toThrow(TableInputError);
    expect(() => buildTable(old, { selectOn: 'validation', report: 'test' })).toThrow(
      /has no evaluation on `test` \(it evaluated validation\); plan the sweep with `eval_splits: \[validation, test\]`/,
    );
    // a record without `evals` still reports its own eval_split
    expect(buildTable(old, { report: 'validation' }).rows[0]!.cells[0]!.mean).toBe(50);
  });
  it('--stats beside a selection averages the selected runs only (as the CLI passes them)', () => {
    const withStats = runs.map((r) => ({ ...r, stats: { speed: r.labels.setting === 'lr=1e-3' ? 1 : 2 } }));
    const choice = { selectOn: 'validation', report: 'test' };
    const model = buildTable(withStats, choice);
    const shown = applySplits(withStats, choice, 'final', null, []);
    const t = addStatColumns(model, shown, ['speed']);
    const at = (m: string) => t.rows.find((r) => r.dims.method === m)!.cells.at(-1)!.mean;
    expect([at('lora'), at('full')]).toEqual([1, 2]); // LoRA chose lr=1e-3, Full FT lr=1e-4
  });
  it('a lower-is-better metric picks the lowest validation score', () => {
    const mk = (setting: string, v: number, t: number, seed: number) =>
      runFromRecord(
        makeRecord({
          method: 'lora',
          dataset: 'synthetic/causal-lm',
          metric: 'perplexity',
          seed,
          setting,
          metrics: { perplexity: v },
          evals: {
            validation: { metrics: { perplexity: v }, best_metrics: { perplexity: v }, curve: [] },
            test: { metrics: { perplexity: t }, best_metrics: { perplexity: t }, curve: [] },
          },
        }),
      );
    const rs = [mk('lr=1', 3, 9, 0), mk('lr=1', 3.2, 9, 1), mk('lr=2', 5, 1, 0), mk('lr=2', 5, 1, 1)];
    const model = buildTable(rs, { selectOn: 'validation', report: 'test' });
    expect(model.rows[0]!.cells[0]!.mean).toBe(9);
  });
});

describe('efficiency columns', () => {
  const runs = lrSweepRuns();
  const model = buildTable(runs, { selectOn: 'validation', report: 'test', efficiency: true, digits: 1 });
  it('are the mean over the row runs of memory, time per step and wall time', () => {
    const cols = model.columns.filter((c) => c.kind === 'stat').map((c) => c.label);
    expect(cols).toEqual(['Peak mem (MiB)', 'Time/step (ms)', 'Wall (s)']);
    const lora = model.rows.find((r) => r.dims.method === 'lora')!;
    const picked = runs.filter((r) => r.labels.method === 'lora' && r.labels.setting === 'lr=1e-3');
    const at = (label: string) => lora.cells[model.columns.findIndex((c) => c.label === label)]!;
    expect(at('Peak mem (MiB)').mean).toBeCloseTo(avg(picked.map((r) => r.efficiency!.peak_mem_mb)), 1);
    expect(at('Time/step (ms)').mean).toBeCloseTo(avg(picked.map((r) => r.efficiency!.step_s * 1000)), 1);
    expect(at('Wall (s)').mean).toBeCloseTo(avg(picked.map((r) => r.wall_s!)), 1);
    expect(at('Wall (s)').n).toBe(6);
  });
  it('say what the memory is and that the devices differ', () => {
    expect(model.notes.join('\n')).toMatch(
      /Devices differ: cpu: AMD EPYC 7B13 \(6 runs\), NVIDIA H100 80GB HBM3 \(6 runs\); times and memory are not comparable/,
    );
    expect(model.notes.join('\n')).toMatch(/peak resident set .*CUDA allocator peak: the two are not comparable/);
    const one = buildTable(
      runs.filter((r) => r.labels.method === 'lora'),
      { efficiency: true },
    );
    expect(one.notes).toContain('Device: cpu: AMD EPYC 7B13.');
  });
  it('say so when runs recorded none', () => {
    const old = [runFromRecord(makeRecord({ method: 'lora', dataset: 'glue/sst2', seed: 0 }))];
    const m = buildTable(old, { efficiency: true });
    expect(m.rows[0]!.cells.slice(-3).map((c) => c.status)).toEqual(['empty', 'empty', 'empty']);
    expect(m.notes.join('\n')).toMatch(/1 finished run\(s\) recorded no efficiency figures/);
  });
});

describe('golden files (selection and efficiency)', () => {
  const model = buildTable(lrSweepRuns(), {
    selectOn: 'validation',
    report: 'test',
    selectPer: 'dataset',
    efficiency: true,
    title: 'GLUE test, lr selected on validation',
  });
  for (const f of FORMATS) {
    it(`renders ${f}`, () => {
      const ext = { md: 'md', latex: 'tex', csv: 'csv', html: 'html', json: 'json' }[f];
      golden(`select-efficiency.${ext}`, render(model, f));
    });
  }
});
