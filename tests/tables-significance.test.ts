/**
 * Significance marks (issue 17): the t distribution against reference values (mpmath's regularized incomplete
 * beta at 30 digits, computed with the runtime venv's mpmath: betainc(df/2, 1/2, 0, df/(df+t²))) and closed
 * forms (df = 1: Cauchy, df = 2), Welch's statistic on a hand-worked example, the paired bootstrap's
 * determinism, and the marks, notes and renderers of a table.
 */
import { describe, expect, it } from 'vitest';
import { compare, pairedBootstrap, pairs, tTwoSided, welch } from '../tables/significance.js';
import { buildTable } from '../tables/table.js';
import { render } from '../tables/render.js';
import { runFromRecord, type RunRow } from '../tables/runs.js';
import { makeRecord, type RecordOptions } from './tables-fixtures.js';

const run = (o: RecordOptions): RunRow => runFromRecord(makeRecord(o));

describe('Student t', () => {
  it('matches mpmath to 1e-10', () => {
    const ref: [number, number, number][] = [
      [2.0, 3, 0.139325968558843],
      [1.5, 7.3, 0.175563092803086],
      [0.3, 1, 0.814452841844515],
      [4.2, 2.5, 0.0349643087256813],
      [10, 4, 0.000562003622715991],
      [0.05, 30, 0.960453808649953],
      [25, 2.2, 0.00096097373709889],
      [1.0, 200, 0.318518847909747],
    ];
    for (const [t, df, p] of ref) expect(Math.abs(tTwoSided(t, df) - p), `t=${t} df=${df}`).toBeLessThan(1e-10);
  });

  it('matches the closed forms for 1 and 2 degrees of freedom and the 5% critical values', () => {
    for (const t of [0.1, 1, 3.7, 40]) {
      expect(tTwoSided(t, 1)).toBeCloseTo(1 - (2 / Math.PI) * Math.atan(t), 12);
      expect(tTwoSided(t, 2)).toBeCloseTo(1 - t / Math.sqrt(2 + t * t), 12);
    }
    expect(tTwoSided(12.706, 1)).toBeCloseTo(0.05, 4);
    expect(tTwoSided(2.776, 4)).toBeCloseTo(0.05, 4);
    expect(tTwoSided(2.228, 10)).toBeCloseTo(0.05, 4);
    expect(tTwoSided(0, 5)).toBeCloseTo(1, 12);
  });
});

describe('tests', () => {
  it("computes Welch's t and Welch–Satterthwaite df (hand-worked)", () => {
    // a: mean 2, s² 1; b: mean 5, s² 4; se² = 1/3 + 4/3 = 5/3; t = −3/√(5/3); df = (5/3)² / ((1/3)²/2 + (4/3)²/2) = 50/17.
    const w = welch([1, 2, 3], [3, 5, 7])!;
    expect(w.t).toBeCloseTo(-3 / Math.sqrt(5 / 3), 12);
    expect(w.df).toBeCloseTo(50 / 17, 12);
    expect(w.p).toBeCloseTo(0.104478886684722, 10); // mpmath at t = 2.32379…, df = 50/17
    expect(welch([1], [2, 3])).toBeNull();
  });

  it('pairs seeds only when both ran the same ones, and bootstraps deterministically', () => {
    expect(pairs({ values: [3, 4], seeds: [1, 0] }, { values: [1, 1.5], seeds: [0, 1] })).toEqual([1.5, 3]);
    expect(pairs({ values: [3, 4], seeds: [0, 1] }, { values: [1, 1.5], seeds: [0, 2] })).toBeNull();
    const d = [0.4, 0.1, 0.3, -0.05, 0.2];
    const p = pairedBootstrap(d)!;
    expect(pairedBootstrap(d)).toBe(p);
    expect(p).toBeGreaterThan(0);
    expect(p).toBeLessThan(0.2);
    expect(pairedBootstrap([1, -1, 1, -1])).toBeGreaterThan(0.9);
    expect(compare({ values: [3, 4], seeds: [0, 1] }, { values: [1, 2], seeds: [5, 6] }, 'bootstrap')!.test).toBe(
      'welch',
    );
  });
});

/** Three methods on SST-2, three seeds: A clearly best over C, B within noise of A. */
function runs(): RunRow[] {
  const acc: Record<string, number[]> = {
    a: [0.9, 0.91, 0.92],
    b: [0.905, 0.89, 0.915],
    c: [0.8, 0.81, 0.805],
  };
  return Object.entries(acc).flatMap(([method, vs]) =>
    vs.map((v, seed) => run({ method, dataset: 'glue/sst2', seed, metrics: { accuracy: v } })),
  );
}

describe('table marks', () => {
  it('marks the significantly worse rows and the ties, with the test and p threshold in the notes', () => {
    const m = buildTable(runs(), { significance: 'welch' });
    const [a, b, c] = m.rows.map((r) => r.cells[0]!);
    expect(a!.mark).toBe('best');
    expect(a!.sig).toBeUndefined();
    expect(b!.sig).toBe('tie');
    expect(c!.sig).toBe('significant');
    expect(c!.p).toBeCloseTo(welch([90, 91, 92], [80, 81, 80.5])!.p, 12);
    expect(m.significance).toEqual({ test: 'welch', alpha: 0.05 });
    expect(m.notes.some((n) => n.startsWith("Significance: each column's best (bold) against every other row"))).toBe(
      true,
    );
    expect(m.notes.join(' ')).toContain("Welch's t-test (two-sided), p < 0.05");
    const md = render(m, 'md');
    expect(md).toMatch(/\| 80\.5 ± 0\.5 † \|/);
    expect(md).toMatch(/\| <u>90\.3<\/u> ± 1\.3 ≈ \|/);
    expect(render(m, 'latex')).toContain('80.5$_{\\pm 0.5}$$^{\\dagger}$');
    expect(render(m, 'html')).toContain('<sup class="sig">≈</sup>');
    const csv = render(m, 'csv').split('\n');
    expect(csv[0]!.endsWith(',significance,p_value')).toBe(true);
    expect(csv[3]).toMatch(/,significant,[0-9.e-]+$/);
  });

  it('uses the paired bootstrap when seeds pair up, and a stricter threshold can turn a win into a tie', () => {
    const m = buildTable(runs(), { significance: 'bootstrap' });
    expect(m.significance).toEqual({ test: 'bootstrap', alpha: 0.05, resamples: 10_000, seed: 17 });
    expect(m.notes.join(' ')).toContain('a paired bootstrap over the seeds both rows ran (10,000 resamples');
    expect(m.notes.join(' ')).not.toContain('where the seeds do not pair up');
    const strict = buildTable(runs(), { significance: 'welch', alpha: 1e-6 });
    expect(strict.rows[2]!.cells[0]!.sig).toBe('tie');
  });

  it('adds no significance fields when not asked', () => {
    const m = buildTable(runs());
    expect(m.significance).toBeUndefined();
    expect(m.rows.every((r) => r.cells.every((c) => !('sig' in c)))).toBe(true);
    expect(render(m, 'csv').split('\n')[0]).not.toContain('significance');
  });

  it('refuses a bad threshold with one line', () => {
    expect(() => buildTable(runs(), { significance: 'welch', alpha: 2 })).toThrow(
      /^--alpha 2: expected a p threshold between 0 and 1$/,
    );
  });
});
