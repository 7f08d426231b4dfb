/** `eval_splits`: several evaluated splits per run, the best checkpoint on `eval_split` (never test). */
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
const issues = (r: PlanResult): string[] => r.issues.map((i) => `${formatPath(i.path)}: ${i.message}`);
const BASE = { name: 't', model: 'tiny-encoder', methods: ['lora'], ranks: [4], training: { max_steps: 10 } };

describe('eval_splits', () => {
  it('is absent from specs that do not ask, so run ids are unchanged', () => {
    const r = plan({ ...BASE, datasets: ['synthetic/seq-cls'] });
    expect(issues(r)).toEqual([]);
    expect('eval_splits' in r.runs[0]!.spec.dataset).toBe(false);
  });
  it('reaches the spec from the recipe, dataset_settings or the entry; the first is the selection split', () => {
    const top = plan({ ...BASE, eval_splits: ['validation', 'test'], datasets: ['synthetic/seq-cls', 'glue/sst2'] });
    expect(issues(top)).toEqual([]);
    expect(top.runs.map((x) => [x.spec.dataset.eval_split, x.spec.dataset.eval_splits])).toEqual([
      ['validation', ['validation', 'test']],
      ['validation', ['validation', 'test']],
    ]);
    const entry = plan({
      ...BASE,
      datasets: [{ name: 'synthetic/seq-cls', eval_splits: ['validation', 'test', 'test'] }],
    });
    expect(entry.runs[0]!.spec.dataset.eval_splits).toEqual(['validation', 'test']);
    const st = plan({
      ...BASE,
      datasets: ['synthetic/seq-cls'],
      dataset_settings: { 'synthetic/seq-cls': { eval_splits: ['validation', 'test'] } },
    });
    expect(st.runs[0]!.spec.dataset.eval_splits).toEqual(['validation', 'test']);
    const plain = plan({ ...BASE, datasets: ['synthetic/seq-cls'] });
    expect(entry.runs[0]!.id).not.toBe(plain.runs[0]!.id);
  });
  it('refuses a best-checkpoint split that is the reported one, or not evaluated', () => {
    const t = plan({ ...BASE, datasets: [{ name: 'synthetic/seq-cls', eval_splits: ['test', 'validation'] }] });
    expect(issues(t)).toEqual([
      expect.stringMatching(/^datasets\[0\]\.eval_splits: eval_split is `test` .*chosen on the reported split/),
    ]);
    const missing = plan({
      ...BASE,
      eval_splits: ['test'],
      datasets: [{ name: 'synthetic/seq-cls', eval_split: 'validation' }],
    });
    expect(issues(missing)).toEqual([
      expect.stringMatching(/eval_split `validation` .* is not among eval_splits \[test\]/),
    ]);
  });
});
