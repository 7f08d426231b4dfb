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
}

export const ORACLE_MODELS: Record<string, Shapes> = {
  'tiny-encoder': { layers: 2, targets: [[64, 64], [64, 64]], total: 140_800 },
  'tiny-vit': { layers: 2, targets: [[64, 64], [64, 64]], total: 104_000 },
  'tiny-decoder': { layers: 2, targets: [[64, 64], [64, 64]], total: 230_000 },
  'FacebookAI/roberta-base': { layers: 12, targets: [[768, 768], [768, 768]], total: 124_645_632 },
  'google/vit-base-patch16-224-in21k': { layers: 12, targets: [[768, 768], [768, 768]], total: 85_798_656 },
  'meta-llama/Llama-3.2-3B': { layers: 28, targets: [[3072, 3072], [1024, 3072]], total: 3_212_749_824 },
};

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

export function oracleCount(spec: RunSpec): CountResult | null {
  const m = ORACLE_MODELS[spec.model.name];
  if (!m) return null;
  if (spec.method.name === 'full') return { trainable: m.total, total: m.total };
  if (spec.method.name === 'linear-probe') return { trainable: 1538, total: m.total };
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
