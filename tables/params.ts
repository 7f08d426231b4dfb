/**
 * Trainable-parameter counts of a row and how they are printed: the lowest and highest count over the row's
 * runs (a row spanning datasets may have heads of different sizes), the percentage of each run's own total
 * (never the lowest count over the highest total), both ends printed with enough digits to differ when they
 * do, and one number of decimals for every percentage of a table. Pure.
 */
import type { RowParams, TableRow } from './model.js';

/** The counts of one row's runs: trainable and total per run (total null when unknown). */
export interface ParamCounts {
  tr: number[];
  /** Per-run trainable ÷ total × 100, for the runs with a total. */
  pct: number[];
  tot: number[];
}

export function newCounts(): ParamCounts {
  return { tr: [], pct: [], tot: [] };
}

export function addCount(p: ParamCounts, trainable: number, total: number | null): void {
  p.tr.push(trainable);
  if (total !== null) {
    p.tot.push(total);
    if (total > 0) p.pct.push((100 * trainable) / total);
  }
}

export function rowParams(p: ParamCounts): RowParams {
  return {
    trainable: Math.min(...p.tr),
    trainable_max: Math.max(...p.tr),
    total: p.tot.length ? Math.max(...p.tot) : null,
    pct: p.pct.length ? Math.min(...p.pct) : null,
    pct_max: p.pct.length ? Math.max(...p.pct) : null,
  };
}

/**
 * Decimals for the table's percentages: two, or more so that the smallest non-zero percentage keeps two
 * significant digits (0.0042%), at most six. One number for the whole table, so 0.30% never stands beside 0.3%.
 */
export function percentDigits(rows: TableRow[]): number {
  let smallest = Infinity;
  for (const r of rows) {
    const v = r.params?.pct;
    if (v !== null && v !== undefined && v > 0 && v < smallest) smallest = v;
  }
  if (!Number.isFinite(smallest) || smallest >= 0.1) return 2;
  return Math.min(6, Math.max(2, Math.ceil(-Math.log10(smallest)) + 1));
}

const UNITS: [number, string][] = [
  [1e9, 'B'],
  [1e6, 'M'],
  [1e3, 'K'],
];

/** `9175040` -> `9.18M`; three significant digits (trailing zeros dropped). */
export function formatCount(n: number): string {
  for (const [f, u] of UNITS) {
    if (n >= f) return `${Number((n / f).toPrecision(3))}${u}`;
  }
  return String(n);
}

/** A count with `precision` significant digits, trailing zeros kept (both ends of a range alike). */
function countAt(n: number, precision: number): string {
  for (const [f, u] of UNITS) {
    if (n >= f) return `${(n / f).toPrecision(precision)}${u}`;
  }
  return String(n);
}

/** `lo–hi`, with as many significant digits as it takes for the two ends to print differently. */
export function formatCountRange(lo: number, hi: number): string {
  if (lo === hi) return formatCount(lo);
  const a = formatCount(lo);
  const b = formatCount(hi);
  if (a !== b) return `${a}–${b}`;
  for (let p = 4; p <= 9; p++) {
    const x = countAt(lo, p);
    const y = countAt(hi, p);
    if (x !== y) return `${x}–${y}`;
  }
  return `${lo}–${hi}`;
}

/** A percentage with the table's decimals; exactly 100% as `100%`. */
export function formatPercent(p: number, digits = 2): string {
  if (p >= 100 - 0.5 * 10 ** -digits) return '100%';
  return `${p.toFixed(digits)}%`;
}

/** `lo–hi%`, or one value when both ends print alike. */
export function formatPercentRange(lo: number, hi: number, digits: number): string {
  const a = formatPercent(lo, digits);
  const b = formatPercent(hi, digits);
  return a === b ? a : `${a.slice(0, -1)}–${b}`;
}

/** The Params cell: `800K (0.64%)`, `24.19K–24.24K (0.19–0.20%)`, `–` without counts. */
export function paramsText(row: TableRow, digits = 2): string {
  const p = row.params;
  if (!p || p.trainable === null) return '–';
  let s = formatCountRange(p.trainable, p.trainable_max ?? p.trainable);
  if (p.pct !== null && p.pct !== undefined) s += ` (${formatPercentRange(p.pct, p.pct_max ?? p.pct, digits)})`;
  else if (p.total) s += ` (${formatPercent((100 * p.trainable) / p.total, digits)})`;
  return s;
}
