/**
 * The table model (what `buildTable` produces and `render.ts` prints) and the small helpers its phases share:
 * dimension values and texts, means, sample standard deviations, rounding as printed, cells. Pure.
 */
import type { RunRow } from './runs.js';
import { datasetOrder, prettyDataset, prettyMethod, type Direction } from './names.js';
import type { ReferenceRow } from './reference.js';

export const DIMS = ['model', 'method', 'rank', 'setting', 'dataset'] as const;
export type Dim = (typeof DIMS)[number];

export interface TableOptions {
  /** Row dimensions (default `['method']`); dimensions that vary in the selection are appended. */
  rows?: Dim[];
  /** Column dimension (default `dataset`). */
  cols?: Dim;
  /** Metric to report instead of each dataset's headline metric. */
  metric?: string | null;
  /** `final` metrics (default) or the metrics of the best checkpoint. */
  which?: 'final' | 'best';
  digits?: number;
  /** `auto` (default): ratio metrics (accuracy, F1, MCC, ...) whose values lie in [-1, 1] are shown ×100. */
  scale?: 'auto' | number;
  /** Row whose values the other rows are compared to (`lora`, or a full row label). */
  baseline?: string | null;
  /** Published numbers to show beside the reproduced ones. */
  references?: ReferenceRow[];
  std?: boolean;
  params?: boolean;
  /**
   * `without-head` (default): trainable parameters without the task head, as the LoRA paper and its successors
   * report them; `with-head`: the head included, as PEFT's benchmarks count.
   */
  paramsConvention?: ParamsConvention;
  /** Test each column's best row against the others over seeds (tables/sig-marks.ts); none by default. */
  significance?: SignificanceTest | null;
  /** p threshold of the significance test (default 0.05). */
  alpha?: number;
  avg?: boolean;
  title?: string | null;
  /** Select hyperparameters on this split (`validation`) and report `report` (tables/select.ts). */
  selectOn?: string | null;
  /** The split the table reports (`test`); absent: each run's own evaluated split. */
  report?: string | null;
  /** One selected setting per method (default) or per method and dataset. */
  selectPer?: 'method' | 'dataset';
  /** Efficiency columns: peak memory, time per step, wall time (tables/efficiency.ts). */
  efficiency?: boolean;
}

export const PARAMS_CONVENTIONS = ['without-head', 'with-head'] as const;
export type ParamsConvention = (typeof PARAMS_CONVENTIONS)[number];

export const SIGNIFICANCE_TESTS = ['welch', 'bootstrap'] as const;
export type SignificanceTest = (typeof SIGNIFICANCE_TESTS)[number];

export type CellStatus = 'ok' | 'partial' | 'failed' | 'missing' | 'failed+missing' | 'empty' | 'incomplete';

export interface TableCell {
  mean: number | null;
  std: number | null;
  /** Runs that finished (seeds averaged). */
  n: number;
  /** Runs planned for this cell (finished + failed + missing). */
  planned: number;
  failed: number;
  missing: number;
  seeds: number[];
  status: CellStatus;
  /** True for an average over cells of which at least one is partial. */
  partial_members: boolean;
  mark: 'best' | 'second' | null;
  delta: number | null;
  /** With significance tests only: against the column's best (sig-marks.ts), and the test's p. */
  sig?: 'significant' | 'tie' | 'untested';
  p?: number | null;
}

/** `stat`: a stage statistic beside the scores (`tables/stats.ts`); never marked, never averaged. */
export type ColumnKind = 'data' | 'group' | 'avg' | 'stat';

export interface TableColumn {
  /** Dataset name, rank, ... for data columns; `glue`, `vtab:natural`, `vtab`, `avg` for averages. */
  key: string;
  label: string;
  kind: ColumnKind;
  /** Metric of the column (`mixed` for an average over columns with different metrics). */
  metric: string;
  direction: Direction;
  /** Keys of the columns averaged (group / avg columns). */
  members: string[];
}

export type RowKind = 'result' | 'reference' | 'reference-delta';

/** Trainable parameters of a row: lowest and highest over its runs, and each run's share of its own total. */
export interface RowParams {
  trainable: number | null;
  trainable_max: number | null;
  /** The largest total of the row's runs (for reference; percentages use each run's own total). */
  total: number | null;
  /** Lowest and highest per-run trainable ÷ total × 100 (absent or null without totals). */
  pct?: number | null;
  pct_max?: number | null;
}

export interface TableRow {
  key: string;
  label: string;
  kind: RowKind;
  /** Values of the row dimensions (result rows). */
  dims: Partial<Record<Dim, string | number | null>>;
  cells: TableCell[];
  params: RowParams | null;
  /** Where a reference row's numbers come from. */
  source: string | null;
  is_baseline: boolean;
}

export interface TableModel {
  schema: 'rankflow.table/v1';
  title: string | null;
  row_dims: Dim[];
  col_dim: Dim;
  which: 'final' | 'best';
  digits: number;
  show_std: boolean;
  show_params: boolean;
  /** Whether the parameter counts include the task head (tables/params.ts). */
  params_convention: ParamsConvention;
  baseline: string | null;
  /** Scale applied per metric (100 for ratio metrics printed in percent). */
  scales: Record<string, number>;
  /** Decimals of every parameter percentage in the table (params.ts `percentDigits`). */
  percent_digits: number;
  /** With significance tests only: which test, the p threshold, the bootstrap's resamples and seed. */
  significance?: { test: SignificanceTest; alpha: number; resamples?: number; seed?: number };
  columns: TableColumn[];
  rows: TableRow[];
  notes: string[];
  /** What made the table and its runs (tables/footer.ts); set by the CLI, absent from a bare `buildTable`. */
  provenance?: Provenance;
}

export interface Provenance {
  table: { rankflow: string; git: string | null };
  /** Distinct versions the runs' records name (sorted). */
  runs: { rankflow: string[]; git: string[]; runtime: string[]; torch: string[]; python: string[] };
  sweeps: string[];
}

export interface Accum {
  values: number[];
  seeds: number[];
  failed: number;
  missing: number;
  runIds: Set<string>;
}

export function dimValue(run: RunRow, dim: Dim): string | number | null {
  const l = run.labels;
  switch (dim) {
    case 'model':
      return l.model;
    case 'method':
      return l.method;
    case 'rank':
      return l.rank;
    case 'setting':
      return l.setting;
    case 'dataset':
      return l.dataset;
  }
}

export function dimText(dim: Dim, v: string | number | null): string {
  if (dim === 'rank') return v === null ? '' : `r=${v}`;
  if (dim === 'method') return prettyMethod(String(v));
  if (dim === 'dataset') return prettyDataset(String(v));
  return v === null ? '' : String(v);
}

export function mean(xs: number[]): number | null {
  if (xs.length === 0) return null;
  let s = 0;
  for (const x of xs) s += x;
  return s / xs.length;
}

/** Sample (n − 1) standard deviation; null below two values. */
export function sampleStd(xs: number[]): number | null {
  if (xs.length < 2) return null;
  const m = mean(xs)!;
  let s = 0;
  for (const x of xs) s += (x - m) * (x - m);
  return Math.sqrt(s / (xs.length - 1));
}

/** Rounds as the table prints, so that ties are what the reader sees as ties. */
export function roundTo(x: number, digits: number): number {
  const f = 10 ** digits;
  const r = Math.round(x * f) / f;
  return Object.is(r, -0) ? 0 : r;
}

export function listText(xs: string[], max = 8): string {
  return xs.length <= max ? xs.join(', ') : `${xs.slice(0, max).join(', ')}, ... (${xs.length} in all)`;
}

export function compareValues(dim: Dim, a: string | number | null, b: string | number | null): number {
  if (dim === 'dataset') return datasetOrder(String(a), String(b));
  if (dim === 'rank') {
    if (a === b) return 0;
    if (a === null) return -1;
    if (b === null) return 1;
    return (a as number) - (b as number);
  }
  return 0; // first appearance
}

export function emptyCell(status: CellStatus = 'empty'): TableCell {
  return {
    mean: null,
    std: null,
    n: 0,
    planned: 0,
    failed: 0,
    missing: 0,
    seeds: [],
    status,
    partial_members: false,
    mark: null,
    delta: null,
  };
}

export function cellFrom(a: Accum): TableCell {
  const n = a.values.length;
  const planned = n + a.failed + a.missing;
  let status: CellStatus;
  if (planned === 0) status = 'empty';
  else if (n === planned) status = 'ok';
  else if (n > 0) status = 'partial';
  else if (a.failed > 0 && a.missing > 0) status = 'failed+missing';
  else if (a.failed > 0) status = 'failed';
  else status = 'missing';
  return {
    mean: mean(a.values),
    std: sampleStd(a.values),
    n,
    planned,
    failed: a.failed,
    missing: a.missing,
    seeds: [...a.seeds].sort((x, y) => x - y),
    status,
    partial_members: false,
    mark: null,
    delta: null,
  };
}

export function describeRun(r: RunRow): string {
  const l = r.labels;
  return `${l.method}${l.rank !== null ? ` r=${l.rank}` : ''}${l.setting ? ` (${l.setting})` : ''} on ${l.dataset} seed ${l.seed}`;
}

export function rowLabel(dims: Dim[], values: Partial<Record<Dim, string | number | null>>): string {
  const parts = dims.map((d) => dimText(d, values[d] ?? null)).filter((s, i, a) => s !== '' && a.indexOf(s) === i);
  if (parts.length === 0) return '(all)';
  const [first, ...rest] = parts;
  return rest.length ? `${first} (${rest.join(', ')})` : first!;
}
