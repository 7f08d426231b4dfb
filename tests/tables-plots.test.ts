/**
 * Plots: the data behind each figure (mean loss over seeds, one point per row at its average score, mean ± std
 * per rank) and the rendered SVG / PNG (vega headless, resvg), including text rendered with a real font.
 */
import { describe, expect, it } from 'vitest';
import {
  lossCurveData,
  lossCurveSpec,
  paramsData,
  paramsSpec,
  rankData,
  rankSpec,
  specToSvg,
  svgToPng,
} from '../tables/plots.js';
import { buildTable, TableInputError } from '../tables/table.js';
import { runFromRecord, type RunRow } from '../tables/runs.js';
import { glueRuns, makeRecord, type RecordOptions } from './tables-fixtures.js';

const run = (o: RecordOptions): RunRow => runFromRecord(makeRecord(o));

function pngSize(png: Buffer): { width: number; height: number } {
  return { width: png.readUInt32BE(16), height: png.readUInt32BE(20) };
}

describe('plot data', () => {
  it('averages loss curves over seeds per run group', () => {
    const runs = [0, 1].map((seed) =>
      run({
        method: 'lora',
        rank: 8,
        dataset: 'glue/sst2',
        seed,
        curve: [
          { step: 1, loss: 1 + seed },
          { step: 2, loss: 0.5 + seed },
        ],
      }),
    );
    const d = lossCurveData(runs);
    expect(d).toEqual([
      { series: 'LoRA', dataset: 'SST-2', step: 1, loss: 1.5, seeds: 2 },
      { series: 'LoRA', dataset: 'SST-2', step: 2, loss: 1, seeds: 2 },
    ]);
    expect(() => lossCurveData([])).toThrow(TableInputError);
  });

  it('places each row at its trainable parameters and average score', () => {
    const d = paramsData(buildTable(glueRuns()));
    expect(d.map((p) => [p.method, p.params])).toEqual([
      ['Full FT', 125_000_000],
      ['LoRA', 800_000],
      ['my_method', 300_000],
    ]);
    expect(d[0]!.score).toBeCloseTo((91 + 61 + 71) / 3, 10);
  });

  it('gives mean ± std per rank, ignoring a setting that only restates the rank', () => {
    const runs = [4, 8].flatMap((rank) =>
      [0, 1].map((seed) =>
        run({
          method: 'lora',
          rank,
          setting: `r=${rank}`,
          dataset: 'glue/sst2',
          seed,
          metrics: { accuracy: rank / 10 + seed / 100 },
        }),
      ),
    );
    const d = rankData(runs);
    expect(d.map((p) => [p.series, p.rank, Number(p.mean.toFixed(6))])).toEqual([
      ['LoRA', 4, 40.5],
      ['LoRA', 8, 80.5],
    ]);
    expect(d[0]!.hi - d[0]!.mean).toBeCloseTo(Math.SQRT1_2, 10);
    expect(() => rankData([run({ method: 'full', dataset: 'glue/sst2', seed: 0 })])).toThrow(
      /no run in the selection has a rank/,
    );
  });
});

describe('rendering', () => {
  it('renders SVG with axis titles and a PNG at twice the size', async () => {
    const runs = glueRuns();
    for (const spec of [lossCurveSpec(runs), paramsSpec(buildTable(runs)), rankSpec(runs)]) {
      const svg = await specToSvg(spec);
      expect(svg.startsWith('<svg')).toBe(true);
      const w = Number(/width="(\d+)"/.exec(svg)![1]);
      const png = await svgToPng(svg);
      expect(png.subarray(1, 4).toString('latin1')).toBe('PNG');
      expect(pngSize(png).width).toBe(2 * w);
    }
    const svg = await specToSvg(paramsSpec(buildTable(runs)));
    expect(svg).toContain('trainable parameters (log scale)');
    expect(svg).toContain('my_method (r=8, lr=1e-3 &amp; 50% #2)');
  });

  it('draws text: a plot with labels has more ink than the same plot without', async () => {
    const runs = glueRuns();
    const withText = await svgToPng(await specToSvg(paramsSpec(buildTable(runs))));
    const spec = paramsSpec(buildTable(runs)) as { layer: unknown[]; title?: unknown };
    const noLabels = { ...spec, layer: [spec.layer[0]] } as typeof spec;
    const withoutText = await svgToPng(await specToSvg(noLabels as never));
    // PNG size grows with detail; the point labels add glyphs only if a font was found.
    expect(withText.length).toBeGreaterThan(withoutText.length * 1.05);
  });
});
