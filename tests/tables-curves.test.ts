/** `rankflow plot --kind curves`: the evaluation metric per eval step, per method, from the records' `evals`. */
import { describe, expect, it } from 'vitest';
import { evalCurveData, evalCurveSpec, specToSvg } from '../tables/plots.js';
import { runFromRecord } from '../tables/runs.js';
import { lrSweepRuns, makeRecord } from './tables-fixtures.js';

describe('evaluation curves', () => {
  const runs = lrSweepRuns();
  it('are the mean over seeds of the validation metric at each eval step, one series per method and setting', () => {
    const data = evalCurveData(runs, null);
    const series = [...new Set(data.map((d) => d.series))];
    expect(series).toHaveLength(4); // LoRA and Full FT at two learning rates
    const pick = runs.filter(
      (r) => r.labels.method === 'lora' && r.labels.setting === 'lr=1e-3' && r.labels.dataset === 'glue/rte',
    );
    const at20 = pick.map((r) => r.evals.validation!.curve.find((p) => p.step === 20)!.metrics.accuracy!);
    const point = data.find(
      (d) => d.series.startsWith('LoRA') && d.series.includes('lr=1e-3') && d.dataset === 'RTE' && d.step === 20,
    )!;
    expect(point.seeds).toBe(3);
    expect(point.value).toBeCloseTo(at20.reduce((a, b) => a + b, 0) / 3, 12);
    expect(
      evalCurveData(runs, null, 'test').find((d) => d.step === 20 && d.dataset === 'RTE' && d.series === point.series)!
        .value,
    ).not.toBe(point.value);
  });
  it('render to SVG with a facet per dataset', async () => {
    const svg = await specToSvg(evalCurveSpec(runs, null));
    expect(svg).toContain('<svg');
    expect(svg).toContain('SST-2');
    expect(svg).toContain('RTE');
  });
  it('say so when no record kept a curve', () => {
    const old = [runFromRecord(makeRecord({ method: 'lora', dataset: 'glue/sst2', seed: 0 }))];
    expect(() => evalCurveData(old, null)).toThrow(/no finished run records an evaluation curve/);
  });
});
