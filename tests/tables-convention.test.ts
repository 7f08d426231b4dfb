/**
 * The parameter convention (issue 17): counts without the task head by default (the LoRA paper's), with it on
 * request (PEFT's), said in the notes; runs whose record lacks the head's share are named as such.
 */
import { describe, expect, it } from 'vitest';
import { missingRun, runFromRecord, type RunRow } from '../tables/runs.js';
import { buildTable } from '../tables/table.js';
import { paramsText } from '../tables/params.js';
import { render } from '../tables/render.js';
import { ResultRecord } from '../schemas/result.js';
import { labelsFor, makeRecord, type RecordOptions } from './tables-fixtures.js';

const run = (o: RecordOptions): RunRow => runFromRecord(makeRecord(o));
// RoBERTa-base-like: LoRA r=8 on query/value is 294,912; the classification head 592,130; 125M in all.
const lora = (seed: number, extra: Partial<RecordOptions> = {}): RunRow =>
  run({
    method: 'lora',
    rank: 8,
    dataset: 'glue/sst2',
    seed,
    trainable: 294_912 + 592_130,
    total: 125_000_000,
    head: 592_130,
    ...extra,
  });

describe('parameter convention', () => {
  it('leaves the head out by default and says so', () => {
    const m = buildTable([lora(0), lora(1)]);
    expect(m.params_convention).toBe('without-head');
    expect(m.rows[0]!.params!.trainable).toBe(294_912);
    expect(paramsText(m.rows[0]!, m.percent_digits)).toBe(`295K (${((100 * 294_912) / 125e6).toFixed(2)}%)`);
    expect(m.notes).toContain(
      'Params: trainable parameters without the task head, as the LoRA paper and its successors report them (--params with-head counts it, as PEFT does).',
    );
    expect(m.notes.join(' ')).not.toContain('do not record');
  });

  it('counts the head with paramsConvention with-head', () => {
    const m = buildTable([lora(0), lora(1)], { paramsConvention: 'with-head' });
    expect(m.rows[0]!.params!.trainable).toBe(294_912 + 592_130);
    expect(render(m, 'md')).toContain('| 887K (0.71%) |');
    expect(m.notes.some((n) => n.startsWith("Params: trainable parameters with the task head, as PEFT's"))).toBe(true);
  });

  it('names runs whose record has no head share, and keeps the field out of older records', () => {
    const old = makeRecord({ method: 'lora', rank: 8, dataset: 'glue/sst2', seed: 0, trainable: 1000 });
    expect('head_params' in old).toBe(false);
    expect(ResultRecord.parse(old)).not.toHaveProperty('head_params');
    const m = buildTable([runFromRecord(old), lora(1, { method: 'dora' })]);
    expect(m.rows.map((r) => r.params!.trainable)).toEqual([1000, 294_912]);
    expect(m.notes).toContain(
      "1 run(s) do not record their head's share (no task head, or recorded before rankflow kept it): counted as recorded.",
    );
  });

  it("subtracts the planner's head count for a run with no result yet", () => {
    const o: RecordOptions = { method: 'lora', rank: 8, dataset: 'glue/rte', seed: 0 };
    const planned = missingRun('run-x', 'sweep-test', labelsFor(o), null, {
      trainable: 5000,
      total: 90000,
      head: 1500,
    });
    const m = buildTable([planned]);
    expect(m.rows[0]!.params!.trainable).toBe(3500);
    expect(buildTable([planned], { paramsConvention: 'with-head' }).rows[0]!.params!.trainable).toBe(5000);
  });

  it('says nothing about parameters without a Params column', () => {
    const m = buildTable([lora(0)], { params: false });
    expect(m.notes.some((n) => n.startsWith('Params:'))).toBe(false);
  });
});

describe('count cache', () => {
  it('gives back the head share and the exactness a fresh count gave', async () => {
    const { CountCache } = await import('../launcher/count-cache.js');
    const { mkdtempSync } = await import('node:fs');
    const { tmpdir } = await import('node:os');
    const { join } = await import('node:path');
    const cache = new CountCache(mkdtempSync(join(tmpdir(), 'rankflow-cc-')));
    cache.put('k1', { count: { trainable: 1130, total: 90_000, head: 130 }, error: null });
    cache.put('k2', { count: { trainable: 2000, total: 90_000, exact: false }, error: null });
    expect(cache.get('k1')).toEqual({ count: { trainable: 1130, total: 90_000, head: 130 }, error: null });
    expect(cache.get('k2')).toEqual({ count: { trainable: 2000, total: 90_000, exact: false }, error: null });
  });
});
