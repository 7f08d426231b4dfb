/**
 * What the plots decide themselves instead of leaving it to Vega's defaults: series styles that never share a
 * colour (a palette of distinct colours, generated hues beyond it, plus dash and marker variation), nice axis
 * ticks with the decimals they need (never `0.000000` for a flat series), and the placement of point labels so
 * that they do not overlap one another or the points. Pure.
 */

/**
 * Twenty colours far apart in CIELAB (every pair ΔE76 ≥ 20, tested): Vega's Tableau 10 first, so plots of up to
 * ten series look as before, then ten darker or more saturated ones of other hues.
 */
export const PALETTE = [
  '#4c78a8',
  '#f58518',
  '#e45756',
  '#72b7b2',
  '#54a24b',
  '#eeca3b',
  '#b279a2',
  '#ff9da6',
  '#9d755d',
  '#bab0ac',
  '#1b3a6b',
  '#8c2d04',
  '#00a6d6',
  '#6a3d9a',
  '#1a6b32',
  '#9e9a00',
  '#d4006f',
  '#3d3d3d',
  '#b0e000',
  '#5c2a1a',
] as const;

/** Dash patterns (lines) and point shapes, one per block of `PALETTE.length` series. */
export const DASHES: number[][] = [
  [1, 0],
  [6, 3],
  [2, 2],
  [8, 3, 2, 3],
  [12, 4],
];
export const SHAPES = ['circle', 'square', 'triangle-up', 'diamond', 'cross', 'triangle-down'] as const;

function hsl(h: number, s: number, l: number): string {
  const a = s * Math.min(l, 1 - l);
  const f = (n: number): string => {
    const k = (n + h / 30) % 12;
    const c = l - a * Math.max(-1, Math.min(k - 3, 9 - k, 1));
    return Math.round(255 * c)
      .toString(16)
      .padStart(2, '0');
  };
  return `#${f(0)}${f(8)}${f(4)}`;
}

/** `n` colours, all different: the palette, then hues 137.5° apart (golden angle) at alternating lightness. */
export function seriesColours(n: number): string[] {
  const out: string[] = PALETTE.slice(0, n);
  const seen = new Set(out);
  for (let i = 0; out.length < n; i++) {
    const c = hsl((i * 137.508) % 360, 0.65, [0.35, 0.5, 0.65][i % 3]!);
    if (!seen.has(c)) {
      seen.add(c);
      out.push(c);
    }
  }
  return out;
}

/** The style scales of `series` (legend order): a colour each, and a dash / shape per block of colours. */
export function seriesScales(series: string[]): {
  color: { domain: string[]; range: string[] };
  strokeDash: { domain: string[]; range: number[][] };
  shape: { domain: string[]; range: string[] };
} {
  const block = (i: number): number => Math.floor(i / PALETTE.length);
  return {
    color: { domain: series, range: seriesColours(series.length) },
    strokeDash: { domain: series, range: series.map((_, i) => DASHES[block(i) % DASHES.length]!) },
    shape: { domain: series, range: series.map((_, i) => SHAPES[block(i) % SHAPES.length]!) },
  };
}

export interface Ticks {
  /** The domain the ticks span (first and last tick). */
  domain: [number, number];
  values: number[];
  /** Decimals that print every tick exactly and differently. */
  digits: number;
}

/** A step of 1, 2 or 5 × 10^k giving about `count` intervals over `span`. */
function niceStep(span: number, count: number): number {
  const raw = span / count;
  const p = 10 ** Math.floor(Math.log10(raw));
  for (const m of [1, 2, 5, 10]) if (m * p >= raw * 0.999) return m * p;
  return 10 * p;
}

/**
 * Nice ticks covering [lo, hi]: steps of 1, 2 or 5 × 10^k, the decimals of the step (`0.05` → 2). A flat
 * range (lo = hi) is widened around its value (±5% of it, at least ±0.5 × 10^-k for a value printed with k
 * decimals) so that its axis still reads as numbers around that value.
 */
export function niceTicks(lo: number, hi: number, count = 5): Ticks {
  if (!Number.isFinite(lo) || !Number.isFinite(hi)) return { domain: [0, 1], values: [0, 0.5, 1], digits: 1 };
  if (hi < lo) [lo, hi] = [hi, lo];
  if (hi - lo < 1e-12 * Math.max(1, Math.abs(lo))) {
    const half = Math.abs(lo) > 0 ? Math.abs(lo) * 0.05 : 0.5;
    lo -= half;
    hi += half;
  }
  const step = niceStep(hi - lo, count);
  const digits = Math.max(0, -Math.floor(Math.log10(step) + 1e-9));
  const first = Math.floor(lo / step + 1e-9) * step;
  const last = Math.ceil(hi / step - 1e-9) * step;
  const values: number[] = [];
  for (let v = first, i = 0; v <= last + step * 1e-6 && i < 100; i++, v = first + i * step) {
    values.push(Number(v.toFixed(digits)) + 0); // + 0: no -0
  }
  return { domain: [values[0]!, values[values.length - 1]!], values, digits };
}

/** Estimated width of a label in px: DejaVu Sans averages ≈ 0.55 em; 0.62 em errs on the wide side. */
export function labelWidth(text: string, fontSize: number): number {
  return Math.ceil(text.length * 0.62 * fontSize) + 2;
}

export interface Box {
  x: number;
  y: number;
  w: number;
  h: number;
}

export function overlaps(a: Box, b: Box): boolean {
  return a.x < b.x + b.w && b.x < a.x + a.w && a.y < b.y + b.h && b.y < a.y + a.h;
}

function overlapArea(a: Box, b: Box): number {
  const w = Math.min(a.x + a.w, b.x + b.w) - Math.max(a.x, b.x);
  const h = Math.min(a.y + a.h, b.y + b.h) - Math.max(a.y, b.y);
  return w > 0 && h > 0 ? w * h : 0;
}

export interface PlacedLabel {
  /** Left edge and vertical middle of the label, in px from the plot's top-left corner. */
  x: number;
  y: number;
  box: Box;
  /** False when no free spot was found (the least-overlapping one is used). */
  free: boolean;
}

/** Candidate label boxes around a point at (px, py): right, left, above, below, then further up / down. */
function candidates(px: number, py: number, w: number, h: number, gap: number): Box[] {
  const out: Box[] = [];
  const rows = [0, -1, 1];
  for (let k = 2; k <= 12; k++) rows.push(-k, k);
  for (const r of rows) {
    const dy = r * (h + 1);
    out.push({ x: px + gap, y: py + dy - h / 2, w, h });
    out.push({ x: px - gap - w, y: py + dy - h / 2, w, h });
    if (r === 0) {
      out.push({ x: px - w / 2, y: py - gap - h, w, h });
      out.push({ x: px - w / 2, y: py + gap, w, h });
    }
  }
  return out;
}

/**
 * Greedy label placement (points in the given order): each label takes the first candidate spot that stays
 * inside the `width` × `height` plot and overlaps neither a label placed before it nor any point's marker
 * (a square of `marker` px); when none is free, the spot with the least overlap.
 */
export function placeLabels(
  points: { x: number; y: number; text: string }[],
  width: number,
  height: number,
  fontSize = 10,
  marker = 10,
): PlacedLabel[] {
  const h = Math.ceil(fontSize * 1.25);
  const markers: Box[] = points.map((p) => ({ x: p.x - marker / 2, y: p.y - marker / 2, w: marker, h: marker }));
  const placed: Box[] = [];
  return points.map((p) => {
    const w = labelWidth(p.text, fontSize);
    let best: Box | null = null;
    let bestCost = Infinity;
    for (const c of candidates(p.x, p.y, w, h, marker / 2 + 2)) {
      const inside = c.x >= 0 && c.y >= 0 && c.x + c.w <= width && c.y + c.h <= height;
      if (!inside) continue;
      let cost = 0;
      for (const b of placed) cost += overlapArea(c, b);
      for (const m of markers) cost += overlapArea(c, m);
      if (cost < bestCost) {
        best = c;
        bestCost = cost;
        if (cost === 0) break;
      }
    }
    best ??= { x: Math.min(Math.max(0, p.x + marker), Math.max(0, width - w)), y: p.y - h / 2, w, h };
    placed.push(best);
    return { x: best.x, y: best.y + h / 2, box: best, free: bestCost === 0 };
  });
}
