/** Unit tests of stage planning (planning/stages.ts) and of the sweep's dependency rule (readiness). */
import { describe, expect, it } from 'vitest';
import { formatPath } from '../planning/issues.js';
import { runId } from '../planning/planner.js';
import { planStages } from '../planning/stages.js';
import { validateRecipe } from '../planning/validate.js';
import { MethodsSnapshot } from '../schemas/describe.js';
import type { PlannedRun } from '../schemas/runspec.js';
import snapshotJson from '../schemas/methods.generated.json' with { type: 'json' };
import { readiness } from '../workflows/index.js';

const SNAP = MethodsSnapshot.parse(snapshotJson);
const OPTS = { methods: SNAP.methods, datasets: SNAP.datasets, procedures: SNAP.procedures };

const DEC = { vocab_size: 384, hidden_size: 32, num_layers: 2, num_heads: 2, num_kv_heads: 1, intermediate_size: 64 };
const LORD = {
  name: 'lord',
  ranks: [16],
  options: { variant: 'activation', rank_rule: 'ratio', ratio: [0.5, 0.7] },
  targets: ['q_proj', 'v_proj', 'up_proj'],
};
const BASE = {
  name: 'st',
  model: { name: 'tiny-decoder', config: DEC },
  datasets: [{ name: 'corpus/synthetic', max_length: 32, train_size: 64, eval_size: 16 }],
  methods: ['lora'],
  ranks: [4],
  seeds: [0, 1],
  training: { max_steps: 10 },
  stages: {
    pretrain: { procedure: 'pretrain', methods: ['full'], seeds: [0] },
    compress: { procedure: 'compress', from: 'pretrain', methods: [LORD], seeds: [0] },
    finetune: { from: 'compress' },
  },
};

function plan(raw: Record<string, unknown>) {
  const v = validateRecipe(raw);
  if (!v.recipe)
    return { runs: [] as PlannedRun[], issues: v.issues.map((i) => `${formatPath(i.path)}: ${i.message}`) };
  const r = planStages(v.recipe, OPTS);
  return { runs: r.runs, issues: r.issues.map((i) => `${formatPath(i.path)}: ${i.message}`) };
}

function ok(raw: Record<string, unknown>): PlannedRun[] {
  const r = plan(raw);
  expect(r.issues).toEqual([]);
  return r.runs;
}

const byStage = (runs: PlannedRun[], s: string) => runs.filter((r) => r.labels.stage === s);

describe('stages', () => {
  it('expands the DAG in stage order; a downstream spec names its upstream run, which is part of its id', () => {
    const runs = ok(BASE);
    const [pre, comp, ft] = ['pretrain', 'compress', 'finetune'].map((s) => byStage(runs, s));
    expect([pre!.length, comp!.length, ft!.length]).toEqual([1, 2, 4]);
    expect(runs.map((r) => r.labels.stage)).toEqual(['pretrain', 'compress', 'compress', ...Array(4).fill('finetune')]);
    expect(pre![0]!.spec.procedure).toEqual({ name: 'pretrain', options: {} });
    expect(pre![0]!.spec.inputs).toBeUndefined();
    for (const c of comp!) {
      expect(c.spec.procedure!.name).toBe('compress');
      expect(c.spec.inputs).toEqual({ model: { run: pre![0]!.id, artifact: 'model' } });
    }
    expect(new Set(comp!.map((c) => c.spec.method.options.ratio))).toEqual(new Set([0.5, 0.7]));
    for (const f of ft!) {
      expect(f.spec.procedure).toBeUndefined(); // the default procedure, omitted: plain finetune specs
      expect(comp!.map((c) => c.id)).toContain(f.spec.inputs!.model!.run);
      expect(f.id).toBe(runId(f.spec));
      expect(f.params).toBeNull(); // sized by its upstream model, once that exists
      expect(f.labels.setting).toMatch(/^← compress lord r16 ratio=0\.[57] ← pretrain full$/);
    }
    expect(new Set(runs.map((r) => r.id)).size).toBe(runs.length);
    expect(ok(BASE).map((r) => r.id)).toEqual(runs.map((r) => r.id)); // deterministic
  });

  it('growing the fine-tuning grid adds only downstream runs; upstream ids stay', () => {
    const before = ok(BASE);
    const after = ok({ ...BASE, methods: ['lora', 'dora'], seeds: [0, 1, 2] });
    const ids = new Set(before.map((r) => r.id));
    expect(after.filter((r) => r.labels.stage !== 'finetune').map((r) => r.id)).toEqual(
      before.filter((r) => r.labels.stage !== 'finetune').map((r) => r.id),
    );
    expect(after.filter((r) => ids.has(r.id))).toHaveLength(before.length); // every old run is still there
    expect(byStage(after, 'finetune')).toHaveLength(2 * 2 * 3);
  });

  it('a finetune upstream is asked for the artifacts later stages read (outputs)', () => {
    const runs = ok({
      ...BASE,
      methods: ['full'],
      stages: {
        base: { methods: ['lora'] },
        next: { from: 'base', methods: ['lora'] },
      },
    });
    expect(byStage(runs, 'base')[0]!.spec.procedure).toEqual({ name: 'finetune', options: { outputs: ['model'] } });
  });

  it('LoRAM: recover takes the spec of the run whose adapter it recovers, and its ancestors as inputs', () => {
    const runs = ok({
      ...BASE,
      stages: {
        base: { procedure: 'pretrain', methods: ['full'], seeds: [0] },
        prune: { procedure: 'prune', from: 'base', methods: ['full'], seeds: [0], options: { mlp_ratio: [0.5, 0.75] } },
        train: { from: 'prune' },
        recover: { procedure: 'recover', from: { adapter: 'train', pruned: 'prune', base: 'base' } },
      },
    });
    const [base, prune, train, recover] = ['base', 'prune', 'train', 'recover'].map((s) => byStage(runs, s));
    expect([base!.length, prune!.length, train!.length, recover!.length]).toEqual([1, 2, 4, 4]);
    for (const t of train!) expect(t.spec.procedure).toEqual({ name: 'finetune', options: { outputs: ['adapter'] } });
    for (const r of recover!) {
      const t = train!.find((x) => x.id === r.spec.inputs!.adapter!.run)!;
      expect(r.spec.inputs!.pruned!.run).toBe(t.spec.inputs!.model!.run);
      expect(r.spec.inputs!.base!.run).toBe(base![0]!.id);
      expect(r.spec.inputs!.pruned!.artifact).toBe('model');
      expect(r.spec.method).toEqual(t.spec.method);
      expect(r.spec.seed).toBe(t.spec.seed);
      expect(r.labels.method).toBe('lora');
    }
    expect(new Set(prune!.map((p) => p.labels.setting))).toEqual(
      new Set(['mlp_ratio=0.5 ← base full', 'mlp_ratio=0.75 ← base full']),
    );
  });

  it('match: seed pairs each grid point with the upstream run of its seed', () => {
    const runs = ok({
      ...BASE,
      stages: {
        pretrain: { procedure: 'pretrain', methods: ['full'] },
        finetune: { from: 'pretrain', match: 'seed' },
      },
    });
    const pre = byStage(runs, 'pretrain');
    expect(pre).toHaveLength(2);
    for (const f of byStage(runs, 'finetune'))
      expect(pre.find((p) => p.id === f.spec.inputs!.model!.run)!.spec.seed).toBe(f.spec.seed);
    expect(byStage(runs, 'finetune')).toHaveLength(2);
  });

  it('B4M: inputs from stages beside the driving one pair by seed and upstream runs; own datasets plan a grid', () => {
    const cs = (contents: number[], styles: (number | null)[]) => [
      { name: 'synthetic/content-style', options: { contents, styles, eval_contents: [6], eval_styles: [6] } },
    ];
    const plp = [{ name: 'plp', ranks: [4] }];
    const runs = ok({
      name: 'b4m',
      model: { name: 'tiny-denoiser', random_init: true },
      datasets: cs([0], [6]),
      methods: [{ name: 'lora', ranks: [4] }],
      seeds: [0, 1],
      training: { max_steps: 10, train_head: false },
      stages: {
        base: { methods: ['full'], datasets: cs([0, 1], [null, 0]) },
        content: { procedure: 'b4m-break', from: 'base', match: 'seed', methods: plp, datasets: cs([6], [null]) },
        style: { procedure: 'b4m-break', from: 'base', match: 'seed', methods: plp, options: { role: 'style' } },
        make: {
          procedure: 'b4m-make',
          from: { content: 'content', style: 'style', model: 'base' },
          methods: plp,
          datasets: cs([0], [6]),
          match: 'seed',
          options: { optimizer: ['riemannian', 'adamw'] },
          training: { max_steps: 3 },
        },
        'lora-content': { from: 'base', match: 'seed', datasets: cs([6], [null]) },
        'lora-style': { from: 'base', match: 'seed' },
        sum: { procedure: 'combine', from: { first: 'lora-content', second: 'lora-style' } },
      },
    });
    const [base, content, style, make, sum] = ['base', 'content', 'style', 'make', 'sum'].map((s) => byStage(runs, s));
    expect([base!.length, content!.length, style!.length, make!.length, sum!.length]).toEqual([2, 2, 2, 4, 2]);
    for (const m of make!) {
      const c = content!.find((x) => x.id === m.spec.inputs!.content!.run)!;
      const st = style!.find((x) => x.id === m.spec.inputs!.style!.run)!;
      expect([c.spec.seed, st.spec.seed, m.spec.seed]).toEqual([m.spec.seed, m.spec.seed, m.spec.seed]);
      expect(c.spec.inputs!.model!.run).toBe(st.spec.inputs!.model!.run); // both break runs on one base run
      expect(m.spec.inputs!.model!.run).toBe(c.spec.inputs!.model!.run);
      expect(m.spec.inputs!.style!.artifact).toBe('adapter');
      expect(m.spec.dataset.options.contents).toEqual([0]); // the stage's own data, not the content run's
      expect(m.spec.training.max_steps).toBe(3);
      expect(m.labels.setting).toMatch(/^optimizer=(riemannian|adamw) ← content plp r4 ← base full ← style plp r4/);
    }
    for (const r of sum!) {
      // no datasets of its own: the spec of the run that trained the first adapter
      const first = byStage(runs, 'lora-content').find((x) => x.id === r.spec.inputs!.first!.run)!;
      const second = byStage(runs, 'lora-style').find((x) => x.id === r.spec.inputs!.second!.run)!;
      expect(r.spec.dataset).toEqual(first.spec.dataset);
      expect(second.spec.seed).toBe(first.spec.seed);
    }
    // A stage beside the driving one that does not build on the same runs cannot be paired.
    const lone = plan({
      ...BASE,
      stages: {
        a: { procedure: 'pretrain', methods: ['full'], seeds: [0] },
        b: { procedure: 'pretrain', methods: ['full'], seeds: [0], training: { max_steps: 3 } },
        t: { from: 'a' },
        r: { procedure: 'recover', from: { adapter: 't', pruned: 'b' } },
      },
    });
    expect(lone.issues[0]).toMatch(/stages.r.from.pruned: stage `b` is neither upstream of stage `t` nor built on/);
  });

  it('refuses bad graphs and bad stage fields with the field and a hint', () => {
    const bad = (stages: Record<string, unknown>) => plan({ ...BASE, stages }).issues;
    expect(bad({ a: { from: 'nope' } })).toEqual(['stages.a.from: no stage `nope`']);
    expect(bad({ a: { from: 'b' }, b: { from: 'a' } })[0]).toMatch(/circle/);
    expect(bad({ a: { procedure: 'compres' } })[0]).toMatch(/stages.a.procedure: unknown procedure `compres`/);
    expect(bad({ a: {}, r: { procedure: 'recover', from: 'a' } })[0]).toMatch(/needs input `pruned`/);
    expect(bad({ a: { procedure: 'compress', methods: ['lora'] } })[0]).toMatch(
      /stages.a.methods: procedure `compress` runs lord, not lora/,
    );
    expect(bad({ a: { procedure: 'prune', methods: ['full'], options: { mlp_ratoi: 0.5 } } })[0]).toMatch(
      /stages.a.options.mlp_ratoi: unknown option/,
    );
    expect(bad({ a: { procedure: 'prune', methods: ['full'], options: { mlp_ratio: 'x' } } })[0]).toMatch(
      /expected a number/,
    );
    expect(
      bad({
        a: { procedure: 'pretrain', methods: ['full'] },
        b: { procedure: 'compress', from: { model: 'a', x: 'a' }, methods: [LORD] },
      })[0],
    ).toMatch(/stages.b.from.x: procedure `compress` has no input `x`/);
    expect(plan({ ...BASE, stages: { A: {} } }).issues[0]).toMatch(/^stages.A/);
  });

  it('a recipe without stages plans exactly as before', () => {
    const { stages: _s, ...plain } = BASE;
    const runs = ok(plain);
    expect(runs.every((r) => r.spec.procedure === undefined && r.labels.stage === undefined)).toBe(true);
  });
});

describe('readiness (the sweep workflow waits for upstream runs)', () => {
  it('ready when every upstream succeeded, blocked when one failed, else waiting', () => {
    expect(readiness([], {}).state).toBe('ready');
    expect(readiness(['a', 'b'], { a: 'succeeded', b: 'succeeded' }).state).toBe('ready');
    expect(readiness(['a', 'b'], { a: 'succeeded', b: 'running' }).state).toBe('waiting');
    expect(readiness(['a'], {}).state).toBe('waiting');
    expect(readiness(['a', 'b'], { a: 'running', b: 'failed' })).toEqual({ state: 'blocked', dep: 'b' });
  });
});

describe('tables: stage statistics beside the downstream score', () => {
  it('joins the upstream runs’ stats (nearest first) and shows them as extra columns', async () => {
    const { mkdtemp } = await import('node:fs/promises');
    const { tmpdir } = await import('node:os');
    const { join } = await import('node:path');
    const { LocalStore } = await import('../store/store.js');
    const { joinUpstreamStats } = await import('../cli/results-reader.js');
    const { makeRecord } = await import('./tables-fixtures.js');
    const { runFromRecord } = await import('../tables/runs.js');
    const { buildTable } = await import('../tables/table.js');
    const { addStatColumns } = await import('../tables/stats.js');
    const { render } = await import('../tables/render.js');
    const store = new LocalStore(await mkdtemp(join(tmpdir(), 'rankflow-stats-')));
    const comp = {
      ...makeRecord({
        method: 'lord',
        dataset: 'corpus/synthetic',
        seed: 0,
        metric: 'perplexity',
        metrics: { perplexity: 9 },
      }),
      stats: { compression_ratio: 1.5, speedup: 1.2 },
    };
    await store.put(`results/${comp.run_id}.json`, JSON.stringify(comp));
    const ft = [0, 1].map((seed) => {
      const r = makeRecord({
        method: 'lora',
        rank: 4,
        dataset: 'corpus/synthetic',
        seed,
        metric: 'perplexity',
        metrics: { perplexity: 5 + seed },
      });
      return { ...r, spec: { ...r.spec, inputs: { model: { run: comp.run_id, artifact: 'model' } } } };
    });
    const rows = ft.map(runFromRecord);
    expect(rows[0]!.upstream).toEqual([comp.run_id]);
    await joinUpstreamStats(store, rows); // the upstream record is read from the store (not in the selection)
    expect(rows[0]!.stats).toEqual({ compression_ratio: 1.5, speedup: 1.2 });
    const model = addStatColumns(buildTable(rows), rows, ['compression_ratio']);
    expect(model.columns.at(-1)).toMatchObject({ key: 'stat:compression_ratio', kind: 'stat' });
    expect(model.rows[0]!.cells.at(-1)!.mean).toBe(1.5);
    expect(render(model, 'md').split('\n')[0]).toMatch(/compression\\_ratio \|$/); // the last column
    expect(() => addStatColumns(buildTable(rows), rows, ['pruned'])).toThrow(
      /--stats pruned: no run .* available: compression_ratio, speedup/,
    );
  });
});
