/**
 * Plot fixes (issue 17): more than ten series never share a colour; the parameter plot's point labels do not
 * overlap (boxes measured on the rendered SVG, widths by resvg with the real font); a rank plot of one rank is
 * refused and a flat series gets ticks with the digits they need (never `0.000000`); no facet without data.
 */
import { describe, expect, it } from 'vitest';
import { Resvg } from '@resvg/resvg-js';
import { lossCurveSpec, paramsSpec, rankData, rankSpec, roundsSpec, specToSvg, PLOT_FONT } from '../tables/plots.js';
import { niceTicks, overlaps, PALETTE, placeLabels, seriesColours, type Box } from '../tables/plot-layout.js';
import { buildTable } from '../tables/table.js';
import { runFromRecord, type RunRow } from '../tables/runs.js';
import { makeRecord, type RecordOptions } from './tables-fixtures.js';

const run = (o: RecordOptions): RunRow => runFromRecord(makeRecord(o));

/** CIELAB of an sRGB hex colour (D65). */
function lab(hex: string): [number, number, number] {
  const c = [1, 3, 5]
    .map((i) => parseInt(hex.slice(i, i + 2), 16) / 255)
    .map((v) => (v <= 0.04045 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4)) as [number, number, number];
  const x = (c[0] * 0.4124 + c[1] * 0.3576 + c[2] * 0.1805) / 0.95047;
  const y = c[0] * 0.2126 + c[1] * 0.7152 + c[2] * 0.0722;
  const z = (c[0] * 0.0193 + c[1] * 0.1192 + c[2] * 0.9505) / 1.08883;
  const f = (t: number) => (t > 216 / 24389 ? Math.cbrt(t) : ((24389 / 27) * t + 16) / 116);
  return [116 * f(y) - 16, 500 * (f(x) - f(y)), 200 * (f(y) - f(z))];
}

/** Texts of the SVG whose content is one of `labels`, with their position (x, baseline y). */
function textsOf(svg: string, labels: string[]): { text: string; x: number; y: number; anchor: string }[] {
  const out: { text: string; x: number; y: number; anchor: string }[] = [];
  for (const m of svg.matchAll(/<text([^>]*)>([^<]*)<\/text>/g)) {
    if (!m[1]!.includes('text mark') || !labels.includes(m[2]!)) continue;
    const t = /translate\(([-\d.e]+),([-\d.e]+)\)/.exec(m[1]!)!;
    out.push({ text: m[2]!, x: Number(t[1]), y: Number(t[2]), anchor: /text-anchor="(\w+)"/.exec(m[1]!)![1]! });
  }
  return out;
}

/** The ink box of `text` at 10 px in the plot font, measured by resvg (x from the start, y from the baseline). */
function measured(text: string): Box {
  const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="1200" height="40"><text x="0" y="20" font-family="${PLOT_FONT}" font-size="10">${text}</text></svg>`;
  const b = new Resvg(svg, { font: { loadSystemFonts: true, defaultFontFamily: PLOT_FONT } }).getBBox()!;
  return { x: b.x, y: b.y - 20, w: b.width, h: b.height };
}

describe('series colours', () => {
  it('gives twelve series twelve colours in the rendered loss plot (Vega reuses its ten)', async () => {
    const runs = Array.from({ length: 12 }, (_, i) => run({ method: `m${i}`, dataset: 'glue/sst2', seed: 0 }));
    const svg = await specToSvg(lossCurveSpec(runs));
    const lines = [...svg.matchAll(/<path[^>]*aria-roledescription="line mark"[^>]*>/g)].map(
      (m) => /stroke="(#[0-9a-f]{6})"/.exec(m[0])![1],
    );
    expect(lines).toHaveLength(12);
    expect(new Set(lines).size).toBe(12);
  });

  it('keeps palette colours far apart and never repeats one, however many series', () => {
    let min = Infinity;
    for (let i = 0; i < PALETTE.length; i++)
      for (let j = i + 1; j < PALETTE.length; j++) {
        const [a, b] = [lab(PALETTE[i]!), lab(PALETTE[j]!)];
        min = Math.min(min, Math.hypot(a[0] - b[0], a[1] - b[1], a[2] - b[2]));
      }
    expect(min).toBeGreaterThanOrEqual(20);
    const many = seriesColours(60);
    expect(new Set(many).size).toBe(60);
    expect(many.slice(0, 10)).toEqual(PALETTE.slice(0, 10));
  });

  it('varies dashes and shapes beyond the palette', () => {
    const runs = Array.from({ length: 22 }, (_, i) => run({ method: `m${i}`, dataset: 'glue/sst2', seed: 0 }));
    const spec = lossCurveSpec(runs) as unknown as {
      layer: { encoding: { strokeDash?: { scale: { range: number[][] } } } }[];
    };
    const dashes = spec.layer[0]!.encoding.strokeDash!.scale.range.map((d) => d.join(','));
    expect(new Set(dashes.slice(0, 20)).size).toBe(1);
    expect(dashes[20]).not.toBe(dashes[0]);
  });
});

describe('parameter plot labels', () => {
  const methods = ['lora', 'dora', 'vera', 'adalora', 'pissa', 'olora', 'loha', 'lokr', 'ia3', 'bitfit', 'prefix'];
  // Eleven methods within 30% of each other's parameter count and 0.2 points of score: labels at a fixed
  // offset from their points overlapped.
  const runs = methods.map((m, i) =>
    run({
      method: m,
      rank: 8,
      setting: `lr=${i}e-4`,
      dataset: 'glue/sst2',
      seed: 0,
      trainable: 100_000 + 3_000 * i,
      total: 10_000_000,
      metrics: { accuracy: 0.9 + 0.001 * (i % 3) },
    }),
  );

  it('places no label over another in the rendered SVG (real glyph widths)', async () => {
    const model = buildTable(runs);
    const labels = model.rows.map((r) => r.label);
    const svg = await specToSvg(paramsSpec(model));
    const texts = textsOf(svg, labels);
    expect(texts.map((t) => t.text).sort()).toEqual([...labels].sort());
    const boxes = texts.map((t) => {
      expect(t.anchor).toBe('start');
      const m = measured(t.text);
      return { text: t.text, box: { x: t.x + m.x, y: t.y + m.y, w: m.w, h: m.h } };
    });
    const clashes: string[] = [];
    for (let i = 0; i < boxes.length; i++)
      for (let j = i + 1; j < boxes.length; j++)
        if (overlaps(boxes[i]!.box, boxes[j]!.box)) clashes.push(`${boxes[i]!.text} / ${boxes[j]!.text}`);
    expect(clashes).toEqual([]);
  });

  it('keeps labels off the points and inside the plot', () => {
    const pts = [0, 1, 2, 3, 4, 5].map((i) => ({ x: 100 + 4 * i, y: 100, text: `label number ${i}` }));
    const placed = placeLabels(pts, 400, 300);
    for (const [i, l] of placed.entries()) {
      expect(l.free).toBe(true);
      for (const p of pts) expect(overlaps(l.box, { x: p.x - 5, y: p.y - 5, w: 10, h: 10 })).toBe(false);
      for (const o of placed.slice(i + 1)) expect(overlaps(l.box, o.box)).toBe(false);
      expect(l.box.x).toBeGreaterThanOrEqual(0);
      expect(l.box.x + l.box.w).toBeLessThanOrEqual(400);
    }
  });
});

describe('axes', () => {
  it('computes nice ticks with the decimals they need, also for a flat range', () => {
    expect(niceTicks(0.61, 0.69)).toEqual({
      domain: [0.6, 0.7],
      values: [0.6, 0.62, 0.64, 0.66, 0.68, 0.7],
      digits: 2,
    });
    expect(niceTicks(12, 87).values).toEqual([0, 20, 40, 60, 80, 100]);
    const flat = niceTicks(0.1, 0.1);
    expect(flat.domain[0]).toBeLessThan(0.1);
    expect(flat.domain[1]).toBeGreaterThan(0.1);
    expect(flat.digits).toBeLessThanOrEqual(3);
    expect(niceTicks(0, 0).values).toEqual([-0.6, -0.4, -0.2, 0, 0.2, 0.4, 0.6]);
  });

  it('refuses a rank plot of a single rank with one line', () => {
    const runs = [0, 1].map((seed) => run({ method: 'lora', rank: 8, dataset: 'glue/sst2', seed }));
    expect(() => rankData(runs)).toThrow(/needs results at two or more ranks; the selection has only r=8/);
  });

  it('labels the y axis of a flat rank plot with short numbers and the x axis with the ranks run', async () => {
    const runs = [4, 16].flatMap((rank) =>
      [0, 1].map((seed) => run({ method: 'lora', rank, dataset: 'glue/sst2', seed, metrics: { accuracy: 0.5 } })),
    );
    const svg = await specToSvg(rankSpec(runs));
    const axisLabels = [...svg.matchAll(/<text text-anchor="(end|middle)"[^>]*opacity="1">([^<]*)<\/text>/g)].map(
      (m) => [m[1], m[2]!] as const,
    );
    const y = axisLabels.filter(([a]) => a === 'end').map(([, t]) => t);
    const x = axisLabels.filter(([a, t]) => a === 'middle' && /^\d+$/.test(t)).map(([, t]) => t);
    expect(y.length).toBeGreaterThanOrEqual(3);
    for (const t of y) expect(t).toMatch(/^\d+(\.\d{1,2})?$/);
    expect(new Set(y).size).toBe(y.length);
    expect(x).toEqual(['4', '16']);
  });
});

describe('facets', () => {
  function federated(dataset: string, metric: string): RunRow {
    const r = run({ method: 'lora', rank: 4, dataset, seed: 0, metric, metrics: { [metric]: 0.5 } });
    r.rounds = [1, 2].map((round) => ({
      round,
      step: round,
      client_loss: 1,
      metrics: { [metric]: 0.5 + round / 10 },
      aggregation: { aggregation_error: 0.1 * round },
    }));
    return r;
  }

  it('draws the rounds plot without an empty, axis-framed facet when datasets report different metrics', async () => {
    // synthetic/a reports accuracy, synthetic/b f1: a row × column grid had a "global f1" cell for a (empty) and
    // a "global accuracy" cell for b, four data cells in six frames.
    const svg = await specToSvg(roundsSpec([federated('synthetic/a', 'accuracy'), federated('synthetic/b', 'f1')]));
    const frames = svg.match(/h(\d+)v(\d+)h-\1Z" stroke="#ccc"/g) ?? [];
    const lines = svg.match(/aria-roledescription="line mark"/g) ?? [];
    expect(lines).toHaveLength(4);
    expect(frames).toHaveLength(4);
    for (const t of ['synthetic/a · global accuracy', 'synthetic/b · global f1', 'synthetic/a · aggregation error'])
      expect(svg).toContain(`>${t}<`);
    expect(svg).not.toContain('synthetic/a · global f1');
    expect(svg).not.toContain('synthetic/b · global accuracy');
  });
});
