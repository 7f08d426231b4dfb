/* eslint-disable max-lines-per-function, complexity -- a frozen copy of the old code, for the benchmark only */
// The table code as it was before issue 17 (commit 29558f3), kept only so bench/table_bench.ts can time it
// side by side with tables/; not used by rankflow.
/**
 * Aggregation of runs into a paper table: rows × columns of cells, each the mean and sample standard
 * deviation over seeds of one (model, method, rank, setting, dataset) group, with the seed count, the runs
 * that failed or are missing, trainable parameters, benchmark-group averages (GLUE average; VTAB-1k
 * Natural / Specialized / Structured and their mean), an overall average, direction-aware best / second-best
 * marks, deltas against a baseline row, and reference rows of published numbers. Pure: no I/O.
 *
 * The result is a `TableModel`; `render.ts` turns it into Markdown, LaTeX, CSV, HTML or JSON.
 */
import type { RunRow } from '../../../tables/runs.js';
import {
  benchmarkOf,
  datasetOrder,
  GLUE_NOT_AVERAGED,
  isRatioMetric,
  metricDirection,
  prettyDataset,
  prettyMethod,
  VTAB_GROUPS,
  type Direction,
} from '../../../tables/names.js';
import type { ReferenceRow } from '../../../tables/reference.js';
import { TableInputError } from '../../../core/errors.js';

export { TableInputError };

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
  avg?: boolean;
  title?: string | null;
}

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
}

export type ColumnKind = 'data' | 'group' | 'avg';

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

export interface TableRow {
  key: string;
  label: string;
  kind: RowKind;
  /** Values of the row dimensions (result rows). */
  dims: Partial<Record<Dim, string | number | null>>;
  cells: TableCell[];
  params: { trainable: number | null; trainable_max: number | null; total: number | null } | null;
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
  baseline: string | null;
  /** Scale applied per metric (100 for ratio metrics printed in percent). */
  scales: Record<string, number>;
  columns: TableColumn[];
  rows: TableRow[];
  notes: string[];
}

interface Accum {
  values: number[];
  seeds: number[];
  failed: number;
  missing: number;
  runIds: Set<string>;
}

function dimValue(run: RunRow, dim: Dim): string | number | null {
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

function dimText(dim: Dim, v: string | number | null): string {
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

function listText(xs: string[], max = 8): string {
  return xs.length <= max ? xs.join(', ') : `${xs.slice(0, max).join(', ')}, ... (${xs.length} in all)`;
}

function compareValues(dim: Dim, a: string | number | null, b: string | number | null): number {
  if (dim === 'dataset') return datasetOrder(String(a), String(b));
  if (dim === 'rank') {
    if (a === b) return 0;
    if (a === null) return -1;
    if (b === null) return 1;
    return (a as number) - (b as number);
  }
  return 0; // first appearance
}

function emptyCell(status: CellStatus = 'empty'): TableCell {
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

function cellFrom(a: Accum): TableCell {
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

/** Builds the table. Throws `TableInputError` (one line, naming the fix) for bad requests. */
export function buildTable(runs: RunRow[], opts: TableOptions = {}): TableModel {
  const colDim: Dim = opts.cols ?? 'dataset';
  const askedRows: Dim[] = opts.rows && opts.rows.length > 0 ? [...opts.rows] : ['method'];
  const digits = opts.digits ?? 1;
  const which = opts.which ?? 'final';
  const showStd = opts.std ?? true;
  const showParams = opts.params ?? true;
  const wantAvg = opts.avg ?? true;
  if (!Number.isInteger(digits) || digits < 0 || digits > 6) {
    throw new TableInputError(`--digits must be an integer from 0 to 6 (got ${digits})`);
  }
  for (const d of [...askedRows, colDim]) {
    if (!(DIMS as readonly string[]).includes(d)) {
      throw new TableInputError(
        `unknown table dimension \`${d}\`; use one of ${DIMS.join(', ')} for --rows and --cols`,
      );
    }
  }
  if (askedRows.includes(colDim)) {
    throw new TableInputError(
      `\`${colDim}\` is both a row and the column dimension; drop it from --rows or pick another --cols`,
    );
  }
  if (runs.length === 0) {
    throw new TableInputError(
      'empty selection: no runs to tabulate; check the sweep/recipe name and the --method/--dataset/--rank/--tag filters',
    );
  }
  const notes: string[] = [];

  // Unique runs (a run shared by two joined sweeps is counted once).
  const seen = new Set<string>();
  const uniq: RunRow[] = [];
  for (const r of runs) {
    if (seen.has(r.run_id)) continue;
    seen.add(r.run_id);
    uniq.push(r);
  }

  // Dimensions that vary in the selection but were not asked for still split rows: never average across them.
  const rowDims: Dim[] = [...askedRows];
  const added: Dim[] = [];
  for (const d of DIMS) {
    if (d === colDim || rowDims.includes(d)) continue;
    const values = new Set(uniq.map((r) => JSON.stringify(dimValue(r, d))));
    if (values.size > 1) {
      rowDims.push(d);
      added.push(d);
    }
  }
  if (added.length > 0) notes.push(`Rows are also split by ${added.join(', ')} (they vary in the selection).`);

  // Which metric each finished run reports.
  const metricsOf = (r: RunRow): Record<string, number> => (which === 'best' ? r.best_metrics : r.metrics);
  const succeeded = uniq.filter((r) => r.status === 'succeeded');
  if (opts.metric) {
    const m = opts.metric;
    const lacking = succeeded.filter((r) => !(m in metricsOf(r)));
    if (succeeded.length > 0 && lacking.length === succeeded.length) {
      const available = [...new Set(succeeded.flatMap((r) => Object.keys(metricsOf(r))))].sort();
      throw new TableInputError(
        `unknown metric \`${m}\`: no run reports it; available ${which} metrics: ${available.join(', ') || '(none)'}`,
      );
    }
    if (lacking.length > 0) {
      const ds = [...new Set(lacking.map((r) => r.labels.dataset))].sort();
      throw new TableInputError(
        `metric \`${m}\` is missing from ${lacking.length} run(s) on ${listText(ds, 4)}; pick a metric every dataset reports or narrow with --dataset`,
      );
    }
  }
  const metricOf = (r: RunRow): string | null => opts.metric ?? r.headline;
  for (const r of succeeded) {
    const m = metricOf(r);
    if (m === null || !(m in metricsOf(r))) {
      throw new TableInputError(
        `run ${r.run_id} (${r.labels.dataset}) has no ${which} metric \`${m}\`; it reports ${Object.keys(metricsOf(r)).join(', ') || 'nothing'}; pass --metric NAME`,
      );
    }
  }

  // Scale per metric.
  const scales: Record<string, number> = {};
  const metricNames = [...new Set(succeeded.map((r) => metricOf(r)!))].sort();
  for (const m of metricNames) {
    if (typeof opts.scale === 'number') scales[m] = opts.scale;
    else {
      const vals = succeeded.filter((r) => metricOf(r) === m).map((r) => metricsOf(r)[m]!);
      scales[m] = isRatioMetric(m) && vals.every((v) => Math.abs(v) <= 1) ? 100 : 1;
    }
  }

  // Row and column keys in order.
  const rowKeyOf = (r: RunRow): string => JSON.stringify(rowDims.map((d) => dimValue(r, d)));
  const colKeyOf = (r: RunRow): string => {
    const v = dimValue(r, colDim);
    return v === null ? '' : String(v);
  };
  const rowInfo = new Map<string, { dims: Partial<Record<Dim, string | number | null>>; order: number }>();
  const colValues = new Map<string, string | number | null>();
  const rks: string[] = new Array(uniq.length);
  const cks: string[] = new Array(uniq.length);
  uniq.forEach((r, i) => {
    const rk = (rks[i] = rowKeyOf(r));
    if (!rowInfo.has(rk)) {
      const dims: Partial<Record<Dim, string | number | null>> = {};
      for (const d of rowDims) dims[d] = dimValue(r, d);
      rowInfo.set(rk, { dims, order: i });
    }
    const ck = (cks[i] = colKeyOf(r));
    if (!colValues.has(ck)) colValues.set(ck, dimValue(r, colDim));
  });
  const colKeys = [...colValues.keys()];
  colKeys.sort((a, b) => compareValues(colDim, colValues.get(a)!, colValues.get(b)!));
  const rowKeys = [...rowInfo.keys()];
  // Rows: by dataset when datasets are rows, then methods in order of first appearance (the recipe's order),
  // ranks ascending within a method, then first appearance.
  const methodOrder = new Map<string, number>();
  for (const r of uniq) if (!methodOrder.has(r.labels.method)) methodOrder.set(r.labels.method, methodOrder.size);
  rowKeys.sort((a, b) => {
    const da = rowInfo.get(a)!.dims;
    const db = rowInfo.get(b)!.dims;
    if (rowDims.includes('dataset')) {
      const c = compareValues('dataset', da.dataset ?? null, db.dataset ?? null);
      if (c !== 0) return c;
    }
    if (rowDims.includes('method')) {
      const c = methodOrder.get(String(da.method))! - methodOrder.get(String(db.method))!;
      if (c !== 0) return c;
    }
    if (rowDims.includes('rank')) {
      const c = compareValues('rank', da.rank ?? null, db.rank ?? null);
      if (c !== 0) return c;
    }
    return rowInfo.get(a)!.order - rowInfo.get(b)!.order;
  });

  // Accumulate.
  const acc = new Map<string, Map<string, Accum>>();
  const colMetric = new Map<string, Map<string, Set<string>>>(); // block (dataset in rows) -> col -> metrics
  const blockOf = (dims: Partial<Record<Dim, string | number | null>>): string =>
    rowDims.includes('dataset') ? String(dims.dataset) : '';
  const params = new Map<string, { tr: number[]; tot: number[] }>();
  const plannedParams = new Map<string, { tr: number[]; tot: number[] }>();
  const seedSeen = new Map<string, Set<number>>();
  let duplicateSeeds = 0;
  const failures: string[] = [];
  const missingRuns: RunRow[] = [];
  for (let i = 0; i < uniq.length; i++) {
    const r = uniq[i]!;
    const rk = rks[i]!;
    const ck = cks[i]!;
    let row = acc.get(rk);
    if (!row) acc.set(rk, (row = new Map()));
    let a = row.get(ck);
    if (!a) row.set(ck, (a = { values: [], seeds: [], failed: 0, missing: 0, runIds: new Set() }));
    a.runIds.add(r.run_id);
    if (r.trainable !== null) {
      // Counts recorded by finished or failed runs; the planner's counts of missing runs only as a fallback.
      const target = r.status === 'missing' ? plannedParams : params;
      let p = target.get(rk);
      if (!p) target.set(rk, (p = { tr: [], tot: [] }));
      p.tr.push(r.trainable);
      if (r.total !== null) p.tot.push(r.total);
    }
    if (r.status === 'succeeded') {
      const m = metricOf(r)!;
      const block = blockOf(rowInfo.get(rk)!.dims);
      let bm = colMetric.get(block);
      if (!bm) colMetric.set(block, (bm = new Map()));
      let ms = bm.get(ck);
      if (!ms) bm.set(ck, (ms = new Set()));
      ms.add(m);
      a.values.push(metricsOf(r)[m]! * scales[m]!);
      a.seeds.push(r.labels.seed);
      const sk = `${rk}|${ck}`;
      let ss = seedSeen.get(sk);
      if (!ss) seedSeen.set(sk, (ss = new Set()));
      if (ss.has(r.labels.seed)) duplicateSeeds++;
      ss.add(r.labels.seed);
    } else if (r.status === 'failed') {
      a.failed++;
      failures.push(`${describeRun(r)}: ${r.error ?? 'failed'}`);
    } else {
      a.missing++;
      missingRuns.push(r);
    }
  }
  if (duplicateSeeds > 0) {
    notes.push(
      `${duplicateSeeds} cell value(s) average runs that share a seed: their specs differ in something the labels do not show.`,
    );
  }

  // Column metrics must agree within a column (per dataset block when datasets are rows).
  const columnMetric = new Map<string, string>();
  for (const [block, bm] of colMetric) {
    for (const [ck, ms] of bm) {
      if (ms.size > 1) {
        const where = block ? `${prettyDataset(block)}, ${colDim} ${ck}` : `column ${ck || '(none)'}`;
        throw new TableInputError(
          `${where} mixes metrics ${[...ms].sort().join(' and ')}; pass --metric NAME to pick one`,
        );
      }
      const m = [...ms][0]!;
      const prev = columnMetric.get(ck);
      columnMetric.set(ck, prev === undefined || prev === m ? m : 'mixed');
    }
  }
  const directionOf = (m: string): Direction => metricDirection(m);

  // Data columns.
  const columns: TableColumn[] = colKeys.map((ck) => {
    const m = columnMetric.get(ck) ?? opts.metric ?? 'none';
    const dirs = new Set<Direction>();
    for (const [, bm] of colMetric) for (const mm of bm.get(ck) ?? []) dirs.add(directionOf(mm));
    return {
      key: ck,
      label: colDim === 'dataset' ? prettyDataset(ck) : dimText(colDim, colValues.get(ck) ?? null) || `no ${colDim}`,
      kind: 'data',
      metric: m,
      direction: dirs.size === 1 ? [...dirs][0]! : directionOf(m),
      members: [],
    };
  });

  // Group and average columns (dataset columns only).
  const withGroups: TableColumn[] = [];
  const mixedNote = (label: string, members: TableColumn[]): string =>
    `No ${label} column: it would average higher-is-better and lower-is-better metrics (${members.map((c) => `${c.label}: ${c.metric}`).join(', ')}).`;
  const groupColumn = (key: string, label: string, members: TableColumn[]): TableColumn | null => {
    const dirs = new Set(members.map((c) => c.direction));
    if (dirs.size > 1) {
      notes.push(mixedNote(label, members));
      return null;
    }
    const ms = new Set(members.map((c) => c.metric));
    return {
      key,
      label,
      kind: key === 'avg' ? 'avg' : 'group',
      metric: ms.size === 1 ? [...ms][0]! : 'mixed',
      direction: [...dirs][0]!,
      members: members.map((c) => c.key),
    };
  };
  if (colDim === 'dataset' && !rowDims.includes('dataset')) {
    const bmOf = (c: TableColumn) => benchmarkOf(c.key);
    const glueAvg = columns.filter((c) => bmOf(c)?.benchmark === 'glue' && !GLUE_NOT_AVERAGED.includes(bmOf(c)!.task));
    const vtabCols = columns.filter((c) => bmOf(c)?.benchmark === 'vtab');
    const vtabGroupCols: TableColumn[] = [];
    for (let i = 0; i < columns.length; i++) {
      const c = columns[i]!;
      withGroups.push(c);
      const next = columns[i + 1];
      const bm = bmOf(c);
      const nbm = next ? bmOf(next) : null;
      if (bm?.benchmark === 'glue' && nbm?.benchmark !== 'glue' && glueAvg.length >= 2) {
        const g = groupColumn('glue', 'GLUE Avg', glueAvg);
        if (g) withGroups.push(g);
      }
      if (bm?.benchmark === 'vtab' && (nbm?.benchmark !== 'vtab' || nbm.group !== bm.group)) {
        const members = vtabCols.filter((x) => bmOf(x)!.group === bm.group);
        const name = bm.group!;
        const g = groupColumn(`vtab:${name}`, name[0]!.toUpperCase() + name.slice(1), members);
        if (g) {
          withGroups.push(g);
          vtabGroupCols.push(g);
        }
      }
      if (bm?.benchmark === 'vtab' && nbm?.benchmark !== 'vtab' && vtabGroupCols.length >= 2) {
        const g = groupColumn('vtab', 'VTAB Mean', vtabGroupCols);
        if (g) withGroups.push(g);
      }
    }
    const oneBenchmark =
      (glueAvg.length > 0 && columns.every((c) => bmOf(c)?.benchmark === 'glue')) ||
      (vtabCols.length > 0 && columns.every((c) => bmOf(c)?.benchmark === 'vtab'));
    if (wantAvg && columns.length >= 2 && !oneBenchmark) {
      const g = groupColumn('avg', 'Avg', columns);
      if (g) withGroups.push(g);
    }
    const glueCols = columns.filter((c) => bmOf(c)?.benchmark === 'glue');
    if (glueCols.length > glueAvg.length && glueAvg.length >= 2) {
      notes.push(
        `GLUE Avg excludes ${glueCols
          .filter((c) => !glueAvg.includes(c))
          .map((c) => prettyDataset(c.key))
          .join(', ')}, as the GLUE papers do.`,
      );
    }
    if (vtabGroupCols.length >= 2)
      notes.push('VTAB Mean is the mean of the group means (Natural, Specialized, Structured).');
  } else {
    withGroups.push(...columns);
  }

  // Cells.
  const rows: TableRow[] = rowKeys.map((rk) => {
    const info = rowInfo.get(rk)!;
    const byCol = acc.get(rk)!;
    const cells = new Map<string, TableCell>();
    for (const c of columns) {
      const a = byCol.get(c.key);
      cells.set(c.key, a ? cellFrom(a) : emptyCell());
    }
    const out: TableCell[] = [];
    const groupValue = (c: TableColumn): TableCell => {
      const members = c.members.map((k) => cells.get(k)!);
      const present = members.filter((m) => m.status !== 'empty');
      if (present.length === 0) return emptyCell();
      if (members.some((m) => m.mean === null)) return emptyCell('incomplete');
      const cell = emptyCell('ok');
      cell.mean = mean(members.map((m) => m.mean!));
      cell.partial_members = members.some((m) => m.status === 'partial' || m.partial_members);
      cell.n = Math.min(...members.map((m) => m.n));
      cell.planned = Math.max(...members.map((m) => m.planned));
      return cell;
    };
    for (const c of withGroups) {
      let cell: TableCell;
      if (c.kind === 'data') cell = cells.get(c.key)!;
      else {
        cell = groupValue(c);
        cells.set(c.key, cell);
      }
      out.push(cell);
    }
    const p = params.get(rk) ?? plannedParams.get(rk);
    const dims = info.dims;
    return {
      key: rk,
      label: rowLabel(rowDims, dims),
      kind: 'result',
      dims,
      cells: out,
      params: p
        ? {
            trainable: Math.min(...p.tr),
            trainable_max: Math.max(...p.tr),
            total: p.tot.length ? Math.max(...p.tot) : null,
          }
        : null,
      source: null,
      is_baseline: false,
    };
  });

  // Best / second-best per column (within a dataset block when datasets are rows), on printed values.
  const blocks = new Map<string, TableRow[]>();
  for (const r of rows) {
    const b = blockOf(r.dims);
    let l = blocks.get(b);
    if (!l) blocks.set(b, (l = []));
    l.push(r);
  }
  withGroups.forEach((c, ci) => {
    for (const [, brows] of blocks) {
      let direction = c.direction;
      if (c.kind === 'data') {
        const ms = colMetric.get(blockOf(brows[0]!.dims))?.get(c.key);
        if (ms && ms.size === 1) direction = directionOf([...ms][0]!);
      }
      const vals = brows
        .map((r) => r.cells[ci]!)
        .filter((cell) => cell.mean !== null)
        .map((cell) => roundTo(cell.mean!, digits));
      const distinct = [...new Set(vals)].sort((a, b) => (direction === 'max' ? b - a : a - b));
      if (vals.length < 2) continue; // a lone value is not "best" of anything
      const best = distinct[0]!;
      const second = distinct[1];
      for (const r of brows) {
        const cell = r.cells[ci]!;
        if (cell.mean === null) continue;
        const v = roundTo(cell.mean, digits);
        if (v === best) cell.mark = 'best';
        else if (second !== undefined && v === second) cell.mark = 'second';
      }
    }
  });

  // Baseline deltas.
  let baselineLabel: string | null = null;
  if (opts.baseline) {
    const want = opts.baseline.toLowerCase();
    const matches = rows.filter(
      (r) =>
        r.label.toLowerCase() === want ||
        String(r.dims.method ?? '').toLowerCase() === want ||
        prettyMethod(String(r.dims.method ?? '')).toLowerCase() === want,
    );
    if (matches.length === 0) {
      throw new TableInputError(
        `--baseline \`${opts.baseline}\` matches no row; rows are: ${listText(rows.map((r) => r.label))}`,
      );
    }
    const exact = matches.filter((r) => r.label.toLowerCase() === want);
    const chosen = exact.length > 0 ? exact : matches;
    const perBlock = new Map<string, TableRow[]>();
    for (const r of chosen) {
      const b = blockOf(r.dims);
      let l = perBlock.get(b);
      if (!l) perBlock.set(b, (l = []));
      l.push(r);
    }
    for (const [, l] of perBlock) {
      if (l.length > 1) {
        throw new TableInputError(
          `--baseline \`${opts.baseline}\` is ambiguous: it matches ${l.map((r) => `"${r.label}"`).join(', ')}; pass one of these labels`,
        );
      }
    }
    for (const [b, brows] of blocks) {
      const base = perBlock.get(b)?.[0];
      if (!base) continue;
      base.is_baseline = true;
      for (const r of brows) {
        if (r === base) continue;
        r.cells.forEach((cell, ci) => {
          const bc = base.cells[ci]!;
          if (cell.mean !== null && bc.mean !== null) cell.delta = cell.mean - bc.mean;
        });
      }
    }
    baselineLabel = chosen[0]!.label;
  }

  // Reference rows (published numbers) and the difference to the reproduced row of the same method.
  if (opts.references && opts.references.length > 0) {
    if (colDim !== 'dataset' || rowDims.includes('dataset')) {
      notes.push('Reference rows are shown only with datasets as columns (--cols dataset).');
    } else {
      rows.push(...referenceRows(opts.references, rows, withGroups, notes));
    }
  }

  // Notes on what the numbers are.
  const complete = rows
    .filter((r) => r.kind === 'result')
    .flatMap((r) => r.cells.filter((c, i) => withGroups[i]!.kind === 'data' && c.status === 'ok'));
  const ns = [...new Set(complete.map((c) => c.n))].sort((a, b) => a - b);
  const statText =
    ns.length === 0
      ? 'No cell has all its runs finished.'
      : ns.length === 1
        ? `Mean${showStd && ns[0]! > 1 ? ' ± sample standard deviation' : ''} over ${ns[0]} seed${ns[0] === 1 ? '' : 's'}.`
        : `Mean${showStd ? ' ± sample standard deviation' : ''} over ${ns[0]}–${ns[ns.length - 1]} seeds (per-cell counts in the CSV and JSON).`;
  notes.unshift(statText);
  const metricText = columns
    .map((c) => c.metric)
    .filter((m, i, a) => a.indexOf(m) === i && m !== 'none')
    .map(
      (m) =>
        `${m}${(scales[m] ?? 1) !== 1 ? ` ×${scales[m]}` : ''} (${metricDirection(m) === 'max' ? 'higher' : 'lower'} is better)`,
    );
  if (metricText.length > 0) {
    notes.splice(
      1,
      0,
      `Metric${metricText.length > 1 ? 's' : ''}: ${metricText.join('; ')}${which === 'best' ? ', at the best checkpoint' : ''}. Bold: best per column; underlined: second best (ties share the mark).`,
    );
  }
  if (rows.some((r) => r.cells.some((c) => c.status === 'partial' || c.partial_members))) {
    notes.push(
      '(k/n): only k of the n planned runs of that cell finished; an average marked (*) includes such a cell.',
    );
  }
  if (rows.some((r) => r.cells.some((c) => c.status === 'incomplete'))) {
    notes.push('n/a: average not computed because one of its cells has no finished run.');
  }
  if (failures.length > 0) {
    notes.push(`${failures.length} failed run(s): ${listText(failures, 5)}.`);
  }
  if (missingRuns.length > 0) {
    notes.push(
      `${missingRuns.length} planned run(s) have no result yet: ${listText(missingRuns.map(describeRun), 5)}.`,
    );
  }
  if (baselineLabel) notes.push(`(±x): difference to the baseline row ${baselineLabel}.`);

  return {
    schema: 'rankflow.table/v1',
    title: opts.title ?? null,
    row_dims: rowDims,
    col_dim: colDim,
    which,
    digits,
    show_std: showStd,
    show_params: showParams,
    baseline: baselineLabel,
    scales,
    columns: withGroups,
    rows,
    notes: [...new Set(notes)],
  };
}

function describeRun(r: RunRow): string {
  const l = r.labels;
  return `${l.method}${l.rank !== null ? ` r=${l.rank}` : ''}${l.setting ? ` (${l.setting})` : ''} on ${l.dataset} seed ${l.seed}`;
}

export function rowLabel(dims: Dim[], values: Partial<Record<Dim, string | number | null>>): string {
  const parts = dims.map((d) => dimText(d, values[d] ?? null)).filter((s, i, a) => s !== '' && a.indexOf(s) === i);
  if (parts.length === 0) return '(all)';
  const [first, ...rest] = parts;
  return rest.length ? `${first} (${rest.join(', ')})` : first!;
}

function referenceRows(refs: ReferenceRow[], results: TableRow[], columns: TableColumn[], notes: string[]): TableRow[] {
  const methods = new Set(results.map((r) => String(r.dims.method ?? '')));
  const colIndex = new Map(columns.map((c, i) => [c.key, i]));
  const groups = new Map<string, ReferenceRow[]>();
  for (const ref of refs) {
    if (!methods.has(ref.method) || !colIndex.has(ref.benchmark)) continue;
    const k = JSON.stringify([ref.method, ref.setting, ref.backbone]);
    let l = groups.get(k);
    if (!l) groups.set(k, (l = []));
    l.push(ref);
  }
  const out: TableRow[] = [];
  let skippedMetric = 0;
  const partialAverages = new Set<string>();
  // A published benchmark average is comparable only with an average over the same (complete) task set.
  const fullSize: Record<string, number> = {
    glue: 8,
    'vtab:natural': VTAB_GROUPS.natural.length,
    'vtab:specialized': VTAB_GROUPS.specialized.length,
    'vtab:structured': VTAB_GROUPS.structured.length,
    vtab: 3,
  };
  for (const [k, list] of groups) {
    const first = list[0]!;
    const cells = columns.map(() => emptyCell());
    for (const ref of list) {
      const ci = colIndex.get(ref.benchmark)!;
      const col = columns[ci]!;
      if (col.kind === 'data' && col.metric !== ref.metric) {
        skippedMetric++;
        continue;
      }
      if (col.kind !== 'data' && col.members.length !== (fullSize[col.key] ?? -1)) {
        partialAverages.add(col.label);
        continue;
      }
      const cell = cells[ci]!;
      cell.mean = ref.value;
      cell.status = 'ok';
    }
    if (cells.every((c) => c.mean === null)) continue;
    const label = `${prettyMethod(first.method)}${first.setting ? ` (${first.setting})` : ''}, paper: ${first.backbone}`;
    out.push({
      key: `ref:${k}`,
      label,
      kind: 'reference',
      dims: { method: first.method },
      cells,
      params: first.params !== null ? { trainable: first.params, trainable_max: first.params, total: null } : null,
      source: [...new Set(list.map((r) => r.source))].join('; '),
      is_baseline: false,
    });
    // The reproduced row of the same method (and setting, when the reference gives one that matches).
    const sameMethod = results.filter((r) => r.dims.method === first.method);
    const sameSetting = sameMethod.filter((r) => first.setting !== '' && r.dims.setting === first.setting);
    const candidates = sameSetting.length > 0 ? sameSetting : sameMethod;
    if (candidates.length === 1) {
      const repro = candidates[0]!;
      out.push({
        key: `refdelta:${k}`,
        label: `Δ ${repro.label} − paper`,
        kind: 'reference-delta',
        dims: { method: first.method },
        cells: cells.map((c, i) => {
          const d = emptyCell();
          const rv = repro.cells[i]!.mean;
          if (c.mean !== null && rv !== null) {
            d.mean = rv - c.mean;
            d.status = 'ok';
          }
          return d;
        }),
        params: null,
        source: null,
        is_baseline: false,
      });
    } else if (candidates.length > 1) {
      notes.push(
        `No difference row for ${label}: ${candidates.length} reproduced rows match; give the reference a setting.`,
      );
    }
  }
  if (partialAverages.size > 0) {
    notes.push(
      `Published ${[...partialAverages].join(', ')} values are not shown: this table averages fewer tasks than the papers do.`,
    );
  }
  if (skippedMetric > 0)
    notes.push(`${skippedMetric} reference value(s) skipped: their metric differs from the column's.`);
  if (out.length > 0)
    notes.push(
      "Reference rows: numbers reported in papers (sources listed below); their backbones differ from the reproduction's.",
    );
  return out;
}
