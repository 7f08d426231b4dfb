/**
 * The sweep planner: a validated Recipe -> the exact, deduplicated list of fully resolved runs.
 *
 * Pure and deterministic (no I/O, no clock, no Node built-ins), so workflows can import it. Method option
 * schemas come in as data (the committed `describe` snapshot); trainable-parameter counts, which only the
 * runtime can compute, come in as a table keyed by `countKey(spec)`. When budget matching needs counts the
 * table lacks, the result lists them in `countRequests` (and no runs): the caller counts them with the
 * runtime and plans again.
 *
 * Three phases with explicit data between them (planning/plan-types.ts):
 * 1. resolve the recipe (resolve.ts): model, datasets and method entries over their settings (composition
 *    rules written once in compose.ts), options (options.ts), zip, budget, overrides, exclude rules checked;
 * 2. choose settings and budget (budget.ts): ranks, or the budget-matched setting per reference rank, for
 *    every (entry, dataset, zip combination), building cells (cells.ts);
 * 3. expand to runs and ids (expand.ts, ids.ts), then label them (labels.ts).
 *
 * Expansion order (and so the order of `runs`): method entries, then `include` rules; within each, datasets;
 * ranks (or budget levels); `zip` positions; training grid axes (in TrainingSpec field order); option grid
 * axes; seeds. A run's id is `run-` + SHA-256 of the canonical JSON of its spec, so a run met twice (from two
 * entries, or from two recipes) is one run.
 */
import { DEFAULT_MAX_RUNS, type Recipe } from '../schemas/recipe.js';
import type { PlannedRun, RunSpec } from '../schemas/runspec.js';
import { choosePlans } from './budget.js';
import { Cells } from './cells.js';
import { Expansion, GRID_LIMIT, TooManyRuns, type CellJob } from './expand.js';
import { countKey, fullModelSpec, paramsOf } from './ids.js';
import { assignSettings } from './labels.js';
import type { CountTable, PlanContext, PlanOptions, PlanResult } from './plan-types.js';
import { makeContext, resolveRecipe } from './resolve.js';

export { DEFAULT_RANK_LADDER } from './budget.js';
export { countableSpec, countKey, fullModelSpec, runId, SPEC_SCHEMA, sweepId } from './ids.js';
export type { CountResult, CountTable, PlanOptions, PlanResult } from './plan-types.js';

function failed(ctx: PlanContext): PlanResult {
  return { runs: [], issues: ctx.issues.items, warnings: ctx.warnings.items, countRequests: [], gridSize: 0 };
}

/** The max_runs issue, with the size of the whole grid. */
function tooManyRuns(ctx: PlanContext, total: number, maxRuns: number): PlanResult {
  ctx.issues.add(
    ctx.recipe.max_runs !== undefined ? ['max_runs'] : [],
    `the recipe expands to more than max_runs=${maxRuns} runs (${total} grid combinations before exclude rules and deduplication)`,
    'shrink an axis (ranks, seeds, a training list), add `exclude` rules, or raise `max_runs`',
  );
  return failed(ctx);
}

/** Warnings for exclude rules and overrides that touched nothing; the issue of an empty plan. */
function checkExpansion(ctx: PlanContext, x: Expansion, cells: Cells): void {
  x.excluder.used.forEach((used, i) => {
    if (!used) ctx.warnings.add(['exclude', i], 'this exclude rule matches no run', 'check its values, or remove it');
  });
  cells.overrideUsed.forEach((used, i) => {
    if (!used)
      ctx.warnings.add(
        ['overrides', i, 'when'],
        'this override selects no run',
        'check its `when` values, or remove it',
      );
  });
  if (x.runs.length > 0) return;
  const excluded = x.excluder.excluded;
  ctx.issues.add(
    excluded > 0 ? ['exclude'] : [],
    excluded > 0
      ? `the recipe expands to zero runs: the exclude rules remove all ${excluded} grid runs`
      : 'the recipe expands to zero runs',
    excluded > 0 ? 'loosen the exclude rules' : 'add datasets, methods, ranks or seeds',
  );
}

export function planRecipe(recipe: Recipe, opts: PlanOptions): PlanResult {
  const ctx = makeContext(recipe, opts);
  const maxRuns = opts.maxRuns ?? recipe.max_runs ?? DEFAULT_MAX_RUNS;
  // 1. resolve
  const resolved = resolveRecipe(ctx);
  if (ctx.issues.length) return failed(ctx);
  // 2. choose settings and budget
  const cells = new Cells(ctx, resolved);
  const { plans, countRequests } = choosePlans(ctx, resolved, cells);
  if (ctx.issues.length) return failed(ctx);
  if (countRequests.length) return { runs: [], issues: [], warnings: ctx.warnings.items, countRequests, gridSize: 0 };
  // 3. expand to runs and ids. Count first: a grid far beyond max_runs is refused before any run is built
  // (exclude rules and deduplication can only shrink a grid so far; past GRID_LIMIT combinations it is not
  // expanded at all).
  const jobs: CellJob[] = plans.flatMap((p) =>
    p.choices.map((ch) => ({
      cell: cells.build(p.mm, p.d, ch.rank, p.z, ch.patch),
      tag: ch.tag,
      apply: !p.mm.isInclude,
    })),
  );
  const total = jobs.reduce((n, j) => n + Cells.size(j.cell), 0);
  if (total > maxRuns && total > GRID_LIMIT) return tooManyRuns(ctx, total, maxRuns);
  const x = new Expansion(ctx, cells, maxRuns);
  try {
    x.expandAll(jobs);
  } catch (e) {
    if (!(e instanceof TooManyRuns)) throw e;
    return tooManyRuns(ctx, total, maxRuns);
  }
  if (ctx.issues.length) return failed(ctx);
  checkExpansion(ctx, x, cells);
  if (ctx.issues.length) return failed(ctx);
  assignSettings(x.runs, x.metas, recipe.tags ?? []);
  return { runs: x.runs, issues: [], warnings: ctx.warnings.items, countRequests: [], gridSize: x.gridSize };
}

/** Fill `params` of planned runs from a count table (e.g. after counting them with the runtime). */
export function attachCounts(runs: PlannedRun[], counts: CountTable): void {
  for (const r of runs) {
    // A run that reads an upstream run's model is sized by that model: known once it exists.
    const c = r.spec.inputs ? null : counts[countKey(r.spec)];
    r.params = c ? paramsOf(c) : null;
  }
}

/** The specs to count so every run has params and a full-model size (deduplicated by count key). */
export function countRequestsFor(
  runs: readonly PlannedRun[],
  counts: CountTable = {},
  withFullModel = true,
): RunSpec[] {
  const out = new Map<string, RunSpec>();
  for (const r of runs) {
    if (r.spec.inputs) continue; // counted once the upstream model exists (the runtime refuses before)
    const specs = withFullModel ? [r.spec, fullModelSpec(r.spec)] : [r.spec];
    for (const s of specs) {
      const k = countKey(s);
      if (!(k in counts) && !out.has(k)) out.set(k, s);
    }
  }
  return [...out.values()];
}
