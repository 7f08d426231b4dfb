/**
 * The planner against the real Python runtime (no oracle): the committed method-schema snapshot is current,
 * `count --specs` fills the plan's parameter counts, and budget matching picks from real counts.
 * These need `runtime-native/.venv` (built by scripts/setup-python.sh, which the test command runs first);
 * without it they are skipped, since nothing here can be checked without the runtime.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { fractionOfFull, planRecipeFile } from '../cli/recipe-io.js';
import { countSpecs, describeRuntime } from '../launcher/runtime-calls.js';
import { runtimeAvailable } from '../launcher/spawn.js';
import { countKey } from '../planning/planner.js';
import { oracleCount, oracleCountFn } from './planner-oracle.js';
import { snapshotText, SNAPSHOT_PATH } from '../launcher/snapshot.js';

const haveRuntime = runtimeAvailable();
const ROOT = join(import.meta.dirname, '..');
const tmp = mkdtempSync(join(tmpdir(), 'rankflow-rt-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe.skipIf(!haveRuntime)('planner with the real runtime', () => {
  it('schemas/methods.generated.json matches `describe` of the current runtime', async () => {
    const fresh = snapshotText(await describeRuntime());
    const committed = readFileSync(SNAPSHOT_PATH, 'utf8');
    expect(committed, 'stale snapshot: run `npx tsx scripts/gen-method-schemas.ts` and commit it').toBe(fresh);
  }, 120_000);

  it('plan counts every quickstart run on the meta device; counts follow the LoRA formula', async () => {
    const plan = await planRecipeFile(join(ROOT, 'recipes', 'quickstart.yaml'), { count: 'always' });
    expect(plan.warnings).toEqual([]);
    expect(plan.runs.every((r) => r.params !== null)).toBe(true);
    const p = (m: string, rank: number | null) =>
      plan.runs.find((r) => r.labels.method === m && r.labels.rank === rank)!;
    // tiny-encoder: 2 layers x (query, value), each 64x64: LoRA adds r*(64+64) per matrix
    expect(p('lora', 8).params!.trainable - p('lora', 4).params!.trainable).toBe(4 * 128 * 4);
    expect(p('full', null).params!.trainable).toBe(p('full', null).params!.total);
    expect(fractionOfFull(p('full', null), plan.counts)).toBe(1);
    for (const r of plan.runs) expect(fractionOfFull(r, plan.counts)).toBeLessThanOrEqual(1);
  }, 180_000);

  it('the test oracle counts linear-probe as the runtime does (one linear map on the features)', async () => {
    const plan = await planRecipeFile(join(ROOT, 'recipes', 'vtab-vit-b16.yaml'), { count: 'never' });
    const probes = plan.runs
      .filter(
        (r) =>
          r.labels.method === 'linear-probe' && ['vtab/cifar', 'vtab/sun397', 'vtab/kitti'].includes(r.labels.dataset),
      )
      .map((r) => ({ ...r.spec, model: { ...r.spec.model, random_init: true } }));
    expect(probes).toHaveLength(3);
    const real = await countSpecs(probes);
    expect(real.map((c) => c!.trainable)).toEqual(probes.map((s) => oracleCount(s)!.trainable));
    expect(real[0]!.trainable).toBe(768 * 100 + 100); // CIFAR-100: 100 classes
  }, 180_000);

  it('methods that move rank: the oracle counts the start and the final pattern as the runtime does', async () => {
    const plan = await planRecipeFile(join(ROOT, 'recipes', 'rank-allocation.yaml'), { countFn: oracleCountFn() });
    const specs = ['adalora', 'increlora', 'triadaptlora', 'diffora'].map((m) => {
      const r = plan.runs.find((x) => x.labels.method === m && x.labels.dataset === 'glue/rte')!;
      return {
        ...r.spec,
        model: { ...r.spec.model, random_init: true },
        training: { ...r.spec.training, train_head: false },
      };
    });
    const real = await countSpecs(specs);
    for (const [i, s] of specs.entries()) {
      const want = oracleCount(s)!;
      expect([real[i]!.trainable, real[i]!.final], s.method.name).toEqual([want.trainable, want.final]);
      expect(real[i]!.final).not.toBe(real[i]!.trainable); // what budget matching compares differs
    }
  }, 180_000);

  it('count --specs: a spec the runtime refuses gets null and its error, the others their counts', async () => {
    const plan = await planRecipeFile(join(ROOT, 'recipes', 'quickstart.yaml'), { count: 'never' });
    const good = plan.runs[0]!.spec;
    const bad = { ...good, method: { ...good.method, name: 'no-such-method' } };
    const errors: string[] = [];
    const res = await countSpecs([good, bad, { ...good, method: { ...good.method, rank: 8 } }], undefined, errors);
    expect(res[0]!.trainable).toBeGreaterThan(0);
    expect(res[1]).toBeNull();
    expect(res[2]!.trainable - res[0]!.trainable).toBe(4 * 128 * 4);
    expect(errors).toHaveLength(1);
    expect(errors[0]).toMatch(/^no-such-method r=4: .*unknown method/);
  }, 180_000);

  it('budget matching picks the candidate whose real count is closest to LoRA at the budget rank', async () => {
    const f = join(tmp, 'budget.yaml');
    writeFileSync(
      f,
      `name: budget
model: tiny-encoder
datasets: [synthetic/seq-cls]
methods:
  - lora
  - name: randlora
    ranks: [2, 4, 8, 16, 32]
  - name: vera
    ranks: [4, 64, 256]
  - full
budget: {match: lora, rank: 4}
training: {max_steps: 5}
`,
    );
    const plan = await planRecipeFile(f, { count: 'always' });
    const lora = plan.runs.find((r) => r.labels.method === 'lora')!;
    expect(lora.labels.rank).toBe(4);
    const rl = plan.runs.find((r) => r.labels.method === 'randlora')!;
    const candidates = [2, 4, 8, 16, 32].map((rank) => ({ ...rl.spec, method: { ...rl.spec.method, rank } }));
    const counts = await countSpecs(candidates);
    const ref = lora.params!.trainable;
    const dists = counts.map((c) => Math.abs(c!.trainable - ref));
    expect(rl.labels.rank).toBe([2, 4, 8, 16, 32][dists.indexOf(Math.min(...dists))]);
    expect(plan.counts[countKey(rl.spec)]!.trainable).toBe(rl.params!.trainable);
    expect(plan.runs.map((r) => r.labels.method)).toEqual(['lora', 'randlora', 'vera', 'full']);
  }, 240_000);

  it('LoRD with ranks from the spectrum: the planned count is marked estimated; budget matching refuses it', async () => {
    const f = join(tmp, 'lord-energy.yaml');
    const body = (budget: string) => `name: lord-energy
model: tiny-encoder
datasets: [synthetic/seq-cls]
methods:
  - ${budget ? 'lora' : '{name: lora, ranks: [4]}'}
  - {name: lord, ranks: [32], options: {rank_rule: energy, energy: 0.5}}
  - {name: lord, ranks: [4], options: {rank_rule: fixed}}
training: {max_steps: 5}
${budget}`;
    writeFileSync(f, body(''));
    const plan = await planRecipeFile(f, { count: 'always' });
    const [lora, energy, fixed] = plan.runs;
    expect(energy!.params).toMatchObject({ estimated: true });
    expect(energy!.params!.trainable).toBeGreaterThanOrEqual(0);
    expect(fixed!.params!.estimated).toBeUndefined();
    expect(lora!.params!.estimated).toBeUndefined();
    writeFileSync(f, body('budget: {match: lora, rank: 4}'));
    await expect(planRecipeFile(f, { count: 'always' })).rejects.toThrow(
      /methods\[1\]\.name.*budget matching needs exact counts, but `lord` chooses its ranks from the weights/,
    );
  }, 240_000);

  it('prompt methods and LoRA-GGPO plan from a recipe: depth-independent budget matching, DePT lr groups', async () => {
    const file = join(tmp, 'prompts.yaml');
    writeFileSync(
      file,
      [
        'name: prompts',
        'model: tiny-encoder',
        'datasets: [{name: synthetic/seq-cls, max_length: 64}]',
        'methods:',
        '  - lora',
        '  - {name: prompt-tuning, match_by: {option: num_virtual_tokens, values: [8, 16, 32, 64]}}',
        '  - {name: dept, options: {num_virtual_tokens: 8}, training: {lr_groups: {prompt: 0.3, lora: 0.001}}}',
        '  - {name: lora-ggpo, options: {variant: [ggpo, mgpo]}}',
        'budget: {match: lora, rank: 4}',
        'training: {max_steps: 10}',
        '',
      ].join('\n'),
    );
    const plan = await planRecipeFile(file, { count: 'always' });
    const by = (m: string) => plan.runs.filter((r) => r.labels.method === m);
    const lora = by('lora')[0]!.params!.trainable;
    const pt = by('prompt-tuning')[0]!;
    expect(pt.spec.method.options.num_virtual_tokens).toBe(32); // 32 x 64 = LoRA r=4 on 2 layers x (query, value)
    expect(pt.params!.trainable).toBe(lora);
    expect(by('dept')[0]!.spec.training.lr_groups).toEqual({ prompt: 0.3, lora: 0.001 });
    expect(by('lora-ggpo').map((r) => r.spec.method.options.variant)).toEqual(['ggpo', 'mgpo']);
    expect(by('lora-ggpo').every((r) => r.params!.trainable === lora)).toBe(true);
  }, 240_000);
});
