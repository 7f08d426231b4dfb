/** Unit tests of the pure planner: ids, canonical JSON, every recipe feature and every error class. */
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { canonicalJson } from '../planning/canonical.js';
import { countKey, planRecipe, runId, sweepId, type CountTable, type PlanResult } from '../planning/planner.js';
import { Sha256, sha256Hex } from '../planning/hash.js';
import { closest } from '../planning/suggest.js';
import { validateRecipe } from '../planning/validate.js';
import { formatPath } from '../planning/issues.js';
import { MethodsSnapshot } from '../schemas/describe.js';
import { PlannedRun } from '../schemas/runspec.js';
import snapshotJson from '../schemas/methods.generated.json' with { type: 'json' };
import { oracleCount } from './planner-oracle.js';

const SNAP = MethodsSnapshot.parse(snapshotJson);

const BASE = {
  name: 't',
  model: 'tiny-encoder',
  datasets: ['synthetic/seq-cls'],
  methods: ['lora'],
  ranks: [4],
  training: { max_steps: 10 },
};

function plan(raw: Record<string, unknown>, counts?: CountTable, maxRuns?: number): PlanResult {
  const v = validateRecipe(raw);
  if (!v.recipe) {
    const more = v.partial ? planRecipe(v.partial, { methods: SNAP.methods, datasets: SNAP.datasets }).issues : [];
    return { runs: [], issues: [...v.issues, ...more], warnings: [], countRequests: [], gridSize: 0 };
  }
  return planRecipe(v.recipe, { methods: SNAP.methods, datasets: SNAP.datasets, counts, maxRuns });
}

function ok(raw: Record<string, unknown>, counts?: CountTable): PlanResult {
  const r = plan(raw, counts);
  expect(r.issues.map((i) => `${formatPath(i.path)}: ${i.message}`)).toEqual([]);
  return r;
}

function errors(raw: Record<string, unknown>): string[] {
  return plan(raw).issues.map((i) => `${formatPath(i.path)}: ${i.message}${i.hint ? ` — ${i.hint}` : ''}`);
}

/** Plan with the oracle filling counts, as the CLI does with the runtime. */
function planWithOracle(raw: Record<string, unknown>): { result: PlanResult; counts: CountTable; rounds: number } {
  const counts: CountTable = {};
  let rounds = 0;
  let r = plan(raw, counts);
  while (r.issues.length === 0 && r.countRequests.length > 0 && rounds < 3) {
    rounds++;
    for (const s of r.countRequests) counts[countKey(s)] = oracleCount(s);
    r = plan(raw, counts);
  }
  return { result: r, counts, rounds };
}

describe('sha256 (pure JS)', () => {
  it('matches node:crypto on ASCII, multi-block, and non-ASCII input', () => {
    const inputs = [
      '',
      'abc',
      'a'.repeat(55),
      'a'.repeat(56),
      'a'.repeat(64),
      'a'.repeat(1000),
      'α=√r · 😀 日本',
      '\ud800x',
    ];
    for (const s of inputs) {
      const want = createHash('sha256')
        .update(Buffer.from(new TextEncoder().encode(s)))
        .digest('hex');
      expect(sha256Hex(s)).toBe(want);
    }
    expect(sha256Hex('abc')).toBe('ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
  });

  it('clone() continues from a shared prefix', () => {
    const p = new Sha256().update('{"prefix":'.repeat(20));
    const a = p.clone().update('1}').hex();
    const b = p.clone().update('2}').hex();
    expect(a).toBe(sha256Hex('{"prefix":'.repeat(20) + '1}'));
    expect(b).toBe(sha256Hex('{"prefix":'.repeat(20) + '2}'));
  });
});

describe('canonical JSON', () => {
  it('sorts keys at every level and normalises numbers', () => {
    expect(canonicalJson({ b: 1, a: { d: [3, { z: 1, y: 2 }], c: -0 } })).toBe(
      '{"a":{"c":0,"d":[3,{"y":2,"z":1}]},"b":1}',
    );
    expect(canonicalJson({ x: 1.0, y: 1e-4 })).toBe(canonicalJson({ y: 0.0001, x: 1 }));
  });
  it('refuses values without a canonical form', () => {
    expect(() => canonicalJson({ a: NaN })).toThrow(/non-finite/);
    expect(() => canonicalJson({ a: undefined })).toThrow(/undefined/);
  });
});

describe('run ids', () => {
  it('are the hash of the canonical resolved spec and validate against PlannedRun', () => {
    const r = ok({ ...BASE, seeds: [0, 1] });
    expect(r.runs).toHaveLength(2);
    for (const run of r.runs) {
      expect(PlannedRun.safeParse(run).success).toBe(true);
      expect(run.id).toBe(runId(run.spec));
      expect(run.id).toBe('run-' + sha256Hex(canonicalJson(run.spec)).slice(0, 32));
    }
  });

  it('are the same for the same run planned from two different recipes', () => {
    const a = ok({ ...BASE, methods: ['lora', 'full'], seeds: [0, 1], training: { max_steps: 10, lr: 0.001 } });
    const b = ok({
      name: 'other',
      methods: [{ name: 'lora', options: { alpha: 8.0 } }],
      datasets: [{ name: 'synthetic/seq-cls', metric: 'accuracy' }],
      model: { name: 'tiny-encoder', source: 'builtin' },
      seeds: 1,
      ranks: 4,
      training: { lr: 1e-3, epochs: 5, max_steps: undefined, warmup_ratio: 0 },
      overrides: [{ when: { method: 'lora' }, training: { max_steps: 10 } }],
    });
    expect(b.runs).toHaveLength(1);
    const shared = a.runs.find((r) => r.labels.method === 'lora' && r.labels.seed === 1)!;
    expect(b.runs[0]!.id).toBe(shared.id);
  });

  it('change when any resolved field changes, and not when a default is written out', () => {
    const base = ok(BASE).runs[0]!.id;
    expect(ok({ ...BASE, training: { max_steps: 10, lr: 1e-4 } }).runs[0]!.id).toBe(base); // 1e-4 is the default lr
    expect(ok({ ...BASE, training: { max_steps: 11 } }).runs[0]!.id).not.toBe(base);
    expect(ok({ ...BASE, device: 'cpu' }).runs[0]!.id).not.toBe(base);
    expect(ok({ ...BASE, methods: [{ name: 'lora', options: { dropout: 0.1 } }] }).runs[0]!.id).not.toBe(base);
  });

  it('editing one axis value keeps the ids of the runs it does not touch', () => {
    const before = ok({ ...BASE, ranks: [4, 8], seeds: [0, 1], training: { max_steps: 10, lr: [1e-3, 1e-2] } }).runs;
    const after = ok({ ...BASE, ranks: [4, 8], seeds: [0, 1, 2], training: { max_steps: 10, lr: [1e-3, 3e-3] } }).runs;
    const kept = before.filter((r) => r.spec.training.lr === 1e-3).map((r) => r.id);
    const afterIds = new Set(after.map((r) => r.id));
    expect(kept).toHaveLength(4);
    for (const id of kept) expect(afterIds.has(id)).toBe(true);
    expect(after.filter((r) => !before.some((b) => b.id === r.id))).toHaveLength(12 - 4);
  });

  it('sweep id hashes the recipe name and the sorted run ids', () => {
    const r = ok({ ...BASE, seeds: [0, 1, 2] });
    const ids = r.runs.map((x) => x.id);
    expect(sweepId('t', ids)).toBe(sweepId('t', [...ids].reverse()));
    expect(sweepId('t', ids)).not.toBe(sweepId('u', ids));
    expect(sweepId('t', ids)).toMatch(/^sweep-[0-9a-f]{24}$/);
  });
});

describe('defaults and resolution', () => {
  it('fills every field of the run spec explicitly', () => {
    const s = ok(BASE).runs[0]!.spec;
    expect(s.model).toEqual({
      name: 'tiny-encoder',
      source: 'builtin',
      task: 'seq-cls',
      config: {},
      random_init: false,
    });
    expect(s.dataset.metric).toBe('accuracy');
    expect(s.dataset.train_size).toBe(512);
    expect(s.method.options).toEqual({ alpha: 8, dropout: 0, use_rslora: false });
    expect(s.training.max_steps).toBe(10);
    expect(s.training.epochs).toBeNull(); // max_steps clears the default epochs
    expect(s.training.eval_batch_size).toBe(s.training.batch_size);
    expect(s.training.train_head).toBe(true);
    expect(s.device).toBe('auto');
    // options with a non-null default are written out; a null default means "computed by the runtime"
    const dsOpts = (SNAP.datasets.synthetic as { options: Record<string, { default: unknown }> }).options;
    expect(Object.keys(s.dataset.options).sort()).toEqual(
      Object.keys(dsOpts)
        .filter((k) => dsOpts[k]!.default !== null)
        .sort(),
    );
    const rl = ok({ ...BASE, methods: ['randlora'] }).runs[0]!.spec.method.options;
    expect(rl).not.toHaveProperty('alpha'); // RandLoRA's α defaults to 20·r inside the runtime
    expect(rl).toHaveProperty('basis', 'dense');
  });

  it('per-dataset defaults: GLUE metric and split, VTAB sizes, causal-lm head', () => {
    const g = ok({
      ...BASE,
      model: { name: 'FacebookAI/roberta-base' },
      datasets: ['glue/cola', 'glue/mnli', 'glue/stsb'],
    }).runs;
    expect(g.map((r) => [r.spec.dataset.metric, r.spec.dataset.eval_split])).toEqual([
      ['mcc', 'validation'],
      ['accuracy', 'validation_matched'],
      ['pearson', 'validation'],
    ]);
    expect(g[0]!.spec.model).toMatchObject({ source: 'hf', task: 'seq-cls' }); // task inferred from the datasets
    const v = ok({ ...BASE, model: 'tiny-vit', datasets: ['vtab/cifar'] }).runs[0]!.spec;
    expect([v.dataset.train_size, v.dataset.eval_split, v.dataset.metric]).toEqual([1000, 'test', 'top1']);
    const d = ok({ ...BASE, model: 'tiny-decoder', datasets: ['gsm8k'] }).runs[0]!.spec;
    expect([d.training.train_head, d.dataset.metric]).toEqual([false, 'exact_match']);
  });

  it('methods without a rank get rank null and are not multiplied by the rank axis', () => {
    const r = ok({ ...BASE, methods: ['lora', 'full', 'linear-probe'], ranks: [4, 8] });
    expect(r.runs.map((x) => [x.labels.method, x.labels.rank])).toEqual([
      ['lora', 4],
      ['lora', 8],
      ['full', null],
      ['linear-probe', null],
    ]);
  });
});

describe('sweep axes', () => {
  it('any training field given as a list is a grid axis; order is entries, datasets, ranks, grid, seeds', () => {
    const r = ok({
      ...BASE,
      ranks: [4, 8],
      seeds: [0, 1],
      training: { max_steps: 10, lr: [1e-3, 1e-2], batch_size: [8, 16] },
    });
    expect(r.runs).toHaveLength(2 * 2 * 2 * 2);
    expect(r.gridSize).toBe(16);
    expect(
      r.runs.slice(0, 4).map((x) => [x.labels.rank, x.spec.training.lr, x.spec.training.batch_size, x.labels.seed]),
    ).toEqual([
      [4, 1e-3, 8, 0],
      [4, 1e-3, 8, 1],
      [4, 1e-3, 16, 0],
      [4, 1e-3, 16, 1],
    ]);
    expect(r.runs[0]!.labels.setting).toBe('lr=0.001 batch_size=8 eval_batch_size=8');
  });

  it('zip groups vary together instead of forming a product', () => {
    const r = ok({ ...BASE, zip: [{ lr: [1e-3, 3e-3, 1e-2], warmup_ratio: [0, 0.1, 0.2] }] });
    expect(r.runs.map((x) => [x.spec.training.lr, x.spec.training.warmup_ratio])).toEqual([
      [1e-3, 0],
      [3e-3, 0.1],
      [1e-2, 0.2],
    ]);
    const withRank = ok({ ...BASE, zip: [{ rank: [4, 16], lr: [1e-2, 2.5e-3] }] });
    expect(withRank.runs.map((x) => [x.labels.rank, x.spec.training.lr])).toEqual([
      [4, 1e-2],
      [16, 2.5e-3],
    ]);
  });

  it('method options given as a list are a grid; list-typed options need a list of lists', () => {
    const r = ok({ ...BASE, methods: [{ name: 'lora', options: { alpha: [8, 16], use_rslora: true } }] });
    expect(r.runs.map((x) => x.spec.method.options.alpha)).toEqual([8, 16]);
    expect(r.runs.map((x) => x.labels.setting)).toEqual(['alpha=8', 'alpha=16']);
  });

  it('per-method and per-dataset settings, then `overrides` with when: method / dataset glob / rank', () => {
    const r = ok({
      ...BASE,
      datasets: ['synthetic/seq-cls', { name: 'synthetic/regression', training: { lr: 3e-3 } }],
      methods: ['lora', { name: 'vera', training: { lr: 2e-2 } }],
      ranks: [4, 8],
      overrides: [
        { when: { method: 'vera', dataset: 'synthetic/reg*' }, training: { lr: 5e-2 } },
        { when: { method: 'lora', rank: 8 }, options: { alpha: 16 } },
      ],
    });
    const get = (m: string, d: string, rank: number) =>
      r.runs.find((x) => x.labels.method === m && x.labels.dataset === d && x.labels.rank === rank)!;
    expect(get('lora', 'synthetic/seq-cls', 4).spec.training.lr).toBe(1e-4);
    expect(get('lora', 'synthetic/regression', 4).spec.training.lr).toBe(3e-3);
    expect(get('vera', 'synthetic/seq-cls', 4).spec.training.lr).toBe(2e-2);
    expect(get('vera', 'synthetic/regression', 4).spec.training.lr).toBe(5e-2);
    expect(get('lora', 'synthetic/seq-cls', 4).spec.method.options.alpha).toBe(8);
    expect(get('lora', 'synthetic/seq-cls', 8).spec.method.options.alpha).toBe(16);
    // a per-dataset lr does not split table rows: the setting only names what varies within a dataset
    expect(get('lora', 'synthetic/regression', 4).labels.setting).toBe('alpha=8');
  });

  it('dataset_settings and method_settings apply beneath the entries', () => {
    const r = ok({
      ...BASE,
      dataset_settings: { 'synthetic/seq-cls': { max_length: 48, training: { lr: 2e-3 } } },
      method_settings: { lora: { options: { alpha: 32 }, targets: ['query'] } },
      methods: ['lora', { name: 'lora', label: 'own', options: { alpha: 4 } }],
    });
    expect(
      r.runs.map((x) => [
        x.spec.dataset.max_length,
        x.spec.training.lr,
        x.spec.method.options.alpha,
        x.spec.method.targets,
      ]),
    ).toEqual([
      [48, 2e-3, 32, ['query']],
      [48, 2e-3, 4, ['query']],
    ]);
    expect(r.runs[1]!.labels.setting).toBe('own');
  });

  it('exclude drops runs, include adds runs outside the grid, duplicates collapse to one id', () => {
    const r = ok({
      ...BASE,
      methods: ['lora', 'full', 'lora'],
      ranks: [4, 8],
      seeds: [0, 1],
      exclude: [
        { method: 'lora', rank: 8, seed: 1 },
        { method: 'full', training: { lr: 1e-4 }, seed: 0 },
      ],
      include: [{ name: 'lora', ranks: [64], seeds: [0], training: { lr: 1e-3 } }],
    });
    const keys = r.runs.map((x) => `${x.labels.method}:${x.labels.rank}:${x.labels.seed}`);
    expect(keys).toEqual(['lora:4:0', 'lora:4:1', 'lora:8:0', 'full:null:1', 'lora:64:0']);
    expect(new Set(r.runs.map((x) => x.id)).size).toBe(r.runs.length);
    expect(r.runs[4]!.spec.training.lr).toBe(1e-3);
  });

  it('warns about exclude rules and overrides that select nothing', () => {
    const r = ok({ ...BASE, exclude: [{ seed: 7 }], overrides: [{ when: { rank: 99 }, training: { lr: 1 } }] });
    expect(r.warnings.map((w) => formatPath(w.path))).toEqual(['exclude[0]', 'overrides[0].when']);
  });

  it('lr_groups reach only the methods that declare the group; missing ones default to lr', () => {
    const r = ok({
      ...BASE,
      methods: ['lora', 'plp'],
      training: { max_steps: 10, lr: 1e-3, lr_groups: { up: [1e-4, 1e-5] } },
    });
    const lora = r.runs.filter((x) => x.labels.method === 'lora');
    const plp = r.runs.filter((x) => x.labels.method === 'plp');
    expect(lora).toHaveLength(1);
    expect(lora[0]!.spec.training.lr_groups).toEqual({});
    expect(plp.map((x) => x.spec.training.lr_groups)).toEqual([{ up: 1e-4 }, { up: 1e-5 }]);
    expect(plp[0]!.labels.setting).toBe('lr.up=1e-4');
    const d = ok({ ...BASE, methods: ['plp'], training: { max_steps: 10, lr: 2e-3 } });
    expect(d.runs[0]!.spec.training.lr_groups).toEqual({ up: 2e-3 });
  });

  it('max_steps and epochs replace each other across layers', () => {
    const r = ok({ ...BASE, training: { epochs: 2 }, methods: ['lora', { name: 'full', training: { max_steps: 7 } }] });
    expect(r.runs.map((x) => [x.spec.training.epochs, x.spec.training.max_steps])).toEqual([
      [2, null],
      [null, 7],
    ]);
  });
});

describe('parameter-budget matching', () => {
  const recipe = {
    ...BASE,
    model: { name: 'FacebookAI/roberta-base', task: 'seq-cls' },
    datasets: ['glue/sst2', 'glue/rte'],
    ranks: undefined,
    methods: [
      'lora',
      'vera',
      'randlora',
      'loldu',
      { name: 'salt', ranks: [8], match_by: { option: 'r_lora', values: [1, 2, 4, 8, 16] } },
      'full',
    ],
    budget: { match: 'lora', rank: 8 },
  };

  it('asks for the counts it needs, then picks the setting closest to the reference count', () => {
    const first = plan(recipe);
    expect(first.issues).toEqual([]);
    expect(first.runs).toEqual([]);
    expect(first.countRequests.length).toBeGreaterThan(10);
    const { result, counts, rounds } = planWithOracle(recipe);
    expect(rounds).toBe(1);
    expect(result.issues).toEqual([]);
    const ref = oracleCount(result.runs.find((r) => r.labels.method === 'lora')!.spec)!.trainable; // 294,912
    const chosen = (m: string) => result.runs.filter((r) => r.labels.method === m && r.labels.dataset === 'glue/sst2');
    // RandLoRA's count falls as the rank grows: the ladder value closest to the budget wins
    const rl = chosen('randlora')[0]!;
    const ladder = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512].map((r) => ({
      r,
      c: oracleCount({ ...rl.spec, method: { ...rl.spec.method, rank: r } })!.trainable,
    }));
    const best = ladder.reduce((a, b) => (Math.abs(b.c - ref) < Math.abs(a.c - ref) ? b : a));
    expect(rl.labels.rank).toBe(best.r);
    expect(rl.params!.trainable).toBe(best.c);
    // LoLDU trains r numbers per layer: the largest ladder rank that fits (512; 1024 > 768 cannot be counted)
    expect(chosen('loldu')[0]!.labels.rank).toBe(512);
    // SALT is matched through its r_lora option at rank 8
    const salt = chosen('salt')[0]!;
    expect(salt.labels.rank).toBe(8);
    expect(salt.spec.method.options.r_lora).toBe(8); // 2·8 + 2·8·760 = 12,176 per matrix vs LoRA's 12,288
    expect(salt.labels.tags).toContain('budget:lora@8');
    // full fine-tuning has no knob and runs as configured
    expect(chosen('full')[0]!.labels.rank).toBeNull();
    expect(Object.keys(counts).length).toBe(first.countRequests.length);
  });

  it('compares the final count of methods that move rank during training (AdaLoRA: the kept pattern)', () => {
    const r = { ...recipe, datasets: ['glue/sst2'], methods: ['lora', { name: 'adalora', ranks: [4, 8, 16] }] };
    const first = plan(r);
    const counts: CountTable = {};
    for (const s of first.countRequests) {
      const rank = s.method.rank!;
      // AdaLoRA creates init_r = 1.5·rank triplets but keeps `rank` of them: `final` is what the budget compares
      counts[countKey(s)] =
        s.method.name === 'lora'
          ? { trainable: 1000 * rank, total: 10 ** 6 }
          : { trainable: 1500 * rank + 10, total: 10 ** 6, final: 1000 * rank + 10 };
    }
    const chosen = ok(r, counts).runs.filter((x) => x.labels.method === 'adalora');
    expect(chosen.map((x) => x.labels.rank)).toEqual([8]); // by `trainable` alone it would have picked 4
  });

  it('several budget levels give one setting per level', () => {
    const { result } = planWithOracle({
      ...recipe,
      methods: ['lora', 'dora'],
      datasets: ['glue/sst2'],
      budget: { match: 'lora', rank: [4, 16] },
    });
    expect(result.runs.map((r) => [r.labels.method, r.labels.rank])).toEqual([
      ['lora', 4],
      ['lora', 16],
      ['dora', 4],
      ['dora', 16],
    ]);
  });

  it('refuses top-level ranks with a budget, and an unknown reference method', () => {
    expect(errors({ ...recipe, ranks: [8] })).toEqual([
      "ranks: `ranks` is not used with `budget` — budget.rank sets the reference rank; a method's own `ranks` lists its candidates",
    ]);
    expect(errors({ ...recipe, budget: { match: 'lorra', rank: 8 } })).toEqual([
      'budget.match: unknown method `lorra` — did you mean `lora`?',
    ]);
    expect(errors({ ...recipe, budget: { match: 'full', rank: 8 } })[0]).toMatch(/has no rank to set a budget with/);
  });
});

describe('errors', () => {
  it('unknown method and option names come with a did-you-mean', () => {
    expect(errors({ ...BASE, methods: ['randlroa', { name: 'lora', options: { alpah: 1 } }] })).toEqual([
      'methods[0].name: unknown method `randlroa` — did you mean `randlora`?',
      'methods[1].options.alpah: unknown option `alpah` for method `lora` — did you mean `alpha`?',
    ]);
  });

  it('unknown keys and planner problems are reported together', () => {
    expect(errors({ ...BASE, methods: ['lorra'], seed: [1] })).toEqual([
      'seed: unknown key `seed` — did you mean `seeds`?',
      'methods[0].name: unknown method `lorra` — did you mean `lora`?',
    ]);
  });

  it('unknown keys anywhere are errors, all collected in one pass', () => {
    const e = errors({
      ...BASE,
      rnaks: [4],
      model: { name: 'tiny-encoder', tsak: 'seq-cls' },
      training: { lr: 1e-3, optimzer: 'adamw' },
    });
    expect(e).toEqual([
      'model.tsak: unknown key `tsak` — did you mean `task`?',
      'training.optimzer: unknown key `optimzer` — did you mean `optimizer`?',
      'rnaks: unknown key `rnaks` — did you mean `ranks`?',
    ]);
  });

  it('types, ranges and enums say what was expected', () => {
    const e = errors({
      ...BASE,
      ranks: [4, 0],
      training: { lr: 'fast', schedule: 'cosin', warmup_ratio: 2 },
      seeds: -1,
    });
    expect(e).toContain('ranks[1]: expected a number > 0, got number `0`');
    expect(e).toContain('training.lr: expected a number, got `fast`');
    expect(e).toContain(
      'training.schedule: expected one of `constant`, `linear`, `cosine`, got `cosin` — did you mean `cosine`?',
    );
    expect(e).toContain('training.warmup_ratio: expected a number <= 1, got number `2`');
    expect(e).toContain('seeds: expected a number >= 0, got number `-1`');
  });

  it('method option values are checked against the method schema', () => {
    const e = errors({
      ...BASE,
      methods: [
        { name: 'lora', options: { dropout: 1.5, use_rslora: 'yes' } },
        { name: 'randlora', options: { basis: 'sparce' } },
      ],
    });
    expect(e).toEqual([
      'methods[0].options.dropout: expected a value <= 1, got 1.5 — dropout probability on the LoRA path input',
      expect.stringMatching(/^methods\[0\]\.options\.use_rslora: expected true or false, got `yes`/),
      'methods[1].options.basis: expected one of `dense`, `sparse`, `very_sparse`, got `sparce` — did you mean `sparse`?',
    ]);
  });

  it('datasets: unknown names, a head that does not fit, unknown metrics and options', () => {
    expect(errors({ ...BASE, datasets: ['glue/sst3'] })).toEqual([
      'datasets[0].name: unknown dataset `glue/sst3` — did you mean `glue/sst2`?',
    ]);
    expect(errors({ ...BASE, datasets: ['sst2'] })).toEqual([
      'datasets[0].name: unknown dataset `sst2` — did you mean `glue/sst2`?',
    ]);
    expect(errors({ ...BASE, datasets: ['vtab/cifar'] })[0]).toMatch(
      /needs a img-cls model, but `tiny-encoder` is seq-cls/,
    );
    expect(errors({ ...BASE, datasets: [{ name: 'glue/cola', metric: 'mcc2' }] })).toEqual([
      'datasets[0].metric: `glue/cola` has no metric `mcc2` — did you mean `mcc`?',
    ]);
    expect(errors({ ...BASE, datasets: [{ name: 'glue/cola', options: { subsetseed: 1 } }] })).toEqual([
      'datasets[0].options.subsetseed: unknown option `subsetseed` for dataset `glue/cola` — did you mean `subset_seed`?',
    ]);
  });

  it('models: unknown built-ins and a missing task head', () => {
    expect(errors({ ...BASE, model: { name: 'tiny-encodr', source: 'builtin' } })).toEqual([
      'model.name: unknown built-in model `tiny-encodr` — did you mean `tiny-encoder`?',
    ]);
    expect(errors({ ...BASE, model: 'my/model', datasets: ['glue/sst2', 'gsm8k'] })[0]).toMatch(
      /^model\.task: missing the task head/,
    );
  });

  it('a rank-needing method without ranks, ranks on a method without one', () => {
    expect(errors({ ...BASE, ranks: undefined })).toEqual([
      'methods[0].name: method `lora` needs a rank, and neither the recipe nor the entry gives `ranks` — add `ranks: [8]` to the recipe or to this entry',
    ]);
    expect(errors({ ...BASE, methods: [{ name: 'full', ranks: [4] }] })).toEqual([
      'methods[0].ranks: method `full` takes no rank — remove `ranks` for it',
    ]);
  });

  it('zip groups: unequal lengths, unknown fields, a field that is also a grid axis', () => {
    expect(errors({ ...BASE, zip: [{ lr: [1, 2], warmup_ratio: [0] }] })[0]).toMatch(
      /^zip\[0\]: zip lists must have the same length; got lr: 2, warmup_ratio: 1/,
    );
    expect(errors({ ...BASE, zip: [{ lrr: [1, 2] }] })).toEqual([
      'zip[0].lrr: `lrr` cannot vary in a zip group — did you mean `lr`?',
    ]);
    expect(errors({ ...BASE, training: { max_steps: 10, lr: [1, 2] }, zip: [{ lr: [1, 2] }] })[0]).toMatch(
      /both a grid axis/,
    );
    expect(errors({ ...BASE, zip: [{ lr: [1e-3, -1] }] })).toEqual([
      'zip[0].lr[1]: expected a number > 0, got number `-1`',
    ]);
  });

  it('both max_steps and epochs in one layer', () => {
    expect(errors({ ...BASE, training: { max_steps: 10, epochs: 2 } })[0]).toMatch(
      /^training\.epochs: both `max_steps` and `epochs` are set/,
    );
  });

  it('lr_groups that no method declares', () => {
    expect(errors({ ...BASE, training: { max_steps: 10, lr_groups: { uq: 1e-3 } }, methods: ['lora', 'plp'] })).toEqual(
      ['training.lr_groups.uq: no method in this recipe has a parameter group `uq` — did you mean `up`?'],
    );
  });

  it('zero runs and too many runs say so', () => {
    expect(errors({ ...BASE, exclude: [{ method: 'lora' }] })).toEqual([
      'exclude: the recipe expands to zero runs: the exclude rules remove all 1 grid runs — loosen the exclude rules',
    ]);
    const big = { ...BASE, seeds: Array.from({ length: 30 }, (_, i) => i), ranks: [1, 2, 4, 8], max_runs: 100 };
    expect(errors(big)).toEqual([
      'max_runs: the recipe expands to more than max_runs=100 runs (120 grid combinations before exclude rules and deduplication) — shrink an axis (ranks, seeds, a training list), add `exclude` rules, or raise `max_runs`',
    ]);
    expect(plan({ ...big, max_runs: undefined }, undefined, 50).issues[0]!.message).toMatch(/more than max_runs=50/);
  });

  it('references in overrides, exclude and include are checked', () => {
    const e = errors({
      ...BASE,
      overrides: [{ when: { method: 'lorra', dataset: 'glue/sts' }, training: { lr: 1 } }],
      exclude: [{ label: 'x', training: { lrr: 1 } }, {}],
      include: [{ name: 'lora', datasets: ['glue/qnil'] }],
    });
    expect(e).toEqual([
      'include[0].datasets[0]: unknown dataset `glue/qnil` — did you mean `glue/qnli`?',
      'overrides[0].when.method: unknown method `lorra` — did you mean `lora`?',
      'overrides[0].when.dataset: unknown dataset `glue/sts` — did you mean `glue/stsb`?',
      'exclude[0].label: no method entry has the label `x` — labels are set with `label:` on a method entry',
      'exclude[0].training.lrr: unknown training field `lrr` — did you mean `lr`?',
      'exclude[1]: empty exclude rule (it would drop every run) — give at least one of method, label, dataset, rank, seed, training, options',
    ]);
  });
});

describe('helpers', () => {
  it('closest() finds typos and refuses unrelated names', () => {
    expect(closest('randlroa', ['lora', 'randlora', 'vera'])).toBe('randlora');
    expect(closest('xyz', ['lora', 'randlora'])).toBeNull();
  });
});

describe('purity of planning/', () => {
  it('imports no Node built-ins and uses no clock, randomness or I/O (workflows import it)', () => {
    const dir = join(import.meta.dirname, '..', 'planning');
    for (const f of readdirSync(dir).filter((x) => x.endsWith('.ts'))) {
      const src = readFileSync(join(dir, f), 'utf8');
      expect(src, f).not.toMatch(/from ['"](node:|fs|path|os|crypto|child_process)/);
      expect(src, f).not.toMatch(/\b(Date\.now|new Date|Math\.random|process\.|require\()/);
    }
  });
});
