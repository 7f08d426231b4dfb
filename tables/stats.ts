/**
 * Stage statistics beside the scores: `rankflow table --stats compression_ratio,speedup` appends one column per
 * statistic, each cell the mean (± std) over the row's finished runs of that number taken from the run's own
 * `stats` or from the runs it builds on (joined by the results reader: a fine-tuning row shows the compression
 * ratio or pruned size of the model it was trained on). Pure, like the table it extends.
 */
import { mean, roundTo, sampleStd, type Dim, type TableCell, type TableModel, type TableRow } from './model.js';
import type { RunRow } from './runs.js';
import { TableInputError } from '../core/errors.js';

function dimOf(r: RunRow, d: Dim): string | number | null {
  return d === 'rank' ? r.labels.rank : r.labels[d];
}

function statCell(values: number[], digits: number): TableCell {
  const m = mean(values);
  const s = sampleStd(values);
  return {
    mean: m === null ? null : roundTo(m, digits + 2),
    std: s === null ? null : roundTo(s, digits + 2),
    n: values.length,
    planned: values.length,
    failed: 0,
    missing: 0,
    seeds: [],
    status: values.length ? 'ok' : 'empty',
    partial_members: false,
    mark: null,
    delta: null,
  };
}

/** The table with one `stat` column per key (see the module docstring); unknown keys are an input error. */
export function addStatColumns(model: TableModel, runs: RunRow[], keys: string[]): TableModel {
  if (keys.length === 0) return model;
  const finished = runs.filter((r) => r.status === 'succeeded');
  const available = [...new Set(finished.flatMap((r) => Object.keys(r.stats)))].sort();
  for (const k of keys) {
    if (!available.includes(k))
      throw new TableInputError(
        `--stats ${k}: no run (or run it builds on) reports it; available: ${available.join(', ') || '(none)'}`,
      );
  }
  const rowRuns = (row: TableRow): RunRow[] =>
    finished.filter((r) => model.row_dims.every((d) => dimOf(r, d) === (row.dims[d] ?? null)));
  const rows = model.rows.map((row) => ({
    ...row,
    cells: [
      ...row.cells,
      ...keys.map((k) =>
        statCell(
          row.kind === 'result'
            ? rowRuns(row)
                .map((r) => r.stats[k])
                .filter((v): v is number => v !== undefined)
            : [],
          model.digits,
        ),
      ),
    ],
  }));
  return {
    ...model,
    columns: [
      ...model.columns,
      ...keys.map((k) => ({
        key: `stat:${k}`,
        label: k,
        kind: 'stat' as const,
        metric: k,
        direction: 'max' as const,
        members: [],
      })),
    ],
    rows,
    notes: [
      ...model.notes,
      `${keys.join(', ')}: the procedure's own numbers (mean over the row's runs), from the run or the stage it builds on.`,
    ],
  };
}
