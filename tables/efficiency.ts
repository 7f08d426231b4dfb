/**
 * Efficiency columns (`rankflow table --efficiency`), like PEFT's method comparison: per row the mean over its
 * finished runs of the peak training memory, the time per optimizer step and the wall time, from the result
 * records' `efficiency` (recorded by the runtime) and `timings`. The notes say what the memory figure is (the
 * CUDA allocator's peak, or the process's peak RSS on CPU) and which devices the runs ran on, and warn when
 * rows compare runs from different devices. Pure, like the table it extends; appended as `stat` columns (never
 * marked, never averaged into group columns).
 */
import { mean, roundTo, sampleStd, type Dim, type TableCell, type TableModel, type TableRow } from './model.js';
import type { RunRow } from './runs.js';

interface Figure {
  key: string;
  label: string;
  value(r: RunRow): number | null;
}

const FIGURES: Figure[] = [
  { key: 'eff:peak_mem', label: 'Peak mem (MiB)', value: (r) => r.efficiency?.peak_mem_mb ?? null },
  {
    key: 'eff:step_ms',
    label: 'Time/step (ms)',
    value: (r) => (r.efficiency && r.efficiency.steps > 0 ? r.efficiency.step_s * 1000 : null),
  },
  { key: 'eff:wall_s', label: 'Wall (s)', value: (r) => (r.efficiency ? r.wall_s : null) },
];

function cell(values: number[], digits: number): TableCell {
  const m = mean(values);
  const s = sampleStd(values);
  return {
    mean: m === null ? null : roundTo(m, digits),
    std: s === null ? null : roundTo(s, digits),
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

function count(xs: string[]): string {
  const n = new Map<string, number>();
  for (const x of xs) n.set(x, (n.get(x) ?? 0) + 1);
  return [...n].map(([k, v]) => `${k} (${v} run${v === 1 ? '' : 's'})`).join(', ');
}

function notesOf(finished: RunRow[], rowsOfRuns: RunRow[][]): string[] {
  const withEff = finished.filter((r) => r.efficiency !== null);
  const out = [
    "Efficiency: peak training memory, time per optimizer step (data included, evaluation and checkpoints excluded) and wall time of the run, mean over the row's runs.",
  ];
  const kinds = new Set(withEff.map((r) => r.efficiency!.mem_kind));
  if (kinds.has('cpu_max_rss'))
    out.push(
      `Memory on CPU is the process's peak resident set (model loading included)${kinds.size > 1 ? '; on GPU the CUDA allocator peak: the two are not comparable' : ''}.`,
    );
  else if (kinds.size > 0) out.push('Memory is the CUDA allocator peak (torch.cuda.max_memory_allocated).');
  const devices = withEff.map((r) => r.efficiency!.device);
  if (new Set(devices).size === 1) out.push(`Device: ${devices[0]}.`);
  else if (devices.length > 0) {
    const mixed = rowsOfRuns.some((rs) => new Set(rs.map((r) => r.efficiency?.device ?? '')).size > 1);
    out.push(
      `Devices differ: ${count(devices)}; times and memory are not comparable across devices${mixed ? ' (some rows average runs from several)' : ''}.`,
    );
  }
  const lacking = finished.length - withEff.length;
  if (lacking > 0)
    out.push(`${lacking} finished run(s) recorded no efficiency figures (recorded before they existed).`);
  return out;
}

/** The table with the efficiency columns (see the module docstring). */
export function addEfficiencyColumns(model: TableModel, runs: RunRow[]): TableModel {
  const finished = runs.filter((r) => r.status === 'succeeded');
  const byRow = new Map<string, RunRow[]>();
  const keyOf = (vals: (string | number | null)[]): string => JSON.stringify(vals);
  const dimOf = (r: RunRow, d: Dim): string | number | null => (d === 'rank' ? r.labels.rank : r.labels[d]);
  for (const r of finished) {
    const k = keyOf(model.row_dims.map((d) => dimOf(r, d)));
    const list = byRow.get(k);
    if (list) list.push(r);
    else byRow.set(k, [r]);
  }
  const rowRuns = (row: TableRow): RunRow[] =>
    row.kind === 'result' ? (byRow.get(keyOf(model.row_dims.map((d) => row.dims[d] ?? null))) ?? []) : [];
  const rows = model.rows.map((row) => {
    const rs = rowRuns(row);
    const cells = FIGURES.map((f) =>
      cell(
        rs.map((r) => f.value(r)).filter((v): v is number => v !== null),
        model.digits,
      ),
    );
    return { ...row, cells: [...row.cells, ...cells] };
  });
  const columns = FIGURES.map((f) => ({
    key: f.key,
    label: f.label,
    kind: 'stat' as const,
    metric: f.key,
    direction: 'min' as const,
    members: [],
  }));
  return {
    ...model,
    columns: [...model.columns, ...columns],
    rows,
    notes: [...model.notes, ...notesOf(finished, model.rows.map(rowRuns))],
  };
}
