/**
 * Phase 2 of planning: choose the settings of every (method entry, dataset, zip combination). Without a
 * budget, an entry's ranks (its own, else the recipe's; a zip rank wins). With a budget, per reference rank
 * ("level") the setting whose trainable count is closest to the reference method's at that rank: ranks from
 * the entry's `ranks`, the budget's `candidates` or DEFAULT_RANK_LADDER, or the values of a numeric option
 * (`match_by: {option, values}`). Counts come from `opts.counts`; the specs whose counts are missing are
 * collected as count requests (the caller counts them with the runtime and plans again).
 */
import type { RunSpec } from '../schemas/runspec.js';
import type { Cells } from './cells.js';
import { countKey } from './ids.js';
import { formatPath } from './issues.js';
import type {
  CellPlan,
  CountResult,
  CountTable,
  PlanContext,
  RankChoice,
  ResolvedDataset,
  ResolvedMethod,
  ResolvedRecipe,
  ZipCombo,
} from './plan-types.js';
import { asList } from './util.js';

/** Ranks tried by budget matching for a method matched by rank that names no candidates. */
export const DEFAULT_RANK_LADDER = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024];

/** The count budget matching compares: the final pattern's. */
const budgetCount = (c: CountResult): number => c.final ?? c.trainable;

/** The index of the candidate closest to the reference count (ties: the smaller count, then the first). */
function closest(counts: (CountResult | null | undefined)[], ref: CountResult): number {
  let best = -1;
  let bestKey: [number, number, number] = [Infinity, Infinity, Infinity];
  counts.forEach((c, i) => {
    if (!c) return;
    const key: [number, number, number] = [Math.abs(budgetCount(c) - budgetCount(ref)), budgetCount(c), i];
    if (
      key[0] < bestKey[0] ||
      (key[0] === bestKey[0] && (key[1] < bestKey[1] || (key[1] === bestKey[1] && key[2] < bestKey[2])))
    ) {
      best = i;
      bestKey = key;
    }
  });
  return best;
}

class SettingChooser {
  readonly counts: CountTable;
  /** Specs to count, by count key. */
  readonly requests = new Map<string, RunSpec>();
  private readonly noRankWarned = new Set<string>();
  private readonly refMethod: ResolvedMethod | null;

  constructor(
    private readonly ctx: PlanContext,
    private readonly r: ResolvedRecipe,
    private readonly cells: Cells,
  ) {
    this.counts = ctx.opts.counts ?? {};
    const budget = r.budget;
    this.refMethod = budget
      ? (r.methods.find((x) => x.name === budget.match) ?? r.resolveMethod({ name: budget.match }, ['budget', 'match']))
      : null;
  }

  /** Without budget matching: the zip rank, else the entry's or the recipe's ranks. */
  private plain(mm: ResolvedMethod, z: ZipCombo): RankChoice[] {
    if (z.rank !== undefined) return [{ rank: z.rank, tag: null }];
    const rs = mm.ranks ?? this.r.recipeRanks;
    if (rs) return rs.map((r) => ({ rank: r, tag: null }));
    if (!this.noRankWarned.has(formatPath(mm.path))) {
      this.noRankWarned.add(formatPath(mm.path));
      this.ctx.issues.add(
        [...mm.path, 'name'],
        `method \`${mm.name}\` needs a rank, and neither the recipe nor the entry gives \`ranks\``,
        this.r.budget
          ? `add \`ranks: [...]\` to this entry, or let budget matching choose (match_by: rank)`
          : 'add `ranks: [8]` to the recipe or to this entry',
      );
    }
    return [];
  }

  /** True when some count is missing (then requested). */
  private requestMissing(specs: RunSpec[]): boolean {
    let missing = false;
    for (const s of specs) {
      const k = countKey(s);
      if (!(k in this.counts)) {
        missing = true;
        if (!this.requests.has(k)) this.requests.set(k, s);
      }
    }
    return missing;
  }

  /**
   * Budget matching compares exact counts only: a method that chooses its ranks from the weights (LoRD
   * `rank_rule: energy | ratio`) has an estimate. Adds the issue and returns true when the reference (first) or
   * a candidate count is one.
   */
  private refuseEstimated(mm: ResolvedMethod, counts: (CountResult | null | undefined)[]): boolean {
    const at = counts.findIndex((c) => c?.exact === false);
    if (at < 0) return false;
    const refName = this.r.budget!.match;
    this.ctx.issues.add(
      at === 0 ? ['budget', 'match'] : [...mm.path, 'name'],
      `budget matching needs exact counts, but \`${at === 0 ? refName : mm.name}\` chooses its ranks from the ` +
        'weights here (its count is only an estimate at the rank cap)',
      'use `options: {rank_rule: fixed}` for a budget-matched LoRD, or leave it out of the budget',
    );
    return true;
  }

  /** The budget-matched choice at one reference rank; null when counts are missing or an issue was added. */
  private matched(mm: ResolvedMethod, d: ResolvedDataset, z: ZipCombo, level: number): RankChoice[] | null {
    const budget = this.r.budget!;
    const tag = `budget:${budget.match}@${level}`;
    const isRef = mm.name === budget.match && (mm.matchBy === undefined || mm.matchBy === 'rank');
    if (isRef) return [{ rank: level, tag }];
    const by = mm.matchBy ?? (mm.desc.needs_rank ? 'rank' : 'none');
    if (by === 'none') return this.plain(mm, z).map((c) => ({ ...c, tag }));
    // reference count on this dataset
    const refSpec = this.cells.firstSpec(this.cells.build(this.refMethod!, d, level, z));
    const refCount = this.counts[countKey(refSpec)];
    const candidates: RankChoice[] =
      by === 'rank'
        ? (mm.ranks ?? budget.candidates ?? DEFAULT_RANK_LADDER).map((r) => ({ rank: r, tag }))
        : by.values.map((v) => ({
            rank: mm.desc.needs_rank ? (mm.ranks?.length === 1 ? mm.ranks[0]! : level) : null,
            patch: Object.fromEntries(asList(by.option)!.map((o) => [o, v])),
            tag,
          }));
    const specs = candidates.map((c) => this.cells.firstSpec(this.cells.build(mm, d, c.rank, z, c.patch)));
    if (this.requestMissing([refSpec, ...specs])) return null;
    if (refCount === null || refCount === undefined) {
      this.ctx.issues.add(
        ['budget', 'match'],
        `the runtime could not count \`${budget.match}\` at rank ${level} on \`${d.name}\``,
        'check that the rank fits the model',
      );
      return null;
    }
    const found = specs.map((s) => this.counts[countKey(s)]);
    if (this.refuseEstimated(mm, [refCount, ...found])) return null;
    const best = closest(found, refCount);
    if (best < 0) {
      this.ctx.issues.add(
        [...mm.path, 'name'],
        `no candidate setting of \`${mm.name}\` could be counted on \`${d.name}\``,
        'give candidates with `ranks:` or `match_by: {option, values}`',
      );
      return null;
    }
    return [candidates[best]!];
  }

  /** The settings to expand for an entry on a dataset and zip combination. */
  choices(mm: ResolvedMethod, d: ResolvedDataset, z: ZipCombo): RankChoice[] {
    const budget = this.r.budget;
    if (!mm.desc.needs_rank && (!budget || mm.isInclude || typeof mm.matchBy !== 'object'))
      return [{ rank: null, tag: null }];
    if (!budget || mm.isInclude) return this.plain(mm, z);
    return this.r.budgetLevels.flatMap((level) => this.matched(mm, d, z, level) ?? []);
  }
}

/** The datasets an entry runs on: the recipe's, or an include rule's own (resolved when the recipe lacks them). */
function entryDatasets(r: ResolvedRecipe, mm: ResolvedMethod): ResolvedDataset[] {
  if (!mm.datasets) return r.datasets;
  return mm.datasets
    .map((name) => r.datasetByName.get(name) ?? r.resolveDataset({ name }, mm.path, [...mm.path, 'datasets'])!)
    .filter(Boolean);
}

/**
 * The settings of every (entry, dataset, zip combination), and the specs whose counts budget matching still
 * needs. Budget matching compares counts on the entry's first dataset: the task head adds the same count to
 * every method, so the closest setting there is the closest on every dataset (and the runtime is asked for a
 * fraction of the counts).
 */
export function choosePlans(
  ctx: PlanContext,
  r: ResolvedRecipe,
  cells: Cells,
): { plans: CellPlan[]; countRequests: RunSpec[] } {
  const chooser = new SettingChooser(ctx, r, cells);
  const plans: CellPlan[] = [];
  for (const mm of [...r.methods, ...r.includes]) {
    const ds = entryDatasets(r, mm);
    r.zipCombos.forEach((z) => {
      const choices = ds.length ? chooser.choices(mm, ds[0]!, z) : [];
      for (const d of ds) plans.push({ mm, d, z, choices });
    });
  }
  return { plans, countRequests: [...chooser.requests.values()] };
}
