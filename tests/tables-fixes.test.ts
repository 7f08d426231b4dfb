/**
 * Numbers that were wrong or misleading (issue 17): the parameter percentage of a row spanning datasets, the
 * rounding of its range and of percentages, the VTAB mean over a missing group, LaTeX's caption and label.
 */
import { describe, expect, it } from 'vitest';
import { runFromRecord, type RunRow } from '../tables/runs.js';
import { buildTable } from '../tables/table.js';
import { render } from '../tables/render.js';
import { formatCountRange, formatPercent, paramsText, percentDigits } from '../tables/params.js';
import { makeRecord, vtabRuns, type RecordOptions } from './tables-fixtures.js';

const run = (o: RecordOptions): RunRow => runFromRecord(makeRecord(o));

describe('parameter counts', () => {
  it("divides each run's trainable count by its own total, and prints a range whose ends differ", () => {
    // One method on two datasets whose heads differ (2 vs 3 classes): 24,192 and 24,240 trainable of
    // 12,000,000 and 12,000,048 in all. The old text was "24.2K–24.2K (99.73%)"-style: equal-looking ends and
    // min trainable / max total.
    const runs = [
      run({ method: 'lora', rank: 8, dataset: 'glue/sst2', seed: 0, trainable: 24_192, total: 12_000_000 }),
      run({ method: 'lora', rank: 8, dataset: 'glue/mnli', seed: 0, trainable: 24_240, total: 12_000_048 }),
    ];
    const m = buildTable(runs);
    const p = m.rows[0]!.params!;
    expect(p.pct).toBeCloseTo((100 * 24_192) / 12_000_000, 12);
    expect(p.pct_max).toBeCloseTo((100 * 24_240) / 12_000_048, 12);
    expect(paramsText(m.rows[0]!, m.percent_digits)).toBe('24.19K–24.24K (0.20%)');
    expect(render(m, 'md')).toContain('| 24.19K–24.24K (0.20%) |');
    expect(formatCountRange(1_000_000, 1_000_001)).toBe('1.000000M–1.000001M');
    expect(formatCountRange(999, 1200)).toBe('999–1.2K');
    expect(formatCountRange(5, 5)).toBe('5');
  });

  it('shows a percentage range when the shares differ at the printed precision', () => {
    const runs = [
      run({ method: 'lora', rank: 8, dataset: 'glue/sst2', seed: 0, trainable: 3_000, total: 1_000_000 }),
      run({ method: 'lora', rank: 8, dataset: 'glue/rte', seed: 0, trainable: 3_100, total: 1_000_000 }),
    ];
    const m = buildTable(runs);
    expect(paramsText(m.rows[0]!, m.percent_digits)).toBe('3K–3.1K (0.30–0.31%)');
  });

  it('prints every percentage of a table with the same decimals (never 0.3% beside 0.28%)', () => {
    const runs = [
      run({ method: 'lora', rank: 8, dataset: 'glue/sst2', seed: 0, trainable: 3_000, total: 1_000_000 }),
      run({ method: 'vera', rank: 8, dataset: 'glue/sst2', seed: 0, trainable: 2_800, total: 1_000_000 }),
      run({ method: 'full', dataset: 'glue/sst2', seed: 0, trainable: 1_000_000, total: 1_000_000 }),
    ];
    const md = render(buildTable(runs), 'md');
    expect(md).toContain('| LoRA (r=8) | 3K (0.30%) |');
    expect(md).toContain('| VeRA (r=8) | 2.8K (0.28%) |');
    expect(md).toContain('| Full FT | 1M (100%) |');
    // The smallest share sets the decimals for all: two significant digits of 0.0042%.
    const small = buildTable([
      run({ method: 'vera', rank: 1, dataset: 'glue/sst2', seed: 0, trainable: 42, total: 1_000_000 }),
      run({ method: 'lora', rank: 8, dataset: 'glue/sst2', seed: 0, trainable: 3_000, total: 1_000_000 }),
    ]);
    expect(small.percent_digits).toBe(4);
    expect(percentDigits(small.rows)).toBe(4);
    const text = render(small, 'md');
    expect(text).toContain('42 (0.0042%)');
    expect(text).toContain('3K (0.3000%)');
    expect(formatPercent(99.996)).toBe('100%');
    expect(formatPercent(0.5)).toBe('0.50%');
  });
});

describe('VTAB-1k averages', () => {
  it('says which group the VTAB Mean leaves out, and how many tasks each group mean averages', () => {
    const noSpecialized = vtabRuns().filter((r) => !['vtab/eurosat', 'vtab/resisc45'].includes(r.labels.dataset));
    const m = buildTable(noSpecialized);
    expect(m.columns.map((c) => c.key)).toContain('vtab');
    const notes = m.notes.join('\n');
    expect(notes).toContain(
      'VTAB Mean is the mean of the Natural and Structured group means only: no Specialized task is in the table',
    );
    expect(notes).not.toContain('VTAB Mean is the mean of the group means (Natural, Specialized, Structured)');
    expect(notes).toContain("Natural averages 2 of the group's 7 tasks.");
    expect(notes).toContain("Structured averages 2 of the group's 8 tasks.");
    const all = buildTable(vtabRuns()).notes.join('\n');
    expect(all).toContain('VTAB Mean is the mean of the group means (Natural, Specialized, Structured).');
  });
});

describe('LaTeX', () => {
  it('always has a \\caption before its \\label', () => {
    const runs = [run({ method: 'lora', rank: 8, dataset: 'glue/sst2', seed: 0 })];
    const untitled = render(buildTable(runs), 'latex');
    expect(untitled).toMatch(/\\caption\{Mean over 1 seed\.\}\n\\label\{tab:results\}/);
    const titled = render(buildTable(runs, { title: 'GLUE (dev) & more' }), 'latex');
    expect(titled).toMatch(/\\caption\{GLUE \(dev\) \\& more\}\n\\label\{tab:results\}/);
    expect(titled.indexOf('\\caption')).toBeLessThan(titled.indexOf('\\label'));
  });
});
