/**
 * Planner benchmark: plan a 100,000-run recipe and compare with the floor, a plain nested-loop cartesian
 * product over the same axes that builds one small object per combination (no defaults, validation,
 * canonical JSON, hashing or deduplication). Prints runs/second, peak memory and the ratio, measured in
 * one process:  node --expose-gc --import tsx bench/plan_bench.ts [--repeat 5]
 *
 * Side by side, the same plan with the hand-written SHA-256 the planner used before (bench/baseline/) and,
 * for information, with node:crypto (which workflows cannot use): the ratio of the planner's time with
 * @noble/hashes (planning/hash.ts) to its time with the hand-written hash. And the planner as it was before
 * planRecipe was split into phases (bench/baseline/planner_v1.ts), which must give the same run ids: the
 * ratio of the phased planner's time to its time (goal <= 1.10).
 */
import { createHash, type Hash } from 'node:crypto';
import { canonicalJson } from '../planning/canonical.js';
import { planRecipe } from '../planning/planner.js';
import { planRecipe as planRecipeV1 } from './baseline/planner_v1.js';
import { sha256Hex, type IncrementalSha256 } from '../planning/hash.js';
import { Sha256 as HandwrittenSha256 } from './baseline/sha256_handwritten.js';
import { validateRecipe } from '../planning/validate.js';
import { MethodsSnapshot } from '../schemas/describe.js';
import snapshotJson from '../schemas/methods.generated.json' with { type: 'json' };

const snap = MethodsSnapshot.parse(snapshotJson);

const AXES = {
  datasets: ['synthetic/seq-cls', 'synthetic/regression'],
  methods: ['lora', 'dora', 'vera', 'randlora', 'nola'],
  ranks: [1, 2, 4, 8, 16],
  lr: [1e-4, 3e-4, 1e-3, 3e-3, 1e-2],
  batch_size: [8, 16, 32, 64],
  warmup_ratio: [0, 0.1],
  weight_decay: [0, 1e-3, 1e-2, 5e-2, 1e-1],
  seeds: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
};
const N = Object.values(AXES).reduce((n, a) => n * a.length, 1);

const recipe = {
  name: 'bench-100k',
  model: 'tiny-encoder',
  datasets: AXES.datasets,
  methods: AXES.methods,
  ranks: AXES.ranks,
  seeds: AXES.seeds,
  training: {
    max_steps: 100,
    lr: AXES.lr,
    batch_size: AXES.batch_size,
    warmup_ratio: AXES.warmup_ratio,
    weight_decay: AXES.weight_decay,
  },
  max_runs: N,
};

/** node:crypto behind the planner's interface (information only: the sandbox has no node:crypto). */
class NodeSha256 implements IncrementalSha256 {
  constructor(private h: Hash = createHash('sha256')) {}
  update(s: string): this {
    this.h.update(s, 'utf8');
    return this;
  }
  copyFrom(other: this): this {
    this.h = other.h.copy();
    return this;
  }
  clone(): NodeSha256 {
    return new NodeSha256(this.h.copy());
  }
  hex(): string {
    return this.h.digest('hex');
  }
}

const HASHES: Record<string, (() => IncrementalSha256) | undefined> = {
  noble: undefined, // the planner's default (planning/hash.ts)
  handwritten: () => new HandwrittenSha256() as unknown as IncrementalSha256,
  node: () => new NodeSha256(),
};

function planOnce(hash: keyof typeof HASHES = 'noble', planner = planRecipe): number {
  const v = validateRecipe(recipe);
  if (!v.recipe) throw new Error(JSON.stringify(v.issues));
  const sha256 = HASHES[hash];
  const r = planner(v.recipe, { methods: snap.methods, datasets: snap.datasets, ...(sha256 ? { sha256 } : {}) });
  if (r.issues.length) throw new Error(JSON.stringify(r.issues));
  _keep = r.runs;
  return r.runs.length;
}

/** The floor: the same axes in nested loops, one plain object per combination. */
function floorOnce(): number {
  const out: object[] = [];
  for (const dataset of AXES.datasets)
    for (const method of AXES.methods)
      for (const rank of AXES.ranks)
        for (const lr of AXES.lr)
          for (const batch_size of AXES.batch_size)
            for (const warmup_ratio of AXES.warmup_ratio)
              for (const weight_decay of AXES.weight_decay)
                for (const seed of AXES.seeds)
                  out.push({ dataset, method, rank, lr, batch_size, warmup_ratio, weight_decay, seed });
  _keep = out;
  return out.length;
}

let _keep: unknown = null;

/**
 * A second reference: the same nested loops, but each combination becomes a full RunSpec-shaped object
 * whose id is SHA-256 (pure JS) of its canonical JSON: the least work any planner producing ids must do.
 */
function floorWithIdsOnce(): number {
  const model = { name: 'tiny-encoder', source: 'builtin', task: 'seq-cls', config: {}, random_init: false };
  const out: { id: string; spec: object }[] = [];
  for (const dsName of AXES.datasets) {
    const dataset = {
      name: dsName,
      data_root: null,
      max_length: 32,
      train_size: 512,
      eval_size: 128,
      eval_split: 'validation',
      metric: 'accuracy',
      options: {},
    };
    for (const name of AXES.methods)
      for (const rank of AXES.ranks) {
        const method = { name, rank, options: {}, targets: [] };
        for (const lr of AXES.lr)
          for (const batch_size of AXES.batch_size)
            for (const warmup_ratio of AXES.warmup_ratio)
              for (const weight_decay of AXES.weight_decay)
                for (const seed of AXES.seeds) {
                  const training = {
                    optimizer: 'adamw',
                    lr,
                    lr_groups: {},
                    weight_decay,
                    schedule: 'linear',
                    warmup_ratio,
                    max_steps: 100,
                    epochs: null,
                    batch_size,
                    eval_batch_size: batch_size,
                    grad_accum: 1,
                    max_grad_norm: 1,
                    precision: 'fp32',
                    eval_every: null,
                    checkpoint_every: null,
                    log_every: 10,
                    train_head: true,
                  };
                  const spec = { schema: 'rankflow.run/v1', model, dataset, method, training, seed, device: 'auto' };
                  out.push({ id: 'run-' + sha256Hex(canonicalJson(spec)).slice(0, 32), spec });
                }
      }
  }
  _keep = out;
  return out.length;
}

function time(f: () => number): { ms: number; n: number } {
  const gc = (globalThis as { gc?: () => void }).gc;
  _keep = null;
  gc?.();
  const t0 = performance.now();
  const n = f();
  return { ms: performance.now() - t0, n };
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

const repeatArg = process.argv.indexOf('--repeat');
const repeat = repeatArg > 0 ? Number(process.argv[repeatArg + 1]) : 5;
const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) console.log('(run with `node --expose-gc --import tsx bench/plan_bench.ts` for steadier figures)');

// Warm-up (JIT) on every path, then interleaved measurements so machine load hits all alike.
floorOnce();
floorWithIdsOnce();
planOnce('handwritten');
planOnce('node');
planOnce('noble', planRecipeV1);
planOnce();
_keep = null;
gc?.();
const heap0 = process.memoryUsage().heapUsed;
planOnce();
const heapRetained = process.memoryUsage().heapUsed - heap0;
const floorMs: number[] = [];
const idsMs: number[] = [];
const planMs: number[] = [];
const handMs: number[] = [];
const nodeMs: number[] = [];
const v1Ms: number[] = [];
const same = (ids: string[]) => ids.join() === (_keep as { id: string }[]).map((r) => r.id).join();
for (let i = 0; i < repeat; i++) {
  floorMs.push(time(floorOnce).ms);
  idsMs.push(time(floorWithIdsOnce).ms);
  const t = time(() => planOnce());
  if (t.n !== N) throw new Error(`planned ${t.n} runs, expected ${N}`);
  planMs.push(t.ms);
  const ids = (_keep as { id: string }[]).map((r) => r.id);
  handMs.push(time(() => planOnce('handwritten')).ms);
  if (!same(ids)) throw new Error('the hand-written SHA-256 gives other run ids');
  nodeMs.push(time(() => planOnce('node')).ms);
  if (!same(ids)) throw new Error('node:crypto gives other run ids');
  v1Ms.push(time(() => planOnce('noble', planRecipeV1)).ms);
  if (!same(ids)) throw new Error('the planner before the split gives other run ids');
}
const peakRssMiB = process.resourceUsage().maxRSS / 1024;

const p = median(planMs);
const f = median(floorMs);
const h = median(idsMs);
const rate = (ms: number) => Math.round(N / (ms / 1000)).toLocaleString('en-US');
console.log(
  `plan_bench: ${N.toLocaleString('en-US')} runs (${Object.entries(AXES)
    .map(([k, v]) => `${k} ${v.length}`)
    .join(' x ')}), median of ${repeat}`,
);
console.log(
  `  planner (validate + expand + canonical JSON + SHA-256 ids + dedup + labels): ${p.toFixed(0)} ms = ${rate(p)} runs/s`,
);
console.log(`  floor, nested-loop cartesian product of the same axes: ${f.toFixed(1)} ms = ${rate(f)} combos/s`);
console.log(
  `  floor + full spec objects + canonical JSON + pure SHA-256 id each: ${h.toFixed(0)} ms = ${rate(h)} runs/s`,
);
console.log(`  ratio planner / floor: ${(p / f).toFixed(0)}x; planner / (floor with ids): ${(p / h).toFixed(2)}x`);
const hw = median(handMs);
const nd = median(nodeMs);
console.log(
  `  SHA-256 side by side (same run ids): @noble/hashes ${p.toFixed(0)} ms, hand-written (before) ${hw.toFixed(0)} ms, ` +
    `node:crypto ${nd.toFixed(0)} ms; ratio noble / hand-written ${(p / hw).toFixed(3)} (goal <= 1.10)`,
);
const v1 = median(v1Ms);
console.log(
  `  planner side by side (same run ids): phased (planning/) ${p.toFixed(0)} ms, before the split (bench/baseline/planner_v1.ts) ` +
    `${v1.toFixed(0)} ms; ratio phased / before ${(p / v1).toFixed(3)} (goal <= 1.10)`,
);
console.log(
  `  peak RSS of the process: ${peakRssMiB.toFixed(0)} MiB; heap retained by 100k planned runs: ${(heapRetained / 2 ** 20).toFixed(0)} MiB (${(heapRetained / N).toFixed(0)} B/run)`,
);
