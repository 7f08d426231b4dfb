/**
 * Hyperparameter selection on one split, scores reported on another: the protocol of most PEFT papers
 * (`rankflow table --select-on validation --report test`). Pure; the first phase of `buildTable`.
 *
 * - `--report SPLIT` alone: every run's metrics are its metrics on SPLIT (`evals` of its record).
 * - With `--select-on SPLIT2`: within each selection group (model, method, rank, stage, and the dataset with
 *   `--select-per dataset`) the candidate settings (`labels.setting`, e.g. `lr=1e-3`) are ranked by their mean
 *   score on SPLIT2 over seeds (per method: the mean over the group's datasets of those means; a candidate that
 *   lacks one of them is not eligible), direction-aware; only the chosen setting's runs stay, reporting SPLIT.
 *   Their setting label is cleared so the rows are the methods; the notes say what was chosen on what.
 * - Selecting on the reported split is refused, as is a run that did not evaluate a split asked for.
 */
import { TableInputError } from '../core/errors.js';
import { metricDirection } from './names.js';
import { splitMetrics, type RunRow } from './runs.js';
import { dimText, listText, mean } from './model.js';

export interface SplitChoice {
  /** The split hyperparameters are selected on (`validation`); null: no selection. */
  selectOn?: string | null;
  /** The split the table reports (`test`); null: each run's own `eval_split`. */
  report?: string | null;
  /** Selection groups: one setting per method (default) or per method and dataset. */
  selectPer?: 'method' | 'dataset';
}

interface Resolved {
  selectOn: string;
  report: string;
  selectPer: 'method' | 'dataset';
}

const HINT = 'plan the sweep with `eval_splits: [validation, test]` (recipe or dataset_settings)';

function checkChoice(c: SplitChoice): void {
  if (c.selectOn && !c.report)
    throw new TableInputError(`--select-on ${c.selectOn} needs --report SPLIT (the split the table shows, e.g. test)`);
  if (c.selectOn && c.selectOn === c.report)
    throw new TableInputError(
      `--select-on ${c.selectOn} --report ${c.report}: selecting hyperparameters on the reported split overstates its scores; select on validation`,
    );
}

function metricsOn(r: RunRow, split: string, which: 'final' | 'best'): Record<string, number> {
  const m = splitMetrics(r, split, which);
  if (m === null) {
    const has = [...new Set([...Object.keys(r.evals), ...(r.eval_split ? [r.eval_split] : [])])];
    throw new TableInputError(
      `run ${r.run_id} (${r.labels.method} on ${r.labels.dataset}) has no evaluation on \`${split}\` (it evaluated ${has.join(', ') || 'nothing'}); ${HINT}`,
    );
  }
  return m;
}

/** The run reporting `split`: its metrics (final and best) replaced by that split's. */
function reporting(r: RunRow, split: string): RunRow {
  if (r.status !== 'succeeded') return r;
  return { ...r, metrics: metricsOn(r, split, 'final'), best_metrics: metricsOn(r, split, 'best') };
}

function groupKey(r: RunRow, perDataset: boolean): string {
  const l = r.labels;
  return JSON.stringify([l.model, l.method, l.rank, l.stage ?? null, perDataset ? l.dataset : null]);
}

function groupLabel(r: RunRow, perDataset: boolean): string {
  const l = r.labels;
  const rank = l.rank === null ? '' : ` r=${l.rank}`;
  return `${dimText('method', l.method)}${rank}${perDataset ? ` on ${dimText('dataset', l.dataset)}` : ''}`;
}

interface Candidate {
  setting: string;
  /** dataset -> selection-split values over seeds */
  values: Map<string, number[]>;
}

/** A candidate's score: the mean over `datasets` of its per-dataset means; null when it lacks one of them. */
function score(c: Candidate, datasets: string[]): number | null {
  const means: number[] = [];
  for (const d of datasets) {
    const m = mean(c.values.get(d) ?? []);
    if (m === null) return null;
    means.push(m);
  }
  return mean(means);
}

interface Chosen {
  setting: string | null;
  metric: string | null;
}

function chooseSetting(runs: RunRow[], c: Resolved, which: 'final' | 'best', metric: string | null): Chosen {
  const cands = new Map<string, Candidate>();
  const datasets = new Set<string>();
  const metrics = new Set<string>();
  for (const r of runs) {
    const cand = cands.get(r.labels.setting) ?? { setting: r.labels.setting, values: new Map() };
    cands.set(r.labels.setting, cand);
    datasets.add(r.labels.dataset);
    if (r.status !== 'succeeded') continue;
    const m = metric ?? r.headline!;
    metrics.add(m);
    const v = metricsOn(r, c.selectOn, which)[m];
    if (v === undefined)
      throw new TableInputError(`run ${r.run_id} reports no \`${m}\` on ${c.selectOn}; pass --metric NAME`);
    const vals = cand.values.get(r.labels.dataset) ?? [];
    cand.values.set(r.labels.dataset, [...vals, v]);
  }
  const directions = new Set([...metrics].map((m) => metricDirection(m)));
  if (directions.size > 1)
    throw new TableInputError(
      `--select-on: the datasets of ${groupLabel(runs[0]!, false)} mix higher- and lower-is-better metrics (${[...metrics].join(', ')}); add --select-per dataset`,
    );
  const sign = directions.has('min') ? -1 : 1;
  let best: { setting: string; s: number } | null = null;
  for (const cand of cands.values()) {
    const s = score(cand, [...datasets]);
    if (s !== null && (best === null || sign * s > sign * best.s)) best = { setting: cand.setting, s };
  }
  return { setting: best?.setting ?? null, metric: metrics.size === 1 ? [...metrics][0]! : null };
}

/** `LoRA r=8: lr=1e-3 on SST-2, RTE; lr=1e-4 on MRPC` (per dataset), `LoRA r=8: lr=1e-3` (per method). */
function pickText(method: string, picks: Map<string, string[]>, perDataset: boolean): string {
  const parts = [...picks].map(
    ([setting, ds]) => `${setting || '(default)'}${perDataset ? ` on ${listText(ds, 6)}` : ''}`,
  );
  return `${method}: ${parts.join('; ')}`;
}

function selectionNote(c: Resolved, which: string, chosen: Map<string, Map<string, string[]>>, none: string[]) {
  const perDataset = c.selectPer === 'dataset';
  const per = perDataset ? 'per method and dataset' : 'per method (mean over its datasets)';
  const picks = [...chosen].map(([method, p]) => pickText(method, p, perDataset));
  const out = [
    `Hyperparameters selected on ${c.selectOn} (best mean ${which === 'best' ? 'best-checkpoint' : 'final'} score over seeds, ${per}); scores reported on ${c.report}. Selected: ${picks.join('; ')}.`,
  ];
  if (none.length > 0)
    out.push(
      `No setting could be selected for ${listText(none, 6)} (no finished run with every dataset on ${c.selectOn}).`,
    );
  return out;
}

/** The runs the table shows under the split choice (see the module docstring), and the notes it adds. */
export function applySplits(
  runs: RunRow[],
  choice: SplitChoice,
  which: 'final' | 'best',
  metric: string | null,
  notes: string[],
): RunRow[] {
  checkChoice(choice);
  if (!choice.report) return runs;
  if (!choice.selectOn) {
    notes.push(`Scores on ${choice.report}.`);
    return runs.map((r) => reporting(r, choice.report!));
  }
  const c: Resolved = { selectOn: choice.selectOn, report: choice.report, selectPer: choice.selectPer ?? 'method' };
  const perDataset = c.selectPer === 'dataset';
  const groups = new Map<string, RunRow[]>();
  for (const r of runs) {
    const k = groupKey(r, perDataset);
    const g = groups.get(k);
    if (g) g.push(r);
    else groups.set(k, [r]);
  }
  const out: RunRow[] = [];
  const chosen = new Map<string, Map<string, string[]>>(); // method label -> setting -> datasets
  const none: string[] = [];
  for (const g of groups.values()) {
    const pick = chooseSetting(g, c, which, metric);
    const first = g[0]!;
    if (pick.setting === null) none.push(groupLabel(first, perDataset));
    else {
      const byMethod = chosen.get(groupLabel(first, false)) ?? new Map<string, string[]>();
      chosen.set(groupLabel(first, false), byMethod);
      byMethod.set(pick.setting, [...(byMethod.get(pick.setting) ?? []), dimText('dataset', first.labels.dataset)]);
    }
    const keep = pick.setting === null ? g : g.filter((r) => r.labels.setting === pick.setting);
    for (const r of keep) {
      const rep = reporting(r, c.report);
      out.push(pick.setting === null ? rep : { ...rep, labels: { ...r.labels, setting: '' } });
    }
  }
  notes.push(...selectionNote(c, which, chosen, none));
  return out;
}
