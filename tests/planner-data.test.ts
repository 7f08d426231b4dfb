/** The planner side of real models and data: decoder classification, custom code opt-in, dataset formats. */
import { describe, expect, it } from 'vitest';
import { planRecipe, type PlanResult } from '../planning/planner.js';
import { validateRecipe } from '../planning/validate.js';
import { formatPath } from '../planning/issues.js';
import { MethodsSnapshot } from '../schemas/describe.js';
import snapshotJson from '../schemas/methods.generated.json' with { type: 'json' };

const SNAP = MethodsSnapshot.parse(snapshotJson);

function plan(raw: Record<string, unknown>): PlanResult {
  const v = validateRecipe(raw);
  if (!v.recipe) return { runs: [], issues: v.issues, warnings: [], countRequests: [], gridSize: 0 };
  return planRecipe(v.recipe, { methods: SNAP.methods, datasets: SNAP.datasets });
}

function ok(raw: Record<string, unknown>): PlanResult {
  const r = plan(raw);
  expect(r.issues.map((i) => `${formatPath(i.path)}: ${i.message}`)).toEqual([]);
  return r;
}

const BASE = { name: 't', methods: ['lora'], ranks: [4], training: { max_steps: 10 } };

describe('decoder classification', () => {
  it('the built-in decoder takes a classification head when its datasets need one', () => {
    const r = ok({ ...BASE, model: 'tiny-decoder', datasets: ['glue/sst2'] });
    expect(r.runs[0]!.spec.model.task).toBe('seq-cls');
    const lm = ok({ ...BASE, model: 'tiny-decoder', datasets: ['synthetic/causal-lm'] });
    expect(lm.runs[0]!.spec.model.task).toBe('causal-lm');
    const explicit = ok({ ...BASE, model: { name: 'tiny-decoder', task: 'seq-cls' }, datasets: ['synthetic/seq-cls'] });
    expect(explicit.runs[0]!.spec.model.task).toBe('seq-cls');
    const bad = plan({ ...BASE, model: { name: 'tiny-decoder', task: 'img-cls' }, datasets: ['synthetic/img-cls'] });
    expect(bad.issues.map((i) => i.message).join('\n')).toMatch(/causal-lm or seq-cls head, not img-cls/);
  });
});

describe('model.trust_remote_code', () => {
  it('reaches the run spec only when true, so other run ids are unchanged', () => {
    const model = { name: './my-model', task: 'causal-lm' };
    const plain = ok({ ...BASE, model, datasets: ['synthetic/causal-lm'] });
    expect('trust_remote_code' in plain.runs[0]!.spec.model).toBe(false);
    const off = ok({ ...BASE, model: { ...model, trust_remote_code: false }, datasets: ['synthetic/causal-lm'] });
    expect(off.runs[0]!.id).toBe(plain.runs[0]!.id);
    const on = ok({ ...BASE, model: { ...model, trust_remote_code: true }, datasets: ['synthetic/causal-lm'] });
    expect(on.runs[0]!.spec.model.trust_remote_code).toBe(true);
    expect(on.runs[0]!.id).not.toBe(plain.runs[0]!.id);
  });
});

describe('dataset formats and your own data', () => {
  it('your own CSV with a column mapping becomes a classification spec; absent fields stay absent', () => {
    const r = ok({
      ...BASE,
      model: { name: './roberta', task: 'seq-cls' },
      datasets: [
        {
          name: 'my-reviews',
          format: 'csv',
          files: { train: 'train.csv', validation: 'dev.csv' },
          text: ['premise', 'hypothesis'],
          label: 'label',
        },
      ],
    });
    const d = r.runs[0]!.spec.dataset;
    expect(d).toMatchObject({
      name: 'my-reviews',
      format: 'csv',
      files: { train: 'train.csv', validation: 'dev.csv' },
      columns: { text: ['premise', 'hypothesis'], label: 'label' },
      metric: 'accuracy',
      eval_split: 'validation',
    });
    expect('labels' in d || 'problem_type' in d).toBe(false);
    const bench = ok({ ...BASE, model: 'tiny-encoder', datasets: ['glue/sst2'] }).runs[0]!.spec.dataset;
    expect(['format', 'files', 'columns', 'labels', 'problem_type'].filter((k) => k in bench)).toEqual([]);
  });

  it('infers the model task and metric from the columns: regression, causal LM, a test-only split', () => {
    const reg = ok({
      ...BASE,
      model: { name: './m' },
      datasets: [
        {
          name: 'scores',
          files: { train: 'a.tsv', validation: 'b.tsv' },
          text: 's',
          label: 'y',
          problem_type: 'regression',
        },
      ],
    });
    expect(reg.runs[0]!.spec.model.task).toBe('seq-cls');
    expect(reg.runs[0]!.spec.dataset).toMatchObject({ metric: 'pearson', problem_type: 'regression' });
    const lm = ok({
      ...BASE,
      model: { name: './m' },
      datasets: [{ name: 'qa', files: { train: 'a.jsonl', test: 'b.jsonl' }, prompt: 'q', target: 'a' }],
    });
    expect(lm.runs[0]!.spec.model.task).toBe('causal-lm');
    expect(lm.runs[0]!.spec.dataset).toMatchObject({
      metric: 'perplexity',
      eval_split: 'test',
      columns: { prompt: 'q', target: 'a' },
    });
    const bad = plan({
      ...BASE,
      model: 'tiny-encoder',
      datasets: [{ name: 'qa', files: { train: 'a.jsonl' }, prompt: 'q', target: 'a' }],
    });
    expect(bad.issues.map((i) => i.message).join('\n')).toMatch(/needs a causal-lm model/);
  });

  it('a benchmark read from Parquet keeps its name and defaults; unknown formats are recipe errors', () => {
    const r = ok({ ...BASE, model: 'tiny-encoder', datasets: [{ name: 'glue/sst2', format: 'hf' }] });
    expect(r.runs[0]!.spec.dataset).toMatchObject({ name: 'glue/sst2', format: 'hf', metric: 'accuracy' });
    const auto = ok({ ...BASE, model: 'tiny-encoder', datasets: [{ name: 'glue/sst2', format: 'auto' }] });
    expect(auto.runs[0]!.id).toBe(ok({ ...BASE, model: 'tiny-encoder', datasets: ['glue/sst2'] }).runs[0]!.id);
    expect(
      plan({ ...BASE, model: 'tiny-encoder', datasets: [{ name: 'glue/sst2', format: 'xlsx' }] }).issues.length,
    ).toBeGreaterThan(0);
    // a name outside the benchmarks without files is still unknown
    expect(
      plan({ ...BASE, model: 'tiny-encoder', datasets: [{ name: 'my-reviews', text: 's', label: 'y' }] })
        .issues.map((i) => i.message)
        .join(),
    ).toMatch(/unknown dataset/);
  });

  it('the count key of your own data includes its files and columns (the label count comes from them)', async () => {
    const { countKey } = await import('../planning/planner.js');
    const mk = (label: string) =>
      ok({
        ...BASE,
        model: { name: './m', task: 'seq-cls' },
        datasets: [{ name: 'x', files: { train: 'a.csv' }, text: 's', label }],
      }).runs[0]!.spec;
    expect(countKey(mk('y'))).not.toBe(countKey(mk('z')));
  });
});

describe('MNLI matched and mismatched', () => {
  it('the evaluated split is part of what tables group by; the names glue/mnli-m and glue/mnli-mm are honoured', () => {
    const r = ok({
      ...BASE,
      model: 'tiny-encoder',
      datasets: [
        'glue/mnli',
        { name: 'glue/mnli', eval_split: 'validation_mismatched' },
        'glue/mnli-mm',
        'glue/mnli-m',
      ],
    });
    expect(r.runs.map((x) => [x.labels.dataset, x.spec.dataset.name, x.spec.dataset.eval_split])).toEqual([
      ['glue/mnli', 'glue/mnli', 'validation_matched'],
      ['glue/mnli-mm', 'glue/mnli', 'validation_mismatched'],
      ['glue/mnli-mm', 'glue/mnli-mm', 'validation_mismatched'],
      ['glue/mnli-m', 'glue/mnli-m', 'validation_matched'],
    ]);
    const other = ok({ ...BASE, model: 'tiny-encoder', datasets: [{ name: 'glue/sst2', eval_split: 'dev' }] });
    expect(other.runs[0]!.labels.dataset).toBe('glue/sst2@dev');
    const bad = plan({
      ...BASE,
      model: 'tiny-encoder',
      datasets: [{ name: 'glue/mnli-mm', eval_split: 'validation_matched' }],
    });
    expect(bad.issues.map((i) => i.message).join()).toMatch(
      /`glue\/mnli-mm` evaluates validation_mismatched, not validation_matched/,
    );
  });
});
