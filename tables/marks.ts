/**
 * Rows of cells (data cells from the accumulated values, average cells from their members), then the marks
 * (best and second best per column, direction-aware, on printed values, within a dataset block when datasets
 * are rows) and the deltas to a baseline row.
 */
import { TableInputError } from '../core/errors.js';
import { metricDirection, prettyMethod } from './names.js';
import { blockOf, type Accumulated, type Layout } from './aggregate.js';
import { rowParams } from './params.js';
import {
  cellFrom,
  emptyCell,
  listText,
  mean,
  roundTo,
  rowLabel,
  type Dim,
  type TableCell,
  type TableColumn,
  type TableRow,
} from './model.js';

function groupValue(c: TableColumn, cells: Map<string, TableCell>): TableCell {
  const members = c.members.map((k) => cells.get(k)!);
  if (!members.some((m) => m.status !== 'empty')) return emptyCell();
  if (members.some((m) => m.mean === null)) return emptyCell('incomplete');
  const cell = emptyCell('ok');
  cell.mean = mean(members.map((m) => m.mean!));
  cell.partial_members = members.some((m) => m.status === 'partial' || m.partial_members);
  cell.n = Math.min(...members.map((m) => m.n));
  cell.planned = Math.max(...members.map((m) => m.planned));
  return cell;
}

/** One result row per row key, with a cell per column (data and average columns). */
export function cellRows(layout: Layout, agg: Accumulated, columns: TableColumn[], all: TableColumn[]): TableRow[] {
  return layout.rowKeys.map((rk) => {
    const info = layout.rowInfo.get(rk)!;
    const byCol = agg.acc.get(rk)!;
    const cells = new Map<string, TableCell>();
    for (const c of columns) {
      const a = byCol.get(c.key);
      cells.set(c.key, a ? cellFrom(a) : emptyCell());
    }
    const out = all.map((c) => {
      if (c.kind === 'data') return cells.get(c.key)!;
      const cell = groupValue(c, cells);
      cells.set(c.key, cell);
      return cell;
    });
    const p = agg.params.get(rk) ?? agg.plannedParams.get(rk);
    return {
      key: rk,
      label: rowLabel(layout.rowDims, info.dims),
      kind: 'result',
      dims: info.dims,
      cells: out,
      params: p ? rowParams(p) : null,
      source: null,
      is_baseline: false,
    };
  });
}

/** Rows by dataset block. */
export function rowBlocks(rows: TableRow[], rowDims: Dim[]): Map<string, TableRow[]> {
  const blocks = new Map<string, TableRow[]>();
  for (const r of rows) {
    const b = blockOf(rowDims, r.dims);
    let l = blocks.get(b);
    if (!l) blocks.set(b, (l = []));
    l.push(r);
  }
  return blocks;
}

function markColumn(rows: TableRow[], ci: number, direction: 'max' | 'min', digits: number): void {
  const vals = rows
    .map((r) => r.cells[ci]!)
    .filter((cell) => cell.mean !== null)
    .map((cell) => roundTo(cell.mean!, digits));
  if (vals.length < 2) return; // a lone value is not "best" of anything
  const distinct = [...new Set(vals)].sort((a, b) => (direction === 'max' ? b - a : a - b));
  const [best, second] = distinct;
  for (const r of rows) {
    const cell = r.cells[ci]!;
    if (cell.mean === null) continue;
    const v = roundTo(cell.mean, digits);
    if (v === best) cell.mark = 'best';
    else if (second !== undefined && v === second) cell.mark = 'second';
  }
}

/** Best and second best per column and block (ties share the mark). */
export function markBest(
  all: TableColumn[],
  blocks: Map<string, TableRow[]>,
  colMetric: Accumulated['colMetric'],
  rowDims: Dim[],
  digits: number,
): void {
  all.forEach((c, ci) => {
    for (const [, brows] of blocks) {
      let direction = c.direction;
      if (c.kind === 'data') {
        const ms = colMetric.get(blockOf(rowDims, brows[0]!.dims))?.get(c.key);
        if (ms && ms.size === 1) direction = metricDirection([...ms][0]!);
      }
      markColumn(brows, ci, direction, digits);
    }
  });
}

/** The baseline row of each block (one row per block, by label or method); an ambiguous name is an error. */
function baselineRows(
  rows: TableRow[],
  baseline: string,
  rowDims: Dim[],
): { chosen: TableRow[]; perBlock: Map<string, TableRow> } {
  const want = baseline.toLowerCase();
  const matches = rows.filter(
    (r) =>
      r.label.toLowerCase() === want ||
      String(r.dims.method ?? '').toLowerCase() === want ||
      prettyMethod(String(r.dims.method ?? '')).toLowerCase() === want,
  );
  if (matches.length === 0) {
    throw new TableInputError(
      `--baseline \`${baseline}\` matches no row; rows are: ${listText(rows.map((r) => r.label))}`,
    );
  }
  const exact = matches.filter((r) => r.label.toLowerCase() === want);
  const chosen = exact.length > 0 ? exact : matches;
  const byBlock = rowBlocks(chosen, rowDims);
  const perBlock = new Map<string, TableRow>();
  for (const [b, l] of byBlock) {
    if (l.length > 1) {
      throw new TableInputError(
        `--baseline \`${baseline}\` is ambiguous: it matches ${l.map((r) => `"${r.label}"`).join(', ')}; pass one of these labels`,
      );
    }
    perBlock.set(b, l[0]!);
  }
  return { chosen, perBlock };
}

/** Deltas of every row to its block's baseline row; returns the baseline's label. */
export function applyBaseline(
  rows: TableRow[],
  blocks: Map<string, TableRow[]>,
  baseline: string,
  rowDims: Dim[],
): string {
  const { chosen, perBlock } = baselineRows(rows, baseline, rowDims);
  for (const [b, brows] of blocks) {
    const base = perBlock.get(b);
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
  return chosen[0]!.label;
}
