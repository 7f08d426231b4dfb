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
