/**
 * The standard PEFT figures, as Vega-Lite specifications rendered headless to SVG (vega's `toSVG`) and to
 * PNG (resvg): training-loss curves per run group (mean over seeds), score against trainable parameters
 * (log x; the efficiency plot), score against rank, the final rank allocation (layer × module type heatmap) of
 * methods that move rank during training, and per-round curves of federated runs (the global metric and the
 * aggregation error after every round). No I/O: callers write the strings and buffers.
 */
import type { TopLevelSpec } from 'vega-lite';
import type { RunRow } from './runs.js';
import { buildTable, rowLabel, DIMS, type Dim, type TableModel } from './table.js';
import { datasetOrder, prettyDataset, prettyMethod } from './names.js';
import { TableInputError } from '../core/errors.js';

export const PLOT_KINDS = ['loss', 'params', 'rank', 'allocation', 'rounds'] as const;
export type PlotKind = (typeof PLOT_KINDS)[number];

/** Text renders with a font every rankflow machine has (Debian's fonts-dejavu); resvg falls back to it. */
export const PLOT_FONT = 'DejaVu Sans';

const CONFIG = {
  font: PLOT_FONT,
  view: { stroke: '#ccc' },
  axis: { labelFontSize: 11, titleFontSize: 12, gridColor: '#eee' },
  legend: { labelFontSize: 11, titleFontSize: 12, labelLimit: 320 },
  header: { labelFontSize: 12, titleFontSize: 12 },
  title: { fontSize: 14 },
};

/** Facet order: GLUE in paper order, then VTAB-1k by group, then the rest (pretty names). */
function datasetSort(runs: RunRow[]): string[] {
  return [...new Set(runs.map((r) => r.labels.dataset))].sort(datasetOrder).map(prettyDataset);
}

/** Series in order of first appearance (the recipe's order), for the legend. */
function seriesSort(values: { series: string }[]): string[] {
  return [...new Set(values.map((v) => v.series))];
}

/** Identity dimensions other than `dataset` that vary among the runs (they name a curve or series). */
function seriesDims(runs: RunRow[], exclude: Dim[]): Dim[] {
  const dims: Dim[] = ['method'];
  for (const d of DIMS) {
    if (d === 'method' || d === 'dataset' || exclude.includes(d)) continue;
    const vals = new Set(runs.map((r) => JSON.stringify(d === 'rank' ? r.labels.rank : r.labels[d])));
    if (vals.size > 1) dims.push(d);
  }
  return dims;
}

function seriesLabel(r: RunRow, dims: Dim[]): string {
  const v: Partial<Record<Dim, string | number | null>> = {};
  for (const d of dims) v[d] = d === 'rank' ? r.labels.rank : r.labels[d];
  return rowLabel(dims, v);
}

/** Mean training loss per step over the seeds of each (series, dataset) group. */
export function lossCurveData(
  runs: RunRow[],
): { series: string; dataset: string; step: number; loss: number; seeds: number }[] {
  const ok = runs.filter((r) => r.status === 'succeeded' && r.curve.length > 0);
  if (ok.length === 0) throw new TableInputError('no finished run with a loss curve in the selection; nothing to plot');
  const dims = seriesDims(ok, []);
  const groups = new Map<string, { series: string; dataset: string; steps: Map<number, number[]> }>();
  for (const r of ok) {
    const series = seriesLabel(r, dims);
    const k = JSON.stringify([series, r.labels.dataset]);
    let g = groups.get(k);
    if (!g) groups.set(k, (g = { series, dataset: prettyDataset(r.labels.dataset), steps: new Map() }));
    for (const p of r.curve) {
      let l = g.steps.get(p.step);
      if (!l) g.steps.set(p.step, (l = []));
      l.push(p.loss);
    }
  }
  const out: { series: string; dataset: string; step: number; loss: number; seeds: number }[] = [];
  for (const g of groups.values()) {
    for (const [step, ls] of [...g.steps.entries()].sort((a, b) => a[0] - b[0])) {
      out.push({
        series: g.series,
        dataset: g.dataset,
        step,
        loss: ls.reduce((s, x) => s + x, 0) / ls.length,
        seeds: ls.length,
      });
    }
  }
  return out;
}

export function lossCurveSpec(runs: RunRow[], title = 'Training loss (mean over seeds)'): TopLevelSpec {
  const values = lossCurveData(runs);
  const order = seriesSort(values);
  const datasets = new Set(values.map((v) => v.dataset));
  const layer = {
    mark: { type: 'line' as const, strokeWidth: 1.5 },
    encoding: {
      x: { field: 'step', type: 'quantitative' as const, title: 'optimizer step' },
      y: { field: 'loss', type: 'quantitative' as const, title: 'training loss', scale: { zero: false } },
      color: { field: 'series', type: 'nominal' as const, title: null, sort: order },
      tooltip: [
        { field: 'series', type: 'nominal' as const },
        { field: 'step', type: 'quantitative' as const },
        { field: 'loss', type: 'quantitative' as const, format: '.4f' },
        { field: 'seeds', type: 'quantitative' as const },
      ],
    },
  };
  if (datasets.size === 1) {
    return {
      $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
      title: `${title}: ${[...datasets][0]}`,
      config: CONFIG,
      data: { values },
      width: 420,
      height: 280,
      ...layer,
    };
  }
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title,
    config: CONFIG,
    data: { values },
    facet: { field: 'dataset', type: 'nominal', title: null, sort: datasetSort(runs) },
    columns: Math.min(3, datasets.size),
    resolve: { scale: { y: 'independent' } },
    spec: { width: 260, height: 180, ...layer },
  };
}

/**
 * Federated runs: the global model's metric and the server's aggregation error ‖B̄′Ā − ΔW*‖/‖ΔW*‖ after every
 * round, mean over the seeds of each (series, dataset) group. `metric`: the run's headline metric by default.
 */
export function roundsData(
  runs: RunRow[],
  metric: string | null = null,
): { series: string; dataset: string; panel: string; round: number; value: number; seeds: number }[] {
  const ok = runs.filter((r) => r.status === 'succeeded' && r.rounds.length > 0);
  if (ok.length === 0) throw new TableInputError('no finished federated run (with per-round records) in the selection');
  const dims = seriesDims(ok, []);
  const groups = new Map<string, { series: string; dataset: string; panel: string; rounds: Map<number, number[]> }>();
  const add = (series: string, dataset: string, panel: string, round: number, value: number | undefined): void => {
    if (value === undefined) return;
    const k = JSON.stringify([series, dataset, panel]);
    let g = groups.get(k);
    if (!g) groups.set(k, (g = { series, dataset, panel, rounds: new Map() }));
    let l = g.rounds.get(round);
    if (!l) g.rounds.set(round, (l = []));
    l.push(value);
  };
  for (const r of ok) {
    const series = seriesLabel(r, dims);
    const m = metric ?? r.headline ?? Object.keys(r.rounds[0]!.metrics)[0] ?? 'loss';
    for (const p of r.rounds) {
      add(series, prettyDataset(r.labels.dataset), `global ${m}`, p.round, p.metrics[m]);
      add(series, prettyDataset(r.labels.dataset), 'aggregation error', p.round, p.aggregation.aggregation_error);
    }
  }
  const out: { series: string; dataset: string; panel: string; round: number; value: number; seeds: number }[] = [];
  for (const g of groups.values()) {
    for (const [round, vs] of [...g.rounds.entries()].sort((a, b) => a[0] - b[0])) {
      out.push({
        series: g.series,
        dataset: g.dataset,
        panel: g.panel,
        round,
        value: vs.reduce((s, x) => s + x, 0) / vs.length,
        seeds: vs.length,
      });
    }
  }
  return out;
}

export function roundsSpec(runs: RunRow[], metric: string | null = null): TopLevelSpec {
  const values = roundsData(runs, metric);
  const order = seriesSort(values);
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: 'Federated rounds (mean over seeds)',
    config: CONFIG,
    data: { values },
    facet: {
      row: { field: 'panel', type: 'nominal', title: null, sort: { field: 'panel', order: 'descending' } },
      column: { field: 'dataset', type: 'nominal', title: null, sort: datasetSort(runs) },
    },
    resolve: { scale: { y: 'independent' } },
    spec: {
      width: 300,
      height: 180,
      mark: { type: 'line', point: true, strokeWidth: 1.5 },
      encoding: {
        x: { field: 'round', type: 'quantitative', title: 'round', axis: { tickMinStep: 1 } },
        y: { field: 'value', type: 'quantitative', title: null, scale: { zero: false } },
        color: { field: 'series', type: 'nominal', title: null, sort: order },
        tooltip: [
          { field: 'series', type: 'nominal' },
          { field: 'round', type: 'quantitative' },
          { field: 'value', type: 'quantitative', format: '.5f' },
          { field: 'seeds', type: 'quantitative' },
        ],
      },
    },
  };
}

/** The score a row stands for in the efficiency plot: its average column, or its only data column. */
function rowScoreColumn(model: TableModel): number {
  const pick = (k: string) => model.columns.findIndex((c) => c.key === k);
  for (const k of ['avg', 'vtab', 'glue']) {
    const i = pick(k);
    if (i >= 0) return i;
  }
  const data = model.columns.map((c, i) => [c, i] as const).filter(([c]) => c.kind === 'data');
  if (data.length === 1) return data[0]![1];
  throw new TableInputError(
    'the parameter plot needs one score per row: the columns have no average (mixed metric directions); narrow with --dataset or --metric',
  );
}

export function paramsData(
  model: TableModel,
): { label: string; method: string; params: number; score: number; pct: number | null }[] {
  const ci = rowScoreColumn(model);
  const out = model.rows
    .filter((r) => r.kind === 'result' && r.params?.trainable && r.cells[ci]!.mean !== null)
    .map((r) => ({
      label: r.label,
      method: prettyMethod(String(r.dims.method ?? '')),
      params: r.params!.trainable!,
      score: r.cells[ci]!.mean!,
      pct: r.params!.total ? (100 * r.params!.trainable!) / r.params!.total : null,
    }));
  if (out.length === 0)
    throw new TableInputError('no row has both a score and a trainable-parameter count; nothing to plot');
  return out;
}

export function paramsSpec(model: TableModel, title?: string): TopLevelSpec {
  const values = paramsData(model);
  const col = model.columns[rowScoreColumn(model)]!;
  const scaled = Object.values(model.scales).some((x) => x !== 1);
  const yTitle =
    col.metric === 'mixed'
      ? `${col.label}${scaled ? ' (×100)' : ''}`
      : `${col.label} (${col.metric}${(model.scales[col.metric] ?? 1) !== 1 ? ` ×${model.scales[col.metric]}` : ''})`;
  const enc = {
    x: {
      field: 'params',
      type: 'quantitative' as const,
      scale: { type: 'log' as const },
      title: 'trainable parameters (log scale)',
      axis: { format: '~s' },
    },
    y: { field: 'score', type: 'quantitative' as const, scale: { zero: false, padding: 12 }, title: yTitle },
  };
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: title ?? `Score vs trainable parameters (${col.direction === 'max' ? 'higher' : 'lower'} is better)`,
    config: CONFIG,
    data: { values },
    width: 460,
    height: 300,
    layer: [
      {
        mark: { type: 'point', filled: true, size: 70 },
        encoding: {
          ...enc,
          color: { field: 'method', type: 'nominal', title: null, sort: [...new Set(values.map((v) => v.method))] },
          tooltip: [
            { field: 'label', type: 'nominal' },
            { field: 'params', type: 'quantitative', format: ',' },
            { field: 'score', type: 'quantitative', format: '.2f' },
          ],
        },
      },
      {
        mark: { type: 'text', align: 'left', dx: 7, dy: -6, fontSize: 10 },
        encoding: { ...enc, text: { field: 'label', type: 'nominal' } },
      },
    ],
  };
}

/** Mean ± std per (series, dataset, rank) over seeds, for runs that have a rank. */
export function rankData(
  runs: RunRow[],
  metric: string | null = null,
): { series: string; dataset: string; rank: number; mean: number; lo: number; hi: number; n: number }[] {
  // A setting that only restates the rank (`r=8`) would split a method's line into points: drop that part.
  const stripped = runs
    .filter((r) => r.labels.rank !== null)
    .map((r) => ({
      ...r,
      labels: { ...r.labels, setting: r.labels.setting.replace(/\b(r|rank)=\d+\b[,;]?\s*/g, '').trim() },
    }));
  if (stripped.length === 0)
    throw new TableInputError('no run in the selection has a rank; the rank plot needs methods with a rank');
  const model = buildTable(stripped, {
    rows: ['method', 'dataset'],
    cols: 'rank',
    metric,
    std: true,
    params: false,
    avg: false,
  });
  const out: { series: string; dataset: string; rank: number; mean: number; lo: number; hi: number; n: number }[] = [];
  const seriesDimsOf = model.row_dims.filter((d) => d !== 'dataset');
  for (const row of model.rows) {
    if (row.kind !== 'result') continue;
    const series = rowLabel(seriesDimsOf, row.dims);
    model.columns.forEach((c, i) => {
      const cell = row.cells[i]!;
      if (c.kind !== 'data' || cell.mean === null) return;
      const sd = cell.std ?? 0;
      out.push({
        series,
        dataset: prettyDataset(String(row.dims.dataset)),
        rank: Number(c.key),
        mean: cell.mean,
        lo: cell.mean - sd,
        hi: cell.mean + sd,
        n: cell.n,
      });
    });
  }
  if (out.length === 0) throw new TableInputError('no finished run with a rank in the selection; nothing to plot');
  return out;
}

export function rankSpec(
  runs: RunRow[],
  metric: string | null = null,
  title = 'Score vs rank (mean ± std over seeds)',
): TopLevelSpec {
  const values = rankData(runs, metric);
  const order = seriesSort(values);
  const datasets = new Set(values.map((v) => v.dataset));
  const x = {
    field: 'rank',
    type: 'quantitative' as const,
    scale: { type: 'log' as const, base: 2 },
    title: 'rank r (log2 scale)',
    axis: { format: 'd' },
  };
  const layers = [
    {
      mark: { type: 'errorbar' as const, ticks: true },
      encoding: {
        x,
        y: { field: 'lo', type: 'quantitative' as const, title: 'score', scale: { zero: false } },
        y2: { field: 'hi' },
        color: { field: 'series', type: 'nominal' as const, title: null, sort: order },
      },
    },
    {
      mark: { type: 'line' as const, point: true },
      encoding: {
        x,
        y: { field: 'mean', type: 'quantitative' as const, title: 'score' },
        color: { field: 'series', type: 'nominal' as const, title: null, sort: order },
        tooltip: [
          { field: 'series', type: 'nominal' as const },
          { field: 'rank', type: 'quantitative' as const },
          { field: 'mean', type: 'quantitative' as const, format: '.2f' },
          { field: 'n', type: 'quantitative' as const },
        ],
      },
    },
  ];
  if (datasets.size === 1) {
    return {
      $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
      title: `${title}: ${[...datasets][0]}`,
      config: CONFIG,
      data: { values },
      width: 420,
      height: 280,
      layer: layers,
    };
  }
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title,
    config: CONFIG,
    data: { values },
    facet: { field: 'dataset', type: 'nominal', title: null, sort: datasetSort(runs) },
    columns: Math.min(3, datasets.size),
    resolve: { scale: { y: 'independent' } },
    spec: { width: 260, height: 180, layer: layers },
  };
}

/**
 * (layer, module type) of an adapted module's name: the last integer component and what follows it, e.g.
 * `encoder.layer.3.attention.output.dense` → (3, `attention.output.dense`); (null, the name) without one.
 */
export function layerAndType(module: string): { layer: number | null; type: string } {
  const parts = module.split('.');
  for (let i = parts.length - 1; i >= 0; i--) {
    if (/^\d+$/.test(parts[i]!)) return { layer: Number(parts[i]), type: parts.slice(i + 1).join('.') || module };
  }
  return { layer: null, type: module };
}

export interface AllocationCell {
  panel: string;
  layer: string;
  type: string;
  rank: number;
  n: number;
  unit: string;
}

/** Final rank per (layer, module type), mean over the seeds of each run group (one panel per group). */
export function allocationData(runs: RunRow[]): AllocationCell[] {
  const ok = runs.filter((r) => r.status === 'succeeded' && r.allocation !== null);
  if (ok.length === 0)
    throw new TableInputError(
      'no finished run in the selection reports a rank allocation (adalora, increlora, triadaptlora, diffora, snella); nothing to plot',
    );
  const dims = seriesDims(ok, []);
  const manyDatasets = new Set(ok.map((r) => r.labels.dataset)).size > 1;
  const groups = new Map<string, { unit: string; cells: Map<string, { layer: string; type: string; v: number[] }> }>();
  for (const r of ok) {
    const panel = seriesLabel(r, dims) + (manyDatasets ? ` · ${prettyDataset(r.labels.dataset)}` : '');
    const g = groups.get(panel) ?? { unit: r.allocation!.unit, cells: new Map() };
    groups.set(panel, g);
    for (const [module, rank] of Object.entries(r.allocation!.ranks)) {
      const { layer, type } = layerAndType(module);
      const key = `${layer}\u0000${type}`;
      const c = g.cells.get(key) ?? { layer: layer === null ? '–' : String(layer), type, v: [] };
      g.cells.set(key, c);
      c.v.push(rank);
    }
  }
  const out: AllocationCell[] = [];
  for (const [panel, g] of groups) {
    for (const c of g.cells.values()) {
      const rank = c.v.reduce((a, b) => a + b, 0) / c.v.length;
      out.push({ panel, layer: c.layer, type: c.type, rank, n: c.v.length, unit: g.unit });
    }
  }
  return out;
}

export function allocationSpec(
  runs: RunRow[],
  title = 'Final rank per layer × module type (mean over seeds)',
): TopLevelSpec {
  const values = allocationData(runs);
  const layers = [...new Set(values.map((v) => v.layer))].sort((a, b) => Number(a) - Number(b));
  const types = [...new Set(values.map((v) => v.type))];
  const units = [...new Set(values.map((v) => v.unit))];
  const panels = [...new Set(values.map((v) => v.panel))];
  const dark = 0.6 * Math.max(...values.map((v) => v.rank));
  const layerSpec = {
    width: { step: 34 },
    height: { step: 26 },
    encoding: {
      x: { field: 'layer', type: 'ordinal' as const, sort: layers, title: 'layer', axis: { labelAngle: 0 } },
      y: { field: 'type', type: 'nominal' as const, sort: types, title: 'module' },
    },
    layer: [
      {
        mark: { type: 'rect' as const },
        encoding: {
          color: {
            field: 'rank',
            type: 'quantitative' as const,
            title: units.length === 1 ? units[0] : 'value',
            scale: { scheme: 'blues', zero: true },
          },
          tooltip: [
            { field: 'panel', type: 'nominal' as const, title: 'run group' },
            { field: 'layer', type: 'ordinal' as const },
            { field: 'type', type: 'nominal' as const },
            { field: 'rank', type: 'quantitative' as const, format: '.2~f' },
            { field: 'n', type: 'quantitative' as const, title: 'seeds' },
          ],
        },
      },
      {
        mark: { type: 'text' as const, fontSize: 10 },
        encoding: {
          text: { field: 'rank', type: 'quantitative' as const, format: '.2~f' },
          color: {
            condition: [
              { test: `datum.rank > ${dark}`, value: 'white' },
              { test: 'datum.rank > 0', value: 'black' },
            ],
            value: '#999',
          },
        },
      },
    ],
  };
  if (panels.length === 1) {
    return {
      $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
      title: `${title}: ${panels[0]}`,
      config: CONFIG,
      data: { values },
      ...layerSpec,
    };
  }
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title,
    config: CONFIG,
    data: { values },
    facet: { field: 'panel', type: 'nominal', title: null, sort: panels },
    columns: Math.min(2, panels.length),
    spec: layerSpec,
  };
}

/** Renders a Vega-Lite spec to SVG with vega's headless renderer. */
export async function specToSvg(spec: TopLevelSpec): Promise<string> {
  const [{ compile }, vega] = await Promise.all([import('vega-lite'), import('vega')]);
  const view = new vega.View(vega.parse(compile(spec).spec), { renderer: 'none' });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}

/** Rasterises an SVG to PNG (white background, `scale`× the SVG's size). */
export async function svgToPng(svg: string, scale = 2): Promise<Buffer> {
  const { Resvg } = await import('@resvg/resvg-js');
  const r = new Resvg(svg, {
    background: 'white',
    fitTo: { mode: 'zoom', value: scale },
    font: { loadSystemFonts: true, defaultFontFamily: PLOT_FONT, sansSerifFamily: PLOT_FONT },
  });
  return r.render().asPng();
}
