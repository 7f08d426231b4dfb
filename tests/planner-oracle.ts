/**
 * A deterministic parameter-count oracle for planner tests (NOT the runtime): per-layer formulas from
 * `shared/reference/methods.md` §1 over the default q/v target shapes of a few models. It lets the pure
 * planner's budget matching and the golden plans be tested without Python or model configs; the real
 * counts come from `rankflow_runtime count` (tested in tests/recipes-runtime.test.ts).
 */
import type { CountResult } from '../planning/planner.js';
import type { RunSpec } from '../schemas/runspec.js';

interface Shapes {
  layers: number;
  /** (d_out, d_in) of each adapted matrix in one block */
  targets: [number, number][];
  total: number;
  /** width of the features the task head reads */
  hidden: number;
  /** causal LMs: the vocabulary (the lm_head's outputs) */
  vocab?: number;
}

export const ORACLE_MODELS: Record<string, Shapes> = {
  'tiny-encoder': {
    layers: 2,
    targets: [
      [64, 64],
      [64, 64],
    ],
    total: 140_800,
    hidden: 64,
  },
  'tiny-vit': {
    layers: 2,
    targets: [
      [64, 64],
      [64, 64],
    ],
    total: 104_000,
    hidden: 64,
  },
  'tiny-decoder': {
    layers: 2,
    targets: [
      [64, 64],
      [64, 64],
    ],
    total: 230_000,
    hidden: 64,
    vocab: 1024,
  },
  'FacebookAI/roberta-base': {
    layers: 12,
    targets: [
      [768, 768],
      [768, 768],
    ],
    total: 124_645_632,
    hidden: 768,
  },
  'google/vit-base-patch16-224-in21k': {
    layers: 12,
    targets: [
      [768, 768],
      [768, 768],
    ],
    total: 85_798_656,
    hidden: 768,
  },
  'meta-llama/Llama-3.2-3B': {
    layers: 28,
    targets: [
      [3072, 3072],
      [1024, 3072],
    ],
    total: 3_212_749_824,
    hidden: 3072,
    vocab: 128_256,
  },
};

/**
 * Label counts of the datasets the tests plan (GLUE: the task definitions; VTAB-1k: the benchmark's class counts;
 * synthetic: the generator defaults), for the linear-probe count. An oracle: written from the sources, not read
 * from the runtime (tests/recipes-runtime.test.ts checks the two agree).
 */
export const ORACLE_LABELS: Record<string, number> = {
  'synthetic/seq-cls': 2,
  'synthetic/img-cls': 4,
  'synthetic/regression': 1,
  'glue/cola': 2,
  'glue/sst2': 2,
  'glue/mrpc': 2,
  'glue/qqp': 2,
  'glue/stsb': 1,
  'glue/mnli': 3,
  'glue/qnli': 2,
  'glue/rte': 2,
  'glue/wnli': 2,
  'vtab/cifar': 100,
  'vtab/caltech101': 102,
  'vtab/dtd': 47,
  'vtab/oxford_flowers102': 102,
  'vtab/oxford_iiit_pet': 37,
  'vtab/svhn': 10,
  'vtab/sun397': 397,
  'vtab/patch_camelyon': 2,
  'vtab/eurosat': 10,
  'vtab/resisc45': 45,
  'vtab/diabetic_retinopathy': 5,
  'vtab/clevr_count': 8,
  'vtab/clevr_dist': 6,
  'vtab/dmlab': 6,
  'vtab/kitti': 4,
  'vtab/dsprites_loc': 16,
  'vtab/dsprites_ori': 16,
  'vtab/smallnorb_azi': 18,
  'vtab/smallnorb_ele': 9,
};

/** linear-probe: one linear map from the head's features to the outputs (hidden·out + out; an LM head has no bias). */
function linearProbe(spec: RunSpec, m: Shapes): number | null {
  if (spec.model.task === 'causal-lm') return m.vocab === undefined ? null : m.vocab * m.hidden;
  const labels = ORACLE_LABELS[spec.dataset.name];
  return labels === undefined ? null : m.hidden * labels + labels;
}

function perLayer(spec: RunSpec, dOut: number, dIn: number): number | null {
  const r = spec.method.rank ?? 0;
  const o = spec.method.options as Record<string, number>;
  const dMin = Math.min(dOut, dIn);
  if (r > dMin) return null; // the runtime refuses ranks above min(d_out, d_in)
  switch (spec.method.name) {
    case 'lora':
    case 'pissa':
    case 'snell':
    case 'mos':
      return r * (dIn + dOut) + (spec.method.name === 'mos' ? (o.private_rank ?? 1) * 64 : 0);
    case 'dora':
      return r * (dIn + dOut) + dOut;
    case 'vera':
      return dOut + r;
    case 'randlora':
      return Math.ceil(dMin / r) * (r + dMin);
    case 'loldu':
    case 'svfit':
      return r;
    case 'nola':
      return (o.num_basis_a ?? 512) + (o.num_basis_b ?? 512);
    case 'bone':
      return r * dOut;
    case 'salt': {
      const rl = o.r_lora ?? 8;
      return 2 * r + 2 * rl * (dMin - r);
    }
    case 'plp':
      return Math.round((r * (dIn + dOut)) / 2);
    default:
      return null;
  }
}

/** Blocks of TriAdaptLoRA: (trainable of one layer) for block sizes k_t: Σ k_t(d_in + d_out) + 2·k_t·R_t. */
function triBlocks(dOut: number, dIn: number, sizes: number[]): number {
  let r = 0;
  let n = 0;
  for (const k of sizes) {
    r += k;
    n += k * (dIn + dOut) + 2 * k * r;
  }
  return n;
}

/**
 * Methods that move rank during training (runtime README "Methods that move rank"): the count at the start
 * and the count of the final pattern (every module at the target rank; DiffoRA: ⌈ρM⌉ of M modules).
 */
function rankMoving(spec: RunSpec, m: Shapes): CountResult | null {
  const r = spec.method.rank ?? 0;
  const o = spec.method.options as Record<string, number | string | boolean>;
  const pairs = m.targets.map(([dOut, dIn]) => [dOut, dIn] as const);
  let start = 0;
  let final = 0;
  for (const [dOut, dIn] of pairs) {
    const d = dIn + dOut;
    switch (spec.method.name) {
      case 'adalora': {
        const initR = (o.init_r as number | undefined) ?? Math.ceil(1.5 * r);
        start += initR * (d + 1);
        final += r * (d + 1);
        break;
      }
      case 'increlora': {
        const table: Record<number, number> = { 2: 1, 4: 2, 6: 3, 8: 4 };
        const k = (o.incre_rank_num as number | undefined) ?? table[r] ?? Math.max(1, Math.ceil(r / 2));
        const initR = (o.init_r as number | undefined) ?? 1;
        start += initR * (d + 1);
        final += r * (d + 1) + (o.advance_learn === false ? 0 : k * d);
        break;
      }
      case 'triadaptlora': {
        const k = (o.incre_rank_num as number | undefined) ?? Math.max(1, Math.floor(r / 2));
        const r0 = (o.init_rank as number | undefined) ?? 1;
        const left = Math.max(0, r - r0);
        const sizes = [r0, ...Array<number>(Math.floor(left / k)).fill(k), ...(left % k ? [left % k] : [])];
        start += triBlocks(dOut, dIn, [r0]);
        final += triBlocks(dOut, dIn, sizes);
        break;
      }
      case 'diffora':
        start += r * d + 1;
        final += r * d;
        break;
      default:
        return null;
    }
  }
  start *= m.layers;
  final *= m.layers;
  if (spec.method.name === 'diffora') {
    const modules = m.layers * pairs.length;
    const ratio = (o.ratio as number | undefined) ?? 0.5;
    const keep = Math.min(modules, Math.ceil(ratio * modules - 1e-9));
    final = Math.round((final * keep) / modules);
  }
  return { trainable: start, total: m.total + start, final };
}

export function oracleCount(spec: RunSpec): CountResult | null {
  const m = ORACLE_MODELS[spec.model.name];
  if (!m) return null;
  if (spec.method.name === 'full') return { trainable: m.total, total: m.total };
  if (spec.method.name === 'linear-probe') {
    const t = linearProbe(spec, m);
    return t === null ? null : { trainable: t, total: m.total };
  }
  if (['adalora', 'increlora', 'triadaptlora', 'diffora'].includes(spec.method.name)) {
    if ((spec.method.rank ?? 0) > Math.min(...m.targets.flat())) return null;
    return rankMoving(spec, m);
  }
  let t = 0;
  for (const [o, i] of m.targets) {
    const c = perLayer(spec, o, i);
    if (c === null) return null;
    t += c * m.layers;
  }
  return { trainable: t, total: m.total + t };
}

/** A `countFn` for planRecipeFile backed by the oracle; records how many specs it was asked for. */
export function oracleCountFn(log?: { calls: number; specs: number }) {
  return async (specs: RunSpec[]) => {
    if (log) {
      log.calls++;
      log.specs += specs.length;
    }
    return specs.map(oracleCount);
  };
}
