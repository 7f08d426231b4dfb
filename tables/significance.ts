/**
 * Significance of each column's best row against every other row, over seeds (issue 17): Welch's unequal-
 * variance t-test (B. L. Welch, "The generalization of Student's problem when several different population
 * variances are involved", Biometrika 34, 1947), or a paired bootstrap when the two cells ran the same seeds
 * (B. Efron & R. Tibshirani, "An Introduction to the Bootstrap", 1993, §16.4: resample the per-seed differences,
 * centred on their mean to impose the null). Both two-sided. Pure; the bootstrap's generator is seeded, so a
 * table is the same every time it is built.
 *
 * Deviations / choices: the Student t CDF is our own (regularized incomplete beta by Lentz's continued
 * fraction, as in Numerical Recipes §6.4), accurate to ~1e-12; the bootstrap p counts resampled means at least
 * as far from zero as the observed one, (k + 1) / (B + 1) so that it is never 0; cells with fewer than two
 * seeds (Welch) or two pairs (bootstrap) are not tested.
 */

/** ln Γ(x), Lanczos (g = 7, n = 9), x > 0. */
function logGamma(x: number): number {
  const c = [
    0.99999999999980993, 676.5203681218851, -1259.1392167224028, 771.32342877765313, -176.61502916214059,
    12.507343278686905, -0.13857109526572012, 9.9843695780195716e-6, 1.5056327351493116e-7,
  ];
  if (x < 0.5) return Math.log(Math.PI / Math.sin(Math.PI * x)) - logGamma(1 - x);
  x -= 1;
  let a = c[0]!;
  const t = x + 7.5;
  for (let i = 1; i < 9; i++) a += c[i]! / (x + i);
  return 0.5 * Math.log(2 * Math.PI) + (x + 0.5) * Math.log(t) - t + Math.log(a);
}

/** Continued fraction of the incomplete beta function (modified Lentz). */
function betaCf(a: number, b: number, x: number): number {
  const tiny = 1e-300;
  let c = 1;
  let d = 1 - ((a + b) * x) / (a + 1);
  if (Math.abs(d) < tiny) d = tiny;
  d = 1 / d;
  let h = d;
  for (let m = 1; m <= 300; m++) {
    const m2 = 2 * m;
    let aa = (m * (b - m) * x) / ((a + m2 - 1) * (a + m2));
    d = 1 + aa * d;
    if (Math.abs(d) < tiny) d = tiny;
    c = 1 + aa / c;
    if (Math.abs(c) < tiny) c = tiny;
    d = 1 / d;
    h *= d * c;
    aa = (-(a + m) * (a + b + m) * x) / ((a + m2) * (a + m2 + 1));
    d = 1 + aa * d;
    if (Math.abs(d) < tiny) d = tiny;
    c = 1 + aa / c;
    if (Math.abs(c) < tiny) c = tiny;
    d = 1 / d;
    const del = d * c;
    h *= del;
    if (Math.abs(del - 1) < 1e-15) break;
  }
  return h;
}

/** The regularized incomplete beta function I_x(a, b). */
export function incompleteBeta(x: number, a: number, b: number): number {
  if (x <= 0) return 0;
  if (x >= 1) return 1;
  const lnFront = logGamma(a + b) - logGamma(a) - logGamma(b) + a * Math.log(x) + b * Math.log(1 - x);
  const front = Math.exp(lnFront);
  return x < (a + 1) / (a + b + 2) ? (front * betaCf(a, b, x)) / a : 1 - (front * betaCf(b, a, 1 - x)) / b;
}

/** Two-sided p of Student's t with `df` degrees of freedom (df may be fractional, as Welch's is). */
export function tTwoSided(t: number, df: number): number {
  if (!Number.isFinite(t)) return 0;
  return incompleteBeta(df / (df + t * t), df / 2, 0.5);
}

export interface TestResult {
  p: number;
  /** `welch` or `bootstrap` (the test actually used). */
  test: 'welch' | 'bootstrap';
}

function meanVar(xs: number[]): { m: number; v: number } {
  const m = xs.reduce((s, x) => s + x, 0) / xs.length;
  const v = xs.reduce((s, x) => s + (x - m) * (x - m), 0) / (xs.length - 1);
  return { m, v };
}

/** Welch's t statistic, degrees of freedom (Welch–Satterthwaite) and two-sided p; null below two values. */
export function welch(a: number[], b: number[]): { t: number; df: number; p: number } | null {
  if (a.length < 2 || b.length < 2) return null;
  const x = meanVar(a);
  const y = meanVar(b);
  const va = x.v / a.length;
  const vb = y.v / b.length;
  const se2 = va + vb;
  if (se2 === 0) return { t: x.m === y.m ? 0 : Infinity, df: a.length + b.length - 2, p: x.m === y.m ? 1 : 0 };
  const t = (x.m - y.m) / Math.sqrt(se2);
  const df = (se2 * se2) / ((va * va) / (a.length - 1) + (vb * vb) / (b.length - 1));
  return { t, df, p: tTwoSided(t, df) };
}

/** mulberry32: a small deterministic generator in [0, 1). */
function generator(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export const BOOTSTRAP_RESAMPLES = 10_000;
export const BOOTSTRAP_SEED = 17;

/**
 * Paired bootstrap of the per-seed differences `d`: resample them (B times, seeded), centre on the observed
 * mean (the null of no difference) and count means at least as far from zero: p = (k + 1) / (B + 1).
 */
export function pairedBootstrap(d: number[], resamples = BOOTSTRAP_RESAMPLES, seed = BOOTSTRAP_SEED): number | null {
  if (d.length < 2) return null;
  const n = d.length;
  const obs = d.reduce((s, x) => s + x, 0) / n;
  if (d.every((x) => x === d[0])) return obs === 0 ? 1 : 1 / (resamples + 1);
  const rand = generator(seed);
  let k = 0;
  for (let b = 0; b < resamples; b++) {
    let s = 0;
    for (let i = 0; i < n; i++) s += d[Math.floor(rand() * n)]!;
    if (Math.abs(s / n - obs) >= Math.abs(obs) - 1e-12) k++;
  }
  return (k + 1) / (resamples + 1);
}

/** Values of one cell by seed. */
export interface SeedValues {
  values: number[];
  seeds: number[];
}

/** Differences a − b per shared seed when both ran exactly the same seeds once each; else null. */
export function pairs(a: SeedValues, b: SeedValues): number[] | null {
  if (a.seeds.length !== b.seeds.length || new Set(a.seeds).size !== a.seeds.length) return null;
  const bySeed = new Map(b.seeds.map((s, i) => [s, b.values[i]!]));
  if (bySeed.size !== b.seeds.length) return null;
  const out: number[] = [];
  for (const [i, s] of a.seeds.entries()) {
    const y = bySeed.get(s);
    if (y === undefined) return null;
    out.push(a.values[i]! - y);
  }
  return out;
}

/** The test of `best` against `other`: the paired bootstrap when asked and seeds pair up, else Welch. */
export function compare(best: SeedValues, other: SeedValues, method: 'welch' | 'bootstrap'): TestResult | null {
  if (method === 'bootstrap') {
    const d = pairs(best, other);
    if (d && d.length >= 2) return { p: pairedBootstrap(d)!, test: 'bootstrap' };
  }
  const w = welch(best.values, other.values);
  return w ? { p: w.p, test: 'welch' } : null;
}
