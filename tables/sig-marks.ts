/**
 * Significance marks of a table (`--significance welch|bootstrap`): in every data column and dataset block, the
 * best row (bold) is tested against each other row over seeds (tables/significance.ts); a cell gets `sig`
 * `significant` (the best is significantly better, p < alpha), `tie` (not significantly different) or
 * `untested` (too few seeds), and its `p`. Average columns have no per-seed values and are not tested.
 */
import type { Accumulated } from './aggregate.js';
import { BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED, compare } from './significance.js';
import type { SignificanceTest, TableColumn, TableModel, TableRow } from './model.js';

export const DEFAULT_ALPHA = 0.05;

function testBlock(rows: TableRow[], ci: number, ck: string, agg: Accumulated, test: SignificanceTest, alpha: number) {
  const used = new Set<string>();
  const best = rows.find((r) => r.kind === 'result' && r.cells[ci]!.mark === 'best');
  if (!best) return used;
  const b = agg.acc.get(best.key)?.get(ck);
  for (const r of rows) {
    const cell = r.cells[ci]!;
    if (r.kind !== 'result' || cell.mean === null || cell.mark === 'best') continue;
    const o = agg.acc.get(r.key)?.get(ck);
    const res = b && o ? compare(b, o, test) : null;
    if (!res) {
      cell.sig = 'untested';
      cell.p = null;
      continue;
    }
    used.add(res.test);
    cell.p = res.p;
    cell.sig = res.p < alpha ? 'significant' : 'tie';
  }
  return used;
}

/** Marks the cells (see the module docstring); returns the note that says what was tested and how. */
export function markSignificance(
  rows: TableRow[],
  blocks: Map<string, TableRow[]>,
  columns: TableColumn[],
  agg: Accumulated,
  test: SignificanceTest,
  alpha: number,
): { note: string; spec: NonNullable<TableModel['significance']> } {
  const used = new Set<string>();
  columns.forEach((c, ci) => {
    if (c.kind !== 'data') return;
    for (const brows of blocks.values()) for (const t of testBlock(brows, ci, c.key, agg, test, alpha)) used.add(t);
  });
  const boot = `a paired bootstrap over the seeds both rows ran (${BOOTSTRAP_RESAMPLES.toLocaleString('en-US')} resamples, generator seed ${BOOTSTRAP_SEED}, two-sided)`;
  const welch = "Welch's t-test (two-sided)";
  let how = welch;
  if (test === 'bootstrap') how = used.has('welch') ? `${boot}; ${welch} where the seeds do not pair up` : boot;
  const untested = rows.some((r) => r.cells.some((c) => c.sig === 'untested'));
  const note =
    `Significance: each column's best (bold) against every other row over seeds, ${how}, p < ${alpha}: ` +
    `† the best is significantly better; ≈ not significantly different (a tie)` +
    `${untested ? '; ? not tested (fewer than two seeds)' : ''}. Averages are not tested.`;
  return {
    note,
    spec: {
      test,
      alpha,
      ...(test === 'bootstrap' ? { resamples: BOOTSTRAP_RESAMPLES, seed: BOOTSTRAP_SEED } : {}),
    },
  };
}
