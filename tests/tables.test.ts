/**
 * Paper tables from runs (pure logic): aggregation over seeds, missing and failed runs, group averages,
 * direction-aware marks and ties, baseline deltas, reference rows, bad input, and golden files for every
 * format. Set UPDATE_GOLDEN=1 to rewrite the golden files after an intended change (and review the diff).
 */
import { describe, expect, it } from 'vitest';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ResultRecord } from '../schemas/result.js';
import { runFromRecord, missingRun, type RunRow } from '../tables/runs.js';
import { buildTable, sampleStd, TableInputError, type TableModel } from '../tables/table.js';
import { render, latexEscape, FORMATS, formatCount } from '../tables/render.js';
import { parseReferences } from '../tables/reference.js';
import { VTAB_GROUPS as TABLE_VTAB, GLUE_TASKS as TABLE_GLUE, metricDirection } from '../tables/names.js';
import { VTAB_GROUPS as PLANNER_VTAB, GLUE_TASKS as PLANNER_GLUE } from '../planning/catalog.js';
import { glueRuns, labelsFor, makeRecord, vtabRuns, type RecordOptions } from './tables-fixtures.js';

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

const run = (o: RecordOptions): RunRow => runFromRecord(makeRecord(o));

function cellOf(model: TableModel, rowLabelPrefix: string, colKey: string) {
  const row = model.rows.find((r) => r.label.startsWith(rowLabelPrefix));
  const ci = model.columns.findIndex((c) => c.key === colKey);
  if (!row || ci < 0) throw new Error(`no cell ${rowLabelPrefix} / ${colKey}`);
  return row.cells[ci]!;
}

describe('fixtures', () => {
  it('are valid result records', () => {
    const r = makeRecord({ method: 'lora', rank: 8, dataset: 'glue/sst2', seed: 0 });
    expect(ResultRecord.safeParse(r).success).toBe(true);
    const f = makeRecord({ method: 'lora', rank: 8, dataset: 'glue/sst2', seed: 0, status: 'failed' });
    expect(ResultRecord.safeParse(f).success).toBe(true);
  });
});

describe('aggregation', () => {
  const model = buildTable(glueRuns());

  it('averages seeds with the sample standard deviation and counts them', () => {
    const c = cellOf(model, 'Full FT', 'glue/sst2');
    expect(c.mean).toBeCloseTo(91, 10); // 90, 91, 92 (accuracy ×100)
    expect(c.std).toBeCloseTo(1, 10); // sample std (n − 1), not population (0.816)
    expect(c.n).toBe(3);
    expect(c.planned).toBe(3);
    expect(c.seeds).toEqual([0, 1, 2]);
    expect(sampleStd([1, 2, 3, 4])).toBeCloseTo(Math.sqrt(5 / 3), 12);
    expect(sampleStd([5])).toBeNull();
  });

  it('keeps failed and missing runs visible instead of averaging them away', () => {
    const failed = cellOf(model, 'LoRA', 'glue/rte');
    expect(failed).toMatchObject({ n: 2, planned: 3, failed: 1, missing: 0, status: 'partial', seeds: [0, 2] });
    const missing = cellOf(model, 'my_method', 'glue/rte');
    expect(missing).toMatchObject({ n: 2, planned: 3, failed: 0, missing: 1, status: 'partial' });
    expect(model.notes.join('\n')).toMatch(/1 failed run\(s\): lora r=8 on glue\/rte seed 1: nan: loss became NaN/);
    expect(model.notes.join('\n')).toMatch(/1 planned run\(s\) have no result yet: my_method r=8/);
    // The GLUE average of a row with a partial cell is flagged.
    expect(cellOf(model, 'LoRA', 'glue').partial_members).toBe(true);
    expect(cellOf(model, 'Full FT', 'glue').partial_members).toBe(false);
  });

  it('shows a cell with no finished run as failed or missing, and its averages as n/a', () => {
    const runs = glueRuns().map((r) =>
      r.labels.method === 'full' && r.labels.dataset === 'glue/rte'
        ? { ...r, status: 'failed' as const, metrics: {}, best_metrics: {}, error: 'oom: out of memory' }
        : r,
    );
    const m = buildTable(runs);
    expect(cellOf(m, 'Full FT', 'glue/rte')).toMatchObject({ mean: null, status: 'failed', failed: 3 });
    expect(cellOf(m, 'Full FT', 'glue')).toMatchObject({ mean: null, status: 'incomplete' });
    const md = render(m, 'md');
    expect(md).toMatch(/\| Full FT \| [^\n]*\| failed \| n\/a \|/);
    const onlyMissing = buildTable([
      run({ method: 'lora', rank: 8, dataset: 'glue/sst2', seed: 0 }),
      missingRun('run-m', 's', labelsFor({ method: 'lora', rank: 8, dataset: 'glue/rte', seed: 0 })),
    ]);
    expect(cellOf(onlyMissing, 'LoRA', 'glue/rte').status).toBe('missing');
    expect(render(onlyMissing, 'md')).toMatch(/\| missing \|/);
  });

  it('a missing run shows its planned count only when that count is exact (LoRD energy ranks: none)', () => {
    const labels = labelsFor({ method: 'lord', rank: 8, dataset: 'glue/rte', seed: 0 });
    const exact = missingRun('run-a', 's', labels, null, { trainable: 2560, total: 9000 });
    const est = missingRun('run-b', 's', labels, null, { trainable: 2560, total: 9000, estimated: true });
    expect([exact.trainable, exact.total]).toEqual([2560, 9000]);
    expect([est.trainable, est.total]).toEqual([null, null]);
  });

  it('averages GLUE tasks (without WNLI) and VTAB groups as the papers do', () => {
    const runs: RunRow[] = [];
    const vtab = {
      'vtab/cifar': 0.7,
      'vtab/dtd': 0.6,
      'vtab/eurosat': 0.9,
      'vtab/clevr_count': 0.5,
      'vtab/dmlab': 0.4,
    };
    for (const [d, v] of Object.entries(vtab))
      runs.push(run({ method: 'lora', rank: 8, dataset: d, seed: 0, metric: 'top1', metrics: { top1: v } }));
    const m = buildTable(runs);
    expect(m.columns.map((c) => c.label)).toEqual([
      'CIFAR-100',
      'DTD',
      'Natural',
      'EuroSAT',
      'Specialized',
      'Clevr-Count',
      'DMLab',
      'Structured',
      'VTAB Mean',
    ]);
    expect(cellOf(m, 'LoRA', 'vtab:natural').mean).toBeCloseTo(65, 10);
    expect(cellOf(m, 'LoRA', 'vtab:specialized').mean).toBeCloseTo(90, 10);
    expect(cellOf(m, 'LoRA', 'vtab:structured').mean).toBeCloseTo(45, 10);
    expect(cellOf(m, 'LoRA', 'vtab').mean).toBeCloseTo((65 + 90 + 45) / 3, 10); // mean of group means, not of tasks

    const glue = ['glue/sst2', 'glue/rte', 'glue/wnli'].map((d, i) =>
      run({ method: 'lora', rank: 8, dataset: d, seed: 0, metrics: { accuracy: [0.9, 0.7, 0.1][i]! } }),
    );
    const g = buildTable(glue);
    expect(g.columns.map((c) => c.label)).toEqual(['SST-2', 'RTE', 'WNLI', 'GLUE Avg']);
    expect(cellOf(g, 'LoRA', 'glue').mean).toBeCloseTo(80, 10);
    expect(g.notes.join(' ')).toMatch(/GLUE Avg excludes WNLI/);
  });

  it('adds an Avg column over mixed benchmarks and reports parameters', () => {
    const runs = ['glue/sst2', 'gsm8k'].map((d, i) =>
      run({
        method: 'lora',
        rank: 8,
        dataset: d,
        seed: 0,
        metric: i ? 'exact_match' : 'accuracy',
        metrics: i ? { exact_match: 0.4 } : { accuracy: 0.9 },
        trainable: 9_175_040,
        total: 3_221_924_864,
      }),
    );
    const m = buildTable(runs);
    expect(m.columns.map((c) => c.key)).toEqual(['glue/sst2', 'gsm8k', 'avg']);
    expect(cellOf(m, 'LoRA', 'avg').mean).toBeCloseTo(65, 10);
    expect(render(m, 'md')).toContain('| 9.18M (0.28%) |');
    expect(formatCount(125_000_000)).toBe('125M');
    expect(formatCount(4352)).toBe('4.35K');
  });

  it('splits rows by dimensions that vary instead of averaging over them', () => {
    const runs = [8, 16].flatMap((rank) =>
      [0, 1].map((seed) =>
        run({ method: 'lora', rank, dataset: 'glue/sst2', seed, metrics: { accuracy: rank / 100 + seed / 1000 } }),
      ),
    );
    const m = buildTable(runs, { rows: ['method'] });
    expect(m.rows.map((r) => r.label)).toEqual(['LoRA (r=8)', 'LoRA (r=16)']);
    expect(m.rows.every((r) => r.cells[0]!.n === 2)).toBe(true);
    const byRank = buildTable(runs, { rows: ['method'], cols: 'rank' });
    expect(byRank.columns.map((c) => c.label)).toEqual(['r=8', 'r=16']);
    expect(byRank.rows[0]!.label).toBe('LoRA'); // one dataset: nothing else to split by
  });
});

describe('marks', () => {
  it('bolds every tied best value and underlines the next one', () => {
    const m = buildTable(glueRuns());
    // CoLA: Full FT 61.0, LoRA 61.0 (tie), my_method 56.0.
    expect(cellOf(m, 'Full FT', 'glue/cola').mark).toBe('best');
    expect(cellOf(m, 'LoRA', 'glue/cola').mark).toBe('best');
    expect(cellOf(m, 'my_method', 'glue/cola').mark).toBe('second');
    // SST-2: LoRA 92 > Full FT 91 > my_method 86.
    expect(cellOf(m, 'LoRA', 'glue/sst2').mark).toBe('best');
    expect(cellOf(m, 'Full FT', 'glue/sst2').mark).toBe('second');
    expect(cellOf(m, 'my_method', 'glue/sst2').mark).toBeNull();
  });

  it('marks nothing in a column with a single value', () => {
    const runs = [
      run({ method: 'lora', rank: 8, dataset: 'glue/sst2', seed: 0, metrics: { accuracy: 0.8 } }),
      run({ method: 'lora', rank: 8, dataset: 'glue/rte', seed: 0, metrics: { accuracy: 0.6 } }),
      run({ method: 'vera', rank: 8, dataset: 'glue/sst2', seed: 0, metrics: { accuracy: 0.7 } }),
    ];
    const m = buildTable(runs);
    expect(cellOf(m, 'LoRA', 'glue/rte').mark).toBeNull();
    expect(cellOf(m, 'LoRA', 'glue/sst2').mark).toBe('best');
    expect(cellOf(m, 'VeRA', 'glue/sst2').mark).toBe('second');
  });

  it('ties on the printed value: 70.04 and 69.96 both print 70.0', () => {
    const runs = [
      run({ method: 'a', dataset: 'glue/sst2', seed: 0, metrics: { accuracy: 0.7004 } }),
      run({ method: 'b', dataset: 'glue/sst2', seed: 0, metrics: { accuracy: 0.6996 } }),
      run({ method: 'c', dataset: 'glue/sst2', seed: 0, metrics: { accuracy: 0.65 } }),
    ];
    const m = buildTable(runs, { digits: 1 });
    expect(m.rows.map((r) => r.cells[0]!.mark)).toEqual(['best', 'best', 'second']);
    const m2 = buildTable(runs, { digits: 2 });
    expect(m2.rows.map((r) => r.cells[0]!.mark)).toEqual(['best', 'second', null]);
  });

  it('is direction-aware: lower is better for loss and perplexity', () => {
    expect(metricDirection('loss')).toBe('min');
    expect(metricDirection('perplexity')).toBe('min');
    expect(metricDirection('eval_loss')).toBe('min');
    expect(metricDirection('accuracy')).toBe('max');
    const runs = [
      run({ method: 'lora', rank: 8, dataset: 'synthetic/causal-lm', seed: 0, metric: 'loss', metrics: { loss: 2.5 } }),
      run({ method: 'dora', rank: 8, dataset: 'synthetic/causal-lm', seed: 0, metric: 'loss', metrics: { loss: 2.1 } }),
      run({ method: 'full', dataset: 'synthetic/causal-lm', seed: 0, metric: 'loss', metrics: { loss: 2.3 } }),
    ];
    const m = buildTable(runs);
    expect(m.scales.loss).toBe(1); // not a ratio: printed as is
    expect(cellOf(m, 'DoRA', 'synthetic/causal-lm').mark).toBe('best');
    expect(cellOf(m, 'Full FT', 'synthetic/causal-lm').mark).toBe('second');
    expect(cellOf(m, 'LoRA', 'synthetic/causal-lm').mark).toBeNull();
    expect(m.notes.join(' ')).toMatch(/loss \(lower is better\)/);
  });

  it('omits an average that would mix higher- and lower-is-better metrics, and says so', () => {
    const runs = [
      run({ method: 'lora', rank: 8, dataset: 'synthetic/causal-lm', seed: 0, metric: 'loss', metrics: { loss: 2.5 } }),
      run({ method: 'lora', rank: 8, dataset: 'glue/sst2', seed: 0, metrics: { accuracy: 0.9 } }),
    ];
    const m = buildTable(runs);
    expect(m.columns.map((c) => c.key)).toEqual(['glue/sst2', 'synthetic/causal-lm']);
    expect(m.notes.join(' ')).toMatch(/No Avg column: it would average higher-is-better and lower-is-better metrics/);
  });
});

describe('baseline and reference rows', () => {
  it('adds deltas against the baseline row', () => {
    const m = buildTable(glueRuns(), { baseline: 'lora' });
    expect(m.baseline).toBe('LoRA (r=8)');
    expect(cellOf(m, 'Full FT', 'glue/sst2').delta).toBeCloseTo(-1, 10);
    expect(cellOf(m, 'LoRA', 'glue/sst2').delta).toBeNull();
    expect(m.rows.find((r) => r.label.startsWith('LoRA'))!.is_baseline).toBe(true);
    expect(() => buildTable(glueRuns(), { baseline: 'vera' })).toThrow(
      /--baseline `vera` matches no row; rows are: Full FT, LoRA \(r=8\)/,
    );
  });

  it('shows published numbers and the difference to the reproduction', () => {
    const refs = parseReferences(
      [
        'method,setting,backbone,benchmark,metric,value,params,source',
        '# a comment',
        'lora,,RoBERTa-base,glue/sst2,accuracy,95.1,800000,"microsoft/LoRA README, GLUE table"',
        'lora,,RoBERTa-base,glue/cola,mcc,63.4,800000,"microsoft/LoRA README, GLUE table"',
        'dora,,LLaMA-7B,glue/sst2,accuracy,99,,other',
      ].join('\n'),
      'refs.csv',
    );
    expect(refs).toHaveLength(3);
    expect(refs[0]!.source).toBe('microsoft/LoRA README, GLUE table');
    const m = buildTable(glueRuns(), { references: refs });
    const ref = m.rows.find((r) => r.kind === 'reference')!;
    expect(ref.label).toBe('LoRA, paper: RoBERTa-base');
    expect(m.rows.filter((r) => r.kind === 'reference')).toHaveLength(1); // dora is not in the table
    const delta = m.rows.find((r) => r.kind === 'reference-delta')!;
    const ci = m.columns.findIndex((c) => c.key === 'glue/sst2');
    expect(delta.cells[ci]!.mean).toBeCloseTo(92 - 95.1, 10);
    expect(ref.cells[ci]!.mark).toBeNull(); // published numbers are not ranked
    expect(() => parseReferences('method,backbone\nx,y', 'r.csv')).toThrow(
      /r\.csv:1: header lacks column\(s\) setting, benchmark, metric, value, params, source/,
    );
    expect(() =>
      parseReferences(
        `${'method,setting,backbone,benchmark,metric,value,params,source'}\nlora,,b,glue/sst2,accuracy,high,,s`,
        'r.csv',
      ),
    ).toThrow(/r\.csv:2: value `high` is not a number/);
  });
});

describe('bad input', () => {
  it('gives one-line errors that name the fix', () => {
    const runs = glueRuns();
    const one = (fn: () => unknown): string => {
      try {
        fn();
      } catch (e) {
        expect(e).toBeInstanceOf(TableInputError);
        const msg = (e as Error).message;
        expect(msg).not.toContain('\n');
        return msg;
      }
      throw new Error('expected an error');
    };
    expect(one(() => buildTable([]))).toMatch(/^empty selection: .*check the sweep\/recipe name/);
    expect(one(() => buildTable(runs, { metric: 'bleu' }))).toMatch(
      /^unknown metric `bleu`: no run reports it; available final metrics: accuracy, mcc/,
    );
    expect(one(() => buildTable(runs, { metric: 'mcc' }))).toMatch(
      /^metric `mcc` is missing from 16 run\(s\) on glue\/rte, glue\/sst2; .*--dataset/,
    );
    expect(one(() => buildTable(runs, { rows: ['method', 'seed' as never] }))).toMatch(
      /^unknown table dimension `seed`; use one of model, method, rank, setting, dataset/,
    );
    expect(one(() => buildTable(runs, { rows: ['dataset'], cols: 'dataset' }))).toMatch(
      /both a row and the column dimension/,
    );
    const mixed = [
      run({ method: 'lora', dataset: 'glue/mrpc', seed: 0, metric: 'accuracy', metrics: { accuracy: 0.8, f1: 0.85 } }),
      run({ method: 'lora', dataset: 'glue/mrpc', seed: 1, metric: 'f1', metrics: { accuracy: 0.8, f1: 0.85 } }),
    ];
    expect(one(() => buildTable(mixed))).toMatch(
      /^column glue\/mrpc mixes metrics accuracy and f1; pass --metric NAME/,
    );
    expect(buildTable(mixed, { metric: 'f1' }).rows[0]!.cells[0]!.n).toBe(2);
    expect(one(() => buildTable(runs, { digits: 9 }))).toMatch(/--digits must be an integer from 0 to 6/);
  });
});

describe('names', () => {
  it('use the planner catalog grouping of GLUE and VTAB-1k', () => {
    expect(TABLE_VTAB).toEqual(PLANNER_VTAB);
    expect([...TABLE_GLUE].sort()).toEqual([...PLANNER_GLUE].sort());
  });

  it('escape LaTeX specials', () => {
    expect(latexEscape('a_b 50% & #1 $x {y} ~ ^ \\')).toBe(
      'a\\_b 50\\% \\& \\#1 \\$x \\{y\\} \\textasciitilde{} \\textasciicircum{} \\textbackslash{}',
    );
  });
});

describe('golden files', () => {
  const model = buildTable(glueRuns(), { baseline: 'lora', title: 'GLUE dev (tiny-encoder, 3 seeds)' });
  for (const f of FORMATS) {
    it(`renders ${f}`, () => {
      const ext = { md: 'md', latex: 'tex', csv: 'csv', html: 'html', json: 'json' }[f];
      golden(`glue.${ext}`, render(model, f));
    });
  }

  it('LaTeX escapes the names and uses booktabs', () => {
    const tex = render(model, 'latex');
    expect(tex).toContain('my\\_method (r=8, lr=1e-3 \\& 50\\% \\#2)');
    expect(tex).toMatch(/\\toprule[\s\S]*\\midrule[\s\S]*\\bottomrule/);
    expect(tex).toContain('\\textbf{61.0}$_{\\pm 1.0}$'); // tied best, both bold
    expect(tex).toContain('\\underline{56.0}$_{\\pm 1.0}$');
    expect(tex).toContain('69.0$_{\\pm 1.4}$\\,{\\scriptsize (2/3)}'); // partial: 2 of 3 seeds
  });

  it('Markdown marks best in bold and second underlined; CSV keeps full precision', () => {
    const md = render(model, 'md');
    expect(md).toContain('**92.0** ± 1.0');
    expect(md).toContain('<u>91.0</u> ± 1.0 (-1.0)');
    expect(md).toContain('my\\_method (r=8, lr=1e-3 & 50% #2)');
    const csv = render(model, 'csv').split('\n');
    expect(csv[0]).toMatch(/^row,row_kind,model,method,rank,setting,dataset,column,/);
    expect(csv.find((l) => l.startsWith('LoRA (r=8),result') && l.includes(',glue/rte,')))!.toContain(
      ',69,1.41421356237,2,3,1,0,0;2,partial,',
    );
  });

  it('writes VTAB and loss tables too', () => {
    const vtab = buildTable(vtabRuns(), { digits: 1 });
    golden('vtab.md', render(vtab, 'md'));
    const tex = render(vtab, 'latex');
    golden('vtab.tex', tex);
    expect(tex).toContain(
      ' &  & \\multicolumn{3}{c}{Natural} & \\multicolumn{3}{c}{Specialized} & \\multicolumn{3}{c}{Structured} &  \\\\',
    );
    expect(tex).toContain('\\cmidrule(lr){3-5} \\cmidrule(lr){6-8} \\cmidrule(lr){9-11}');
    const lossRuns = ['lora', 'dora', 'full'].flatMap((m, i) =>
      [0, 1].map((seed) =>
        run({
          method: m,
          rank: m === 'full' ? null : 4,
          dataset: 'synthetic/causal-lm',
          seed,
          metric: 'loss',
          metrics: { loss: 2 + 0.1 * i + 0.01 * seed, perplexity: Math.exp(2 + 0.1 * i) },
        }),
      ),
    );
    golden('loss.md', render(buildTable(lossRuns, { digits: 3 }), 'md'));
  });
});
