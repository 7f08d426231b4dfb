/**
 * Aggregation of runs into a paper table: rows × columns of cells, each the mean and sample standard
 * deviation over seeds of one (model, method, rank, setting, dataset) group, with the seed count, the runs
 * that failed or are missing, trainable parameters, benchmark-group averages (GLUE average; VTAB-1k
 * Natural / Specialized / Structured and their mean), an overall average, direction-aware best / second-best
 * marks, deltas against a baseline row, and reference rows of published numbers. Pure: no I/O.
 *
 * `buildTable` runs the phases in order: check the request → aggregate cells (aggregate.ts) → columns with
 * group / average columns (columns.ts) → rows, marks and deltas (marks.ts) → reference rows
 * (reference-rows.ts) → notes (notes.ts). The result is a `TableModel`; `render.ts` prints it.
 */
import { TableInputError } from '../core/errors.js';
import type { RunRow } from './runs.js';
import { accumulate, chooseMetrics, layoutOf, rowDimensions, uniqueRuns } from './aggregate.js';
import { columnMetrics, dataColumns, withGroupColumns } from './columns.js';
import { applyBaseline, cellRows, markBest, rowBlocks } from './marks.js';
import { addNotes } from './notes.js';
import { referenceRows } from './reference-rows.js';
import { percentDigits } from './params.js';
import { applySplits } from './select.js';
import { addEfficiencyColumns } from './efficiency.js';
import { markSignificance, DEFAULT_ALPHA } from './sig-marks.js';
import type { Accumulated } from './aggregate.js';
import {
  DIMS,
  SIGNIFICANCE_TESTS,
  type Dim,
  type SignificanceTest,
  type TableColumn,
  type TableModel,
  type TableOptions,
  type TableRow,
} from './model.js';

export * from './model.js';
export { TableInputError };

interface Request {
  colDim: Dim;
  askedRows: Dim[];
  digits: number;
  which: 'final' | 'best';
}

function checkRequest(runs: RunRow[], opts: TableOptions): Request {
  const colDim: Dim = opts.cols ?? 'dataset';
  const askedRows: Dim[] = opts.rows && opts.rows.length > 0 ? [...opts.rows] : ['method'];
  const digits = opts.digits ?? 1;
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
  return { colDim, askedRows, digits, which: opts.which ?? 'final' };
}

/** Builds the table. Throws `TableInputError` (one line, naming the fix) for bad requests. */
export function buildTable(runs: RunRow[], opts: TableOptions = {}): TableModel {
  const { colDim, askedRows, digits, which } = checkRequest(runs, opts);
  const showStd = opts.std ?? true;
  const notes: string[] = [];
  const choice = { selectOn: opts.selectOn, report: opts.report, selectPer: opts.selectPer };
  const uniq = applySplits(uniqueRuns(runs), choice, which, opts.metric ?? null, notes);
  const rowDims = rowDimensions(uniq, askedRows, colDim, notes);
  const metric = chooseMetrics(uniq, opts, which);
  const layout = layoutOf(uniq, rowDims, colDim);
  const convention = opts.paramsConvention ?? 'without-head';
  const agg = accumulate(uniq, layout, metric, notes, convention);
  const columns = dataColumns(layout, columnMetrics(agg.colMetric, colDim), agg.colMetric, opts.metric);
  const datasetColumns = colDim === 'dataset' && !rowDims.includes('dataset');
  const all = datasetColumns ? withGroupColumns(columns, opts.avg ?? true, notes) : [...columns];
  const rows = cellRows(layout, agg, columns, all);
  const blocks = rowBlocks(rows, rowDims);
  markBest(all, blocks, agg.colMetric, rowDims, digits);
  const baselineLabel = opts.baseline ? applyBaseline(rows, blocks, opts.baseline, rowDims) : null;
  const sig = opts.significance ? significance(rows, blocks, all, agg, opts.significance, opts.alpha) : null;
  if (opts.references && opts.references.length > 0) {
    if (!datasetColumns) notes.push('Reference rows are shown only with datasets as columns (--cols dataset).');
    else rows.push(...referenceRows(opts.references, rows, all, notes));
  }
  const model: TableModel = {
    schema: 'rankflow.table/v1',
    title: opts.title ?? null,
    row_dims: rowDims,
    col_dim: colDim,
    which,
    digits,
    show_std: showStd,
    show_params: opts.params ?? true,
    params_convention: convention,
    baseline: baselineLabel,
    scales: metric.scales,
    percent_digits: percentDigits(rows),
    columns: all,
    rows,
    notes: addNotes(notes, {
      rows,
      columns,
      all,
      scales: metric.scales,
      which,
      showStd,
      agg,
      baselineLabel,
      params: (opts.params ?? true) ? convention : null,
    }),
  };
  if (sig) {
    model.significance = sig.spec;
    model.notes.push(sig.note);
  }
  return opts.efficiency ? addEfficiencyColumns(model, uniq) : model;
}

function significance(
  rows: TableRow[],
  blocks: Map<string, TableRow[]>,
  all: TableColumn[],
  agg: Accumulated,
  test: SignificanceTest,
  alpha = DEFAULT_ALPHA,
): ReturnType<typeof markSignificance> {
  if (!(SIGNIFICANCE_TESTS as readonly string[]).includes(test))
    throw new TableInputError(`--significance ${test}: use ${SIGNIFICANCE_TESTS.join(' or ')}`);
  if (!(alpha > 0 && alpha < 1)) throw new TableInputError(`--alpha ${alpha}: expected a p threshold between 0 and 1`);
  return markSignificance(rows, blocks, all, agg, test, alpha);
}
