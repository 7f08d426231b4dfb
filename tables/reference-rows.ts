/**
 * Reference rows: published numbers beside the reproduced ones, and the difference row to the reproduced row
 * of the same method (and setting). A published benchmark average is shown only over the same task set.
 */
import { prettyMethod, VTAB_GROUPS } from './names.js';
import type { ReferenceRow } from './reference.js';
import { emptyCell, type TableColumn, type TableRow } from './model.js';

export function referenceRows(
  refs: ReferenceRow[],
  results: TableRow[],
  columns: TableColumn[],
  notes: string[],
): TableRow[] {
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
