/**
 * The reproducibility footer of a table (issue 17): the rankflow version and git commit that made the table,
 * those of the workers that produced its runs with the runtime, torch and Python versions (from the result
 * records), and the sweep ids behind it. Every renderer prints it: a line in Markdown / HTML, comments in LaTeX
 * and CSV, the `provenance` field in JSON. Pure (the CLI passes its own version and commit).
 */
import type { RunRow } from './runs.js';
import type { Provenance, TableModel } from './model.js';

const FIELDS = ['rankflow', 'git', 'runtime', 'torch', 'python'] as const;

/** The table with its provenance: `tool` made it from `runs` (missing runs name their sweep, not versions). */
export function withProvenance(
  model: TableModel,
  runs: RunRow[],
  tool: { rankflow: string; git: string | null },
): TableModel {
  const values = (f: (typeof FIELDS)[number]): string[] =>
    [...new Set(runs.flatMap((r) => (r.versions && r.versions[f] ? [r.versions[f]!] : [])))].sort();
  const recorded = Object.fromEntries(FIELDS.map((f) => [f, values(f)])) as Provenance['runs'];
  const sweeps = [...new Set(runs.flatMap((r) => (r.sweep_id ? [r.sweep_id] : [])))].sort();
  return { ...model, provenance: { table: { rankflow: tool.rankflow, git: tool.git }, runs: recorded, sweeps } };
}

function list(xs: string[]): string {
  return xs.length === 0 ? 'unknown' : xs.join(', ');
}

/** The footer as lines of text (the renderers add their comment syntax). */
export function footerLines(p: Provenance): string[] {
  const t = `Made by rankflow ${p.table.rankflow}${p.table.git ? ` (git ${p.table.git})` : ''} from sweep${p.sweeps.length === 1 ? '' : 's'} ${list(p.sweeps)}.`;
  const r = p.runs;
  const runs =
    `Runs: rankflow ${list(r.rankflow)}${r.git.length ? ` (git ${list(r.git)})` : ''}, ` +
    `runtime ${list(r.runtime)}, torch ${list(r.torch)}, Python ${list(r.python)}.`;
  return [t, runs];
}
