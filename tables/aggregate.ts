/**
 * Aggregating runs into cells: the rows and columns of the selection, which metric each run reports (and its
 * scale), and per (row, column) the values over seeds, the failed and missing runs and the parameter counts.
 */
import { TableInputError } from '../core/errors.js';
import { isRatioMetric } from './names.js';
import type { RunRow } from './runs.js';
import { addCount, newCounts, type ParamCounts } from './params.js';
import {
  compareValues,
  describeRun,
  DIMS,
  dimValue,
  listText,
  type Accum,
  type Dim,
  type ParamsConvention,
  type TableOptions,
} from './model.js';

export type DimValues = Partial<Record<Dim, string | number | null>>;

/** A run shared by two joined sweeps is counted once. */
export function uniqueRuns(runs: RunRow[]): RunRow[] {
  const seen = new Set<string>();
  return runs.filter((r) => !seen.has(r.run_id) && Boolean(seen.add(r.run_id)));
}

/** Row dimensions: the asked ones, plus every other that varies in the selection (never averaged across). */
export function rowDimensions(uniq: RunRow[], asked: Dim[], colDim: Dim, notes: string[]): Dim[] {
  const rowDims: Dim[] = [...asked];
  const added: Dim[] = [];
  for (const d of DIMS) {
    if (d === colDim || rowDims.includes(d)) continue;
    if (new Set(uniq.map((r) => JSON.stringify(dimValue(r, d)))).size > 1) {
      rowDims.push(d);
      added.push(d);
    }
  }
  if (added.length > 0) notes.push(`Rows are also split by ${added.join(', ')} (they vary in the selection).`);
  return rowDims;
}

/** Which metric each finished run reports, and the scale each metric is printed at. */
export interface MetricChoice {
  metricsOf(r: RunRow): Record<string, number>;
  metricOf(r: RunRow): string | null;
  succeeded: RunRow[];
  scales: Record<string, number>;
}

function checkAskedMetric(m: string, succeeded: RunRow[], which: string, metricsOf: MetricChoice['metricsOf']): void {
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

export function chooseMetrics(uniq: RunRow[], opts: TableOptions, which: 'final' | 'best'): MetricChoice {
  const metricsOf = (r: RunRow): Record<string, number> => (which === 'best' ? r.best_metrics : r.metrics);
  const succeeded = uniq.filter((r) => r.status === 'succeeded');
  if (opts.metric) checkAskedMetric(opts.metric, succeeded, which, metricsOf);
  const metricOf = (r: RunRow): string | null => opts.metric ?? r.headline;
  for (const r of succeeded) {
    const m = metricOf(r);
    if (m === null || !(m in metricsOf(r))) {
      throw new TableInputError(
        `run ${r.run_id} (${r.labels.dataset}) has no ${which} metric \`${m}\`; it reports ${Object.keys(metricsOf(r)).join(', ') || 'nothing'}; pass --metric NAME`,
      );
    }
  }
  const scales: Record<string, number> = {};
  for (const m of [...new Set(succeeded.map((r) => metricOf(r)!))].sort()) {
    if (typeof opts.scale === 'number') scales[m] = opts.scale;
    else {
      const vals = succeeded.filter((r) => metricOf(r) === m).map((r) => metricsOf(r)[m]!);
      scales[m] = isRatioMetric(m) && vals.every((v) => Math.abs(v) <= 1) ? 100 : 1;
    }
  }
  return { metricsOf, metricOf, succeeded, scales };
}

/** Row and column keys of every run, in table order. */
export interface Layout {
  rowDims: Dim[];
  colDim: Dim;
  rowInfo: Map<string, { dims: DimValues; order: number }>;
  colValues: Map<string, string | number | null>;
  /** Per run (same index as the runs): its row and column key. */
  rks: string[];
  cks: string[];
  rowKeys: string[];
  colKeys: string[];
}

function sortRows(keys: string[], info: Layout['rowInfo'], rowDims: Dim[], uniq: RunRow[]): void {
  // By dataset when datasets are rows, then methods in order of first appearance (the recipe's order), ranks
  // ascending within a method, then first appearance.
  const methodOrder = new Map<string, number>();
  for (const r of uniq) if (!methodOrder.has(r.labels.method)) methodOrder.set(r.labels.method, methodOrder.size);
  keys.sort((a, b) => {
    const da = info.get(a)!.dims;
    const db = info.get(b)!.dims;
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
    return info.get(a)!.order - info.get(b)!.order;
  });
}

export function layoutOf(uniq: RunRow[], rowDims: Dim[], colDim: Dim): Layout {
  const rowInfo: Layout['rowInfo'] = new Map();
  const colValues: Layout['colValues'] = new Map();
  const rks: string[] = new Array(uniq.length);
  const cks: string[] = new Array(uniq.length);
  uniq.forEach((r, i) => {
    const rk = (rks[i] = JSON.stringify(rowDims.map((d) => dimValue(r, d))));
    if (!rowInfo.has(rk)) {
      const dims: DimValues = {};
      for (const d of rowDims) dims[d] = dimValue(r, d);
      rowInfo.set(rk, { dims, order: i });
    }
    const v = dimValue(r, colDim);
    const ck = (cks[i] = v === null ? '' : String(v));
    if (!colValues.has(ck)) colValues.set(ck, v);
  });
  const colKeys = [...colValues.keys()];
  colKeys.sort((a, b) => compareValues(colDim, colValues.get(a)!, colValues.get(b)!));
  const rowKeys = [...rowInfo.keys()];
  sortRows(rowKeys, rowInfo, rowDims, uniq);
  return { rowDims, colDim, rowInfo, colValues, rks, cks, rowKeys, colKeys };
}

/** The dataset block of a row: its dataset when datasets are rows (marks and baselines work per block). */
export function blockOf(rowDims: Dim[], dims: DimValues): string {
  return rowDims.includes('dataset') ? String(dims.dataset) : '';
}

type Params = Map<string, ParamCounts>;

/** Values per (row, column), which metrics each column shows per block, parameter counts, failures. */
export interface Accumulated {
  acc: Map<string, Map<string, Accum>>;
  /** block -> column -> metrics */
  colMetric: Map<string, Map<string, Set<string>>>;
  params: Params;
  plannedParams: Params;
  failures: string[];
  missingRuns: RunRow[];
  /** Runs counted whose record does not give the head's share (counted as recorded, head included if any). */
  headUnknown: number;
}

/** Adds a run's count, without its head's share unless `withHead`; returns false when that share is unknown. */
function pushParams(target: Params, rk: string, r: RunRow, withHead: boolean): boolean {
  let p = target.get(rk);
  if (!p) target.set(rk, (p = newCounts()));
  addCount(p, withHead ? r.trainable! : r.trainable! - (r.head ?? 0), r.total);
  return withHead || r.head !== null;
}

function getOr<K, V>(m: Map<K, V>, k: K, make: () => V): V {
  let v = m.get(k);
  if (v === undefined) m.set(k, (v = make()));
  return v;
}

export function accumulate(
  uniq: RunRow[],
  layout: Layout,
  metric: MetricChoice,
  notes: string[],
  convention: ParamsConvention = 'without-head',
): Accumulated {
  const out: Accumulated = {
    acc: new Map(),
    colMetric: new Map(),
    params: new Map(),
    plannedParams: new Map(),
    failures: [],
    missingRuns: [],
    headUnknown: 0,
  };
  const seedSeen = new Map<string, Set<number>>();
  let duplicateSeeds = 0;
  uniq.forEach((r, i) => {
    const rk = layout.rks[i]!;
    const ck = layout.cks[i]!;
    const row = getOr(out.acc, rk, () => new Map<string, Accum>());
    const a = getOr(row, ck, () => ({ values: [], seeds: [], failed: 0, missing: 0, runIds: new Set<string>() }));
    a.runIds.add(r.run_id);
    // Counts recorded by finished or failed runs; the planner's counts of missing runs only as a fallback.
    if (r.trainable !== null) {
      const target = r.status === 'missing' ? out.plannedParams : out.params;
      if (!pushParams(target, rk, r, convention === 'with-head')) out.headUnknown++;
    }
    if (r.status === 'succeeded') {
      const m = metric.metricOf(r)!;
      const block = blockOf(layout.rowDims, layout.rowInfo.get(rk)!.dims);
      getOr(
        getOr(out.colMetric, block, () => new Map()),
        ck,
        () => new Set<string>(),
      ).add(m);
      a.values.push(metric.metricsOf(r)[m]! * metric.scales[m]!);
      a.seeds.push(r.labels.seed);
      const ss = getOr(seedSeen, `${rk}|${ck}`, () => new Set<number>());
      if (ss.has(r.labels.seed)) duplicateSeeds++;
      ss.add(r.labels.seed);
    } else if (r.status === 'failed') {
      a.failed++;
      out.failures.push(`${describeRun(r)}: ${r.error ?? 'failed'}`);
    } else {
      a.missing++;
      out.missingRuns.push(r);
    }
  });
  if (duplicateSeeds > 0) {
    notes.push(
      `${duplicateSeeds} cell value(s) average runs that share a seed: their specs differ in something the labels do not show.`,
    );
  }
  return out;
}
