/**
 * The standard PEFT figures, as Vega-Lite specifications rendered headless to SVG (vega's `toSVG`) and to
 * PNG (resvg): training-loss curves per run group (mean over seeds), evaluation curves (the validation metric
 * per eval step, `curves`), score against trainable parameters
 * (log x; the efficiency plot), score against rank, the final rank allocation (layer × module type heatmap) of
 * methods that move rank during training, and per-round curves of federated runs (the global metric and the
 * aggregation error after every round). No I/O: callers write the strings and buffers.
 */
import type { TopLevelSpec } from 'vega-lite';
import type { Encoding } from 'vega-lite/types_unstable/encoding.js';
import type { RunRow } from './runs.js';
import { buildTable, rowLabel, DIMS, type Dim, type TableModel } from './table.js';
import { datasetOrder, prettyDataset, prettyMethod } from './names.js';
import { TableInputError } from '../core/errors.js';
import { niceTicks, placeLabels, seriesScales } from './plot-layout.js';

export const PLOT_KINDS = ['loss', 'curves', 'params', 'rank', 'allocation', 'rounds'] as const;
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

/**
 * Facet order: GLUE in paper order, then VTAB-1k by group, then the rest (pretty names); only the datasets that
 * have something to draw (`drawn`: the pretty names in the plot's data), so that no facet is empty.
 */
function datasetSort(runs: RunRow[], drawn: Iterable<string>): string[] {
  const keep = new Set(drawn);
  return [...new Set(runs.map((r) => r.labels.dataset))]
    .sort(datasetOrder)
    .map(prettyDataset)
    .filter((d) => keep.has(d));
}

/** Colour, dash (lines) and shape (points) per series: never two series alike (plot-layout.ts). */
function styleEncoding(
  order: string[],
  kind: 'line' | 'point' | 'both',
): Pick<Encoding<string>, 'color' | 'strokeDash' | 'shape'> {
  const s = seriesScales(order);
  const enc: Pick<Encoding<string>, 'color' | 'strokeDash' | 'shape'> = {
    color: { field: 'series', type: 'nominal' as const, title: null, sort: order, scale: s.color },
  };
  if (kind !== 'point')
    enc.strokeDash = { field: 'series', type: 'nominal', title: null, sort: order, scale: s.strokeDash };
  if (kind !== 'line') enc.shape = { field: 'series', type: 'nominal', title: null, sort: order, scale: s.shape };
  return enc;
}

/**
 * Adds `y_lo` / `y_hi` to every value: nice tick bounds of its facet's values (`fields`), which an invisible rule
 * layer (`yExtentLayer`) adds to the facet's y domain. A flat facet (one value) then gets an axis of numbers
 * around that value with the digits they need, never Vega's `0.000000` ticks of an empty extent.
 */
function withYExtent<T extends Record<string, unknown>>(values: T[], facet: (v: T) => string, fields: (keyof T)[]) {
  const ext = new Map<string, [number, number]>();
  for (const v of values) {
    const k = facet(v);
    const e = ext.get(k) ?? [Infinity, -Infinity];
    for (const f of fields) {
      const x = v[f] as number;
      e[0] = Math.min(e[0], x);
      e[1] = Math.max(e[1], x);
    }
    ext.set(k, e);
  }
  const ticks = new Map([...ext].map(([k, [lo, hi]]) => [k, niceTicks(lo, hi).domain]));
  return values.map((v) => ({ ...v, y_lo: ticks.get(facet(v))![0], y_hi: ticks.get(facet(v))![1] }));
}

const yExtentLayer = {
  mark: { type: 'rule' as const, opacity: 0 },
  encoding: { y: { field: 'y_lo', type: 'quantitative' as const }, y2: { field: 'y_hi' } },
};

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
  const values = withYExtent(lossCurveData(runs), (v) => v.dataset, ['loss']);
  const order = seriesSort(values);
  const datasets = new Set(values.map((v) => v.dataset));
  const layer = {
    layer: [
      {
        mark: { type: 'line' as const, strokeWidth: 1.5 },
        encoding: {
          x: { field: 'step', type: 'quantitative' as const, title: 'optimizer step' },
          y: { field: 'loss', type: 'quantitative' as const, title: 'training loss', scale: { zero: false } },
          ...styleEncoding(order, 'line'),
          tooltip: [
            { field: 'series', type: 'nominal' as const },
            { field: 'step', type: 'quantitative' as const },
            { field: 'loss', type: 'quantitative' as const, format: '.4f' },
            { field: 'seeds', type: 'quantitative' as const },
          ],
        },
      },
      yExtentLayer,
    ],
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
    facet: { field: 'dataset', type: 'nominal', title: null, sort: datasetSort(runs, datasets) },
    columns: Math.min(3, datasets.size),
    resolve: { scale: { y: 'independent' } },
    spec: { width: 260, height: 180, ...layer },
  };
}

export type EvalCurvePoint = { series: string; dataset: string; step: number; value: number; seeds: number };

/**
 * The evaluation curve of `split` (default: each run's own best-checkpoint split, `eval_split`) per (series,
 * dataset): the mean over seeds of the metric (`metric`, else the run's headline) at each eval step, from the
 * records' `evals`. Runs recorded before curves were kept are left out; none at all is an input error.
 */
export function evalCurveData(runs: RunRow[], metric: string | null, split: string | null = null): EvalCurvePoint[] {
  const ok = runs.filter((r) => r.status === 'succeeded' && r.evals[split ?? r.eval_split ?? '']?.curve.length);
  if (ok.length === 0)
    throw new TableInputError(
      `no finished run records an evaluation curve${split ? ` on ${split}` : ''} (records from before rankflow kept them, or no eval_every); nothing to plot`,
    );
  const dims = seriesDims(ok, []);
  const groups = new Map<string, { series: string; dataset: string; steps: Map<number, number[]> }>();
  for (const r of ok) {
    const series = seriesLabel(r, dims);
    const k = JSON.stringify([series, r.labels.dataset]);
    let g = groups.get(k);
    if (!g) groups.set(k, (g = { series, dataset: prettyDataset(r.labels.dataset), steps: new Map() }));
    const m = metric ?? r.headline!;
    for (const p of r.evals[split ?? r.eval_split!]!.curve) {
      const v = p.metrics[m];
      if (v === undefined) continue;
      const l = g.steps.get(p.step) ?? [];
      g.steps.set(p.step, [...l, v]);
    }
  }
  const out: EvalCurvePoint[] = [];
  for (const g of groups.values()) {
    for (const [step, vs] of [...g.steps.entries()].sort((a, b) => a[0] - b[0]))
      out.push({
        series: g.series,
        dataset: g.dataset,
        step,
        value: vs.reduce((s, x) => s + x, 0) / vs.length,
        seeds: vs.length,
      });
  }
  if (out.length === 0) throw new TableInputError(`no evaluation curve reports \`${metric}\`; pass another --metric`);
  return out;
}

/** `curves`: the evaluation metric per eval step, one line per method (series), one facet per dataset. */
export function evalCurveSpec(runs: RunRow[], metric: string | null, split: string | null = null): TopLevelSpec {
  const values = withYExtent(evalCurveData(runs, metric, split), (v) => v.dataset, ['value']);
  const order = seriesSort(values);
  const datasets = new Set(values.map((v) => v.dataset));
  const what = metric ?? [...new Set(runs.filter((r) => r.headline).map((r) => r.headline!))].join(' / ');
  const title = `${split ?? 'Evaluation'}${split ? ' ' : ' '}${what} (mean over seeds)`;
  const layer = {
    layer: [
      {
        mark: { type: 'line' as const, strokeWidth: 1.5, point: true },
        encoding: {
          x: { field: 'step', type: 'quantitative' as const, title: 'optimizer step' },
          y: { field: 'value', type: 'quantitative' as const, title: what, scale: { zero: false } },
          ...styleEncoding(order, 'line'),
          tooltip: [
            { field: 'series', type: 'nominal' as const },
            { field: 'step', type: 'quantitative' as const },
            { field: 'value', type: 'quantitative' as const, format: '.4f' },
            { field: 'seeds', type: 'quantitative' as const },
          ],
        },
      },
      yExtentLayer,
    ],
  };
  const head = { $schema: 'https://vega.github.io/schema/vega-lite/v6.json', config: CONFIG, data: { values } };
  if (datasets.size === 1)
    return { ...head, title: `${title}: ${[...datasets][0]}`, width: 420, height: 280, ...layer } as TopLevelSpec;
  return {
    ...head,
    title,
    facet: { field: 'dataset', type: 'nominal', title: null, sort: datasetSort(runs, datasets) },
    columns: Math.min(3, datasets.size),
    resolve: { scale: { y: 'independent' } },
    spec: { width: 260, height: 180, ...layer },
  } as TopLevelSpec;
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

/** Panels of the rounds plot: per dataset (paper order), the global metric, then the aggregation error. */
function roundsCells(runs: RunRow[], values: { dataset: string; panel: string }[]): string[] {
  const present = new Set(values.map((v) => `${v.dataset} · ${v.panel}`));
  const panels = [...new Set(values.map((v) => v.panel))].sort(
    (a, b) => Number(a === 'aggregation error') - Number(b === 'aggregation error') || a.localeCompare(b),
  );
  return datasetSort(runs, new Set(values.map((v) => v.dataset)))
    .flatMap((d) => panels.map((p) => `${d} · ${p}`))
    .filter((c) => present.has(c));
}

export function roundsSpec(runs: RunRow[], metric: string | null = null): TopLevelSpec {
  // One facet per (dataset, panel) that has data: a row × column grid would draw an empty, axis-framed cell
  // for a dataset without one of the panels (two datasets with different headline metrics).
  const data = roundsData(runs, metric).map((v) => ({ ...v, cell: `${v.dataset} · ${v.panel}` }));
  const values = withYExtent(data, (v) => v.cell, ['value']);
  const order = seriesSort(values);
  const cells = roundsCells(runs, values);
  const perDataset = Math.max(
    ...[...new Set(values.map((v) => v.dataset))].map((d) => cells.filter((c) => c.startsWith(`${d} · `)).length),
  );
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: 'Federated rounds (mean over seeds)',
    config: CONFIG,
    data: { values },
    facet: { field: 'cell', type: 'nominal', title: null, sort: cells },
    columns: perDataset,
    resolve: { scale: { y: 'independent' } },
    spec: {
      width: 300,
      height: 180,
      layer: [
        {
          mark: { type: 'line', point: true, strokeWidth: 1.5 },
          encoding: {
            x: { field: 'round', type: 'quantitative', title: 'round', axis: { tickMinStep: 1 } },
            y: { field: 'value', type: 'quantitative', title: null, scale: { zero: false } },
            ...styleEncoding(order, 'both'),
            tooltip: [
              { field: 'series', type: 'nominal' },
              { field: 'round', type: 'quantitative' },
              { field: 'value', type: 'quantitative', format: '.5f' },
              { field: 'seeds', type: 'quantitative' },
            ],
          },
        },
        yExtentLayer,
      ],
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

const PARAMS_W = 460;
const PARAMS_H = 300;
const LABEL_FONT = 10;

/** The x (log) and y domains of the parameter plot, fixed here so that label positions can be computed. */
function paramsDomains(values: { params: number; score: number }[]) {
  const lp = values.map((v) => Math.log10(v.params));
  const lo = Math.min(...lp);
  const hi = Math.max(...lp);
  // Room on both sides for labels: a fifth of the span, at least 0.3 decades.
  const pad = Math.max(0.3, (hi - lo) / 5);
  const ylo = Math.min(...values.map((v) => v.score));
  const yhi = Math.max(...values.map((v) => v.score));
  // Points off the frame: 8% of the span beyond the extreme scores before rounding out to nice ticks.
  const y = niceTicks(ylo - 0.08 * (yhi - ylo), yhi + 0.08 * (yhi - ylo));
  return { x: [10 ** (lo - pad), 10 ** (hi + pad)] as [number, number], y };
}

/**
 * Each point's label at a free spot (plot-layout.ts `placeLabels`, in px on the plot), as data coordinates of
 * its left edge / vertical middle (`lx`, `ly`); `moved` when it sits away from its point (a leader line).
 */
export function paramsLabels<T extends { label: string; params: number; score: number }>(values: T[]) {
  const { x, y } = paramsDomains(values);
  const [lx0, lx1] = x.map(Math.log10) as [number, number];
  const [y0, y1] = y.domain;
  const px = (p: number) => ((Math.log10(p) - lx0) / (lx1 - lx0)) * PARAMS_W;
  const py = (s: number) => PARAMS_H - ((s - y0) / (y1 - y0)) * PARAMS_H;
  const placed = placeLabels(
    values.map((v) => ({ x: px(v.params), y: py(v.score), text: v.label })),
    PARAMS_W,
    PARAMS_H,
    LABEL_FONT,
  );
  return values.map((v, i) => {
    const l = placed[i]!;
    const near = Math.abs(l.y - py(v.score)) < 2 && Math.abs(l.x - px(v.params)) < 12;
    return {
      ...v,
      lx: 10 ** (lx0 + (l.x / PARAMS_W) * (lx1 - lx0)),
      ly: y0 + ((PARAMS_H - l.y) / PARAMS_H) * (y1 - y0),
      // The leader ends at the label's nearer side.
      ex: 10 ** (lx0 + ((l.x < px(v.params) ? l.x + l.box.w : l.x) / PARAMS_W) * (lx1 - lx0)),
      moved: !near,
      box: l.box,
    };
  });
}

export function paramsSpec(model: TableModel, title?: string): TopLevelSpec {
  const values = paramsLabels(paramsData(model)).map((v) => ({ ...v, box: undefined }));
  const col = model.columns[rowScoreColumn(model)]!;
  const scaled = Object.values(model.scales).some((x) => x !== 1);
  const yTitle =
    col.metric === 'mixed'
      ? `${col.label}${scaled ? ' (×100)' : ''}`
      : `${col.label} (${col.metric}${(model.scales[col.metric] ?? 1) !== 1 ? ` ×${model.scales[col.metric]}` : ''})`;
  const dom = paramsDomains(values);
  const xScale = { type: 'log' as const, domain: dom.x, nice: false };
  const yScale = { domain: dom.y.domain, nice: false, zero: false };
  const enc = {
    x: {
      field: 'params',
      type: 'quantitative' as const,
      scale: xScale,
      title: 'trainable parameters (log scale)',
      axis: { format: '~s' },
    },
    y: {
      field: 'score',
      type: 'quantitative' as const,
      scale: yScale,
      title: yTitle,
      axis: { values: dom.y.values, format: `.${dom.y.digits}f` },
    },
  };
  const methods = [...new Set(values.map((v) => v.method))];
  const s = seriesScales(methods);
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: title ?? `Score vs trainable parameters (${col.direction === 'max' ? 'higher' : 'lower'} is better)`,
    config: CONFIG,
    data: { values },
    width: PARAMS_W,
    height: PARAMS_H,
    layer: [
      {
        transform: [{ filter: 'datum.moved' }],
        mark: { type: 'rule', color: '#999', strokeWidth: 0.7 },
        encoding: { ...enc, x2: { field: 'ex' }, y2: { field: 'ly' } },
      },
      {
        mark: { type: 'point', filled: true, size: 70 },
        encoding: {
          ...enc,
          color: { field: 'method', type: 'nominal', title: null, sort: methods, scale: s.color },
          shape: { field: 'method', type: 'nominal', title: null, sort: methods, scale: s.shape },
          tooltip: [
            { field: 'label', type: 'nominal' },
            { field: 'params', type: 'quantitative', format: ',' },
            { field: 'score', type: 'quantitative', format: '.2f' },
          ],
        },
      },
      {
        mark: { type: 'text', align: 'left', baseline: 'middle', fontSize: LABEL_FONT },
        encoding: {
          x: { field: 'lx', type: 'quantitative', scale: xScale },
          y: { field: 'ly', type: 'quantitative', scale: yScale },
          text: { field: 'label', type: 'nominal' },
        },
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
  const ranks = [...new Set(out.map((p) => p.rank))];
  if (ranks.length < 2)
    throw new TableInputError(
      `the rank plot needs results at two or more ranks; the selection has only r=${ranks[0]} (sweep the rank, or plot --kind params)`,
    );
  return out;
}

export function rankSpec(
  runs: RunRow[],
  metric: string | null = null,
  title = 'Score vs rank (mean ± std over seeds)',
): TopLevelSpec {
  const values = withYExtent(rankData(runs, metric), (v) => v.dataset, ['lo', 'hi', 'mean']);
  const order = seriesSort(values);
  const datasets = new Set(values.map((v) => v.dataset));
  const ranks = [...new Set(values.map((v) => v.rank))].sort((a, b) => a - b);
  const x = {
    field: 'rank',
    type: 'quantitative' as const,
    scale: { type: 'log' as const, base: 2, domain: [ranks[0]! / 1.25, ranks[ranks.length - 1]! * 1.25], nice: false },
    title: 'rank r (log2 scale)',
    // Ticks at the ranks run, never at ranks nobody ran (log ticks would add 3, 5, 6, 7).
    axis: { values: ranks, format: 'd' },
  };
  const style = styleEncoding(order, 'both');
  const layers = [
    {
      mark: { type: 'errorbar' as const, ticks: true },
      encoding: {
        x,
        y: { field: 'lo', type: 'quantitative' as const, title: 'score', scale: { zero: false } },
        y2: { field: 'hi' },
        color: style.color,
      },
    },
    {
      mark: { type: 'line' as const, point: true },
      encoding: {
        x,
        y: { field: 'mean', type: 'quantitative' as const, title: 'score' },
        ...style,
        tooltip: [
          { field: 'series', type: 'nominal' as const },
          { field: 'rank', type: 'quantitative' as const },
          { field: 'mean', type: 'quantitative' as const, format: '.2f' },
          { field: 'n', type: 'quantitative' as const },
        ],
      },
    },
    yExtentLayer,
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
    facet: { field: 'dataset', type: 'nominal', title: null, sort: datasetSort(runs, datasets) },
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
