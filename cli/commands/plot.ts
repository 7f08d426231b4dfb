/**
 * `rankflow plot <sweep|recipe>...`: training-loss curves, score vs trainable parameters, score vs rank, the
 * rank-allocation heatmap, as SVG and PNG.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { UserError } from '../../core/errors.js';
import { openResultStore, readSelection } from '../results-reader.js';
import { buildTable } from '../../tables/table.js';
import type { RunRow } from '../../tables/runs.js';
import type { TopLevelSpec } from 'vega-lite';
import {
  allocationSpec,
  lossCurveSpec,
  evalCurveSpec,
  paramsSpec,
  PLOT_KINDS,
  rankSpec,
  roundsSpec,
  specToSvg,
  svgToPng,
  type PlotKind,
} from '../../tables/plots.js';
import { TableInputError } from '../../core/errors.js';
import { defineCommand, type OptionDefs, type Parsed } from '../args.js';
import { filtersFrom, SELECTION_OPTIONS, userErrors } from '../selection.js';

const PLOT_OPTIONS = {
  ...SELECTION_OPTIONS,
  kind: {
    type: 'string',
    arg: 'loss,curves,params,rank,allocation,rounds',
    help: '(default: all; curves: the evaluation metric per eval step; rounds: federated runs; a kind the data cannot support is skipped with a note)',
  },
  format: { type: 'string', short: 'f', arg: 'svg|png|both', help: '(default both)' },
  out: { type: 'string', short: 'o', arg: 'DIR', help: '(default results)' },
  name: { type: 'string', arg: 'NAME', help: 'file name prefix (default: the first sweep or recipe named)' },
} as const satisfies OptionDefs;

export interface PlotRequest {
  dir: string;
  name: string;
  kinds: PlotKind[];
  formats: ('svg' | 'png')[];
  metric: string | null;
  which: 'final' | 'best';
  /** Fail on a kind the data cannot support (true when the user asked for that kind explicitly). */
  strict: boolean;
}

/** The Vega-Lite spec of one kind of plot (a TableInputError when the runs cannot support it); `rankflow ui` too. */
export function plotSpec(kind: PlotKind, runs: RunRow[], metric: string | null, which: 'final' | 'best'): TopLevelSpec {
  if (kind === 'loss') return lossCurveSpec(runs);
  if (kind === 'curves') return evalCurveSpec(runs, metric);
  if (kind === 'params') return paramsSpec(buildTable(runs, { metric, which }));
  if (kind === 'rank') return rankSpec(runs, metric);
  if (kind === 'rounds') return roundsSpec(runs, metric);
  return allocationSpec(runs);
}

/** Renders and writes the requested plots; returns the paths written and the kinds skipped (with why). */
export async function writePlots(runs: RunRow[], req: PlotRequest): Promise<{ written: string[]; skipped: string[] }> {
  await mkdir(req.dir, { recursive: true });
  const written: string[] = [];
  const skipped: string[] = [];
  for (const kind of req.kinds) {
    let spec;
    try {
      spec = plotSpec(kind, runs, req.metric, req.which);
    } catch (e) {
      if (e instanceof TableInputError && !req.strict) {
        skipped.push(`${kind}: ${e.message}`);
        continue;
      }
      throw e;
    }
    const svg = await specToSvg(spec);
    const base = join(req.dir, `${req.name}-${kind}`);
    if (req.formats.includes('svg')) {
      await writeFile(`${base}.svg`, svg);
      written.push(`${base}.svg`);
    }
    if (req.formats.includes('png')) {
      await writeFile(`${base}.png`, await svgToPng(svg));
      written.push(`${base}.png`);
    }
  }
  return { written, skipped };
}

async function plot({ values: v, positionals }: Parsed<typeof PLOT_OPTIONS>): Promise<number> {
  const kinds = (v.kind ? v.kind.split(',').map((k) => k.trim()) : [...PLOT_KINDS]) as PlotKind[];
  for (const k of kinds) {
    if (!(PLOT_KINDS as readonly string[]).includes(k))
      throw new UserError(`--kind ${k}: use ${PLOT_KINDS.join(', ')}`);
  }
  const f = v.format ?? 'both';
  if (!['svg', 'png', 'both'].includes(f)) throw new UserError(`--format ${f}: use svg, png or both`);
  const formats: ('svg' | 'png')[] = f === 'both' ? ['svg', 'png'] : [f as 'svg' | 'png'];
  const filters = filtersFrom(v);
  const name = (v.name ?? positionals[0] ?? 'results').replace(/^.*\//, '').replace(/\.ya?ml$/, '');
  if (!/^[A-Za-z0-9._-]+$/.test(name))
    throw new UserError(`--name ${name}: use letters, digits, '.', '_' and '-' only`);
  const { written, skipped } = await userErrors(async () => {
    const store = await openResultStore(v.store);
    const sel = await readSelection(store, positionals, filters);
    for (const n of sel.notes) process.stderr.write(`rankflow: note: ${n}\n`);
    return writePlots(sel.runs, {
      dir: resolve(v.out ?? 'results'),
      name,
      kinds,
      formats,
      metric: v.metric ?? null,
      which: v.best ? 'best' : 'final',
      strict: v.kind !== undefined,
    });
  });
  for (const s of skipped) process.stderr.write(`rankflow: skipped ${s}\n`);
  for (const w of written) process.stderr.write(`rankflow: wrote ${w}\n`);
  return 0;
}

export const plotCommand = defineCommand({
  name: 'plot',
  summary: 'plots (SVG, PNG) of sweep results: loss curves, score vs parameters, score vs rank, rank allocation',
  args: '<sweep|recipe>...',
  description: `Figures of one or more sweeps' results, written as <out>/<name>-<kind>.svg and .png:
  loss    training-loss curves per run group (mean over seeds), one panel per dataset
  params  score vs trainable parameters per method (log x): the PEFT efficiency plot
  rank    score vs rank per method (mean ± std over seeds), one panel per dataset (needs two ranks or more)
  allocation  final rank per layer × module type (heatmap, mean over seeds) of methods that move rank
          during training (adalora, increlora, triadaptlora, diffora, snella), one panel per run group`,
  options: PLOT_OPTIONS,
  run: plot,
});
