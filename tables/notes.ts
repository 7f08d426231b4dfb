/** The notes under a table: what the numbers are (seeds, metrics, scales, marks) and what is missing. */
import { metricDirection } from './names.js';
import type { Accumulated } from './aggregate.js';
import { describeRun, listText, type ParamsConvention, type TableColumn, type TableRow } from './model.js';

function statText(rows: TableRow[], all: TableColumn[], showStd: boolean): string {
  const complete = rows
    .filter((r) => r.kind === 'result')
    .flatMap((r) => r.cells.filter((c, i) => all[i]!.kind === 'data' && c.status === 'ok'));
  const ns = [...new Set(complete.map((c) => c.n))].sort((a, b) => a - b);
  if (ns.length === 0) return 'No cell has all its runs finished.';
  const std = ' ± sample standard deviation';
  if (ns.length === 1) return `Mean${showStd && ns[0]! > 1 ? std : ''} over ${ns[0]} seed${ns[0] === 1 ? '' : 's'}.`;
  return `Mean${showStd ? std : ''} over ${ns[0]}–${ns[ns.length - 1]} seeds (per-cell counts in the CSV and JSON).`;
}

export interface NoteInputs {
  rows: TableRow[];
  columns: TableColumn[];
  all: TableColumn[];
  scales: Record<string, number>;
  which: 'final' | 'best';
  showStd: boolean;
  agg: Accumulated;
  baselineLabel: string | null;
  /** The parameter convention when the table shows a Params column. */
  params: ParamsConvention | null;
}

/** What the Params column counts, and the runs whose head share is not recorded. */
function paramsNote(n: NoteInputs): string[] {
  if (n.params === null || !n.rows.some((r) => r.kind === 'result' && r.params?.trainable != null)) return [];
  const out = [
    n.params === 'without-head'
      ? 'Params: trainable parameters without the task head, as the LoRA paper and its successors report them (--params with-head counts it, as PEFT does).'
      : "Params: trainable parameters with the task head, as PEFT's benchmarks count them (the papers' convention leaves it out: --params without-head).",
  ];
  if (n.params === 'without-head' && n.agg.headUnknown > 0) {
    out.push(
      `${n.agg.headUnknown} run(s) do not record their head's share (no task head, or recorded before rankflow kept it): counted as recorded.`,
    );
  }
  return out;
}

/** Adds the notes (the seed line first, then the metrics line) to those the phases collected. */
export function addNotes(notes: string[], n: NoteInputs): string[] {
  notes.unshift(statText(n.rows, n.all, n.showStd));
  const metricText = n.columns
    .map((c) => c.metric)
    .filter((m, i, a) => a.indexOf(m) === i && m !== 'none')
    .map((m) => {
      const scale = (n.scales[m] ?? 1) !== 1 ? ` ×${n.scales[m]}` : '';
      return `${m}${scale} (${metricDirection(m) === 'max' ? 'higher' : 'lower'} is better)`;
    });
  if (metricText.length > 0) {
    notes.splice(
      1,
      0,
      `Metric${metricText.length > 1 ? 's' : ''}: ${metricText.join('; ')}${n.which === 'best' ? ', at the best checkpoint' : ''}. Bold: best per column; underlined: second best (ties share the mark).`,
    );
  }
  if (n.rows.some((r) => r.cells.some((c) => c.status === 'partial' || c.partial_members))) {
    notes.push(
      '(k/n): only k of the n planned runs of that cell finished; an average marked (*) includes such a cell.',
    );
  }
  if (n.rows.some((r) => r.cells.some((c) => c.status === 'incomplete'))) {
    notes.push('n/a: average not computed because one of its cells has no finished run.');
  }
  const { failures, missingRuns } = n.agg;
  if (failures.length > 0) notes.push(`${failures.length} failed run(s): ${listText(failures, 5)}.`);
  if (missingRuns.length > 0) {
    notes.push(
      `${missingRuns.length} planned run(s) have no result yet: ${listText(missingRuns.map(describeRun), 5)}.`,
    );
  }
  if (n.baselineLabel) notes.push(`(±x): difference to the baseline row ${n.baselineLabel}.`);
  notes.push(...paramsNote(n));
  return [...new Set(notes)];
}
