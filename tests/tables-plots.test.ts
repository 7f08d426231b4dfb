/**
 * Plots: the data behind each figure (mean loss over seeds, one point per row at its average score, mean ± std
 * per rank) and the rendered SVG / PNG (vega headless, resvg), including text rendered with a real font.
 */
import { describe, expect, it } from 'vitest';
import {
  allocationData,
  allocationSpec,
  layerAndType,
  lossCurveData,
  lossCurveSpec,
  paramsData,
  paramsSpec,
  rankData,
  rankSpec,
  roundsData,
  roundsSpec,
  specToSvg,
  svgToPng,
} from '../tables/plots.js';
import { buildTable, TableInputError } from '../tables/table.js';
import { runFromRecord, type RunRow } from '../tables/runs.js';
import { glueRuns, makeRecord, type RecordOptions } from './tables-fixtures.js';
import { ResultRecord } from '../schemas/result.js';

const run = (o: RecordOptions): RunRow => runFromRecord(makeRecord(o));

function pngSize(png: Buffer): { width: number; height: number } {
  return { width: png.readUInt32BE(16), height: png.readUInt32BE(20) };
}

describe('plot data', () => {
  it('averages the per-round global metric and aggregation error of federated runs over seeds', () => {
    const runs = [0, 1].map((seed) => {
      const r = run({ method: 'lora', rank: 4, dataset: 'synthetic/img-cls', seed, metric: 'accuracy' });
      r.rounds = [1, 2].map((round) => ({
        round,
        step: round * 10,
        client_loss: 1 / round,
        metrics: { accuracy: 0.5 + 0.1 * round + 0.1 * seed, loss: 1 },
        aggregation: { aggregation_error: 0.01 * round + 0.01 * seed, aggregation_error_fedit: 0.1 },
      }));
      return r;
    });
    const d = roundsData(runs);
    const acc = d.filter((p) => p.panel === 'global accuracy').map((p) => [p.round, p.value, p.seeds]);
    const err = d.filter((p) => p.panel === 'aggregation error').map((p) => [p.round, p.value]);
    expect(acc.map(([r, , s]) => [r, s])).toEqual([
      [1, 2],
      [2, 2],
    ]);
    expect(acc[0]![1]).toBeCloseTo(0.65, 10);
    expect(err[1]![1]).toBeCloseTo(0.025, 10);
    expect(roundsData(runs, 'loss').filter((p) => p.panel === 'global loss')).toHaveLength(2);
    expect(() => roundsData([run({ method: 'lora', rank: 4, dataset: 'glue/sst2', seed: 0 })])).toThrow(
      TableInputError,
    );
  });

  it('renders the rounds plot', async () => {
    const r = run({ method: 'lora', rank: 4, dataset: 'synthetic/img-cls', seed: 0, metric: 'accuracy' });
    r.rounds = [
      { round: 1, step: 5, client_loss: 1, metrics: { accuracy: 0.5 }, aggregation: { aggregation_error: 0.1 } },
    ];
    const svg = await specToSvg(roundsSpec([r]));
    expect(svg).toContain('aggregation error');
    expect(svg).toContain('global accuracy');
  });

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

/** A finished AdaLoRA-style run whose final ranks sit on layers 1 and 2 of three (query / value). */
function allocated(seed: number, method = 'adalora'): RunRow {
  const ranks: Record<string, number> = {};
  for (const layer of [0, 1, 2])
    for (const t of ['query', 'value']) ranks[`encoder.layers.${layer}.attn.${t}`] = layer === 0 ? 0 : 2 + seed;
  const rec = makeRecord({ method, rank: 2, dataset: 'glue/sst2', seed });
  const total = Object.values(ranks).reduce((a, b) => a + b, 0);
  const history = [{ step: 10, total, budget: total, ranks }];
  return runFromRecord(
    ResultRecord.parse({ ...rec, allocation: { unit: 'rank', ranks, total, budget: total, params: null, history } }),
  );
}

describe('rank allocation heatmap', () => {
  it('splits module names into layer and module type', () => {
    expect(layerAndType('encoder.layer.3.attention.output.dense')).toEqual({
      layer: 3,
      type: 'attention.output.dense',
    });
    expect(layerAndType('model.layers.12.self_attn.q_proj')).toEqual({ layer: 12, type: 'self_attn.q_proj' });
    expect(layerAndType('classifier')).toEqual({ layer: null, type: 'classifier' });
  });

  it('averages the final ranks over seeds per (layer, module type) and refuses runs without an allocation', () => {
    const d = allocationData([allocated(0), allocated(1)]);
    const at = (layer: string, type: string) => d.find((c) => c.layer === layer && c.type === type)!;
    expect(d).toHaveLength(6);
    expect(at('0', 'attn.query')).toMatchObject({ rank: 0, n: 2, panel: 'AdaLoRA' });
    expect(at('2', 'attn.value')).toMatchObject({ rank: 2.5, n: 2 });
    expect(() => allocationData(glueRuns())).toThrow(/reports a rank allocation/);
  });

  it('renders one heatmap per run group, SVG and PNG', async () => {
    const one = await specToSvg(allocationSpec([allocated(0), allocated(1)]));
    expect(one).toContain('Final rank per layer × module type (mean over seeds): AdaLoRA');
    expect(one).toContain('attn.query');
    expect(one).toContain('2.5');
    const png = await svgToPng(one);
    expect(png.subarray(1, 4).toString('latin1')).toBe('PNG');
    const two = await specToSvg(allocationSpec([allocated(0), allocated(0, 'increlora')]));
    expect(two).toContain('AdaLoRA');
    expect(two).toContain('IncreLoRA');
  });
});

describe('rendering', () => {
  it('renders SVG with axis titles and a PNG at twice the size', async () => {
    const runs = glueRuns();
    const ranked = [4, 8].map((rank) => run({ method: 'lora', rank, dataset: 'glue/sst2', seed: 0 }));
    for (const spec of [lossCurveSpec(runs), paramsSpec(buildTable(runs)), rankSpec(ranked)]) {
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
    const spec = paramsSpec(buildTable(runs)) as { layer: { mark: { type: string } }[]; title?: unknown };
    const noLabels = { ...spec, layer: spec.layer.filter((l) => l.mark.type !== 'text') } as typeof spec;
    const withoutText = await svgToPng(await specToSvg(noLabels as never));
    // PNG size grows with detail; the point labels add glyphs only if a font was found.
    expect(withText.length).toBeGreaterThan(withoutText.length * 1.05);
  });
});
