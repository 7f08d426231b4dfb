/**
 * Phase 3 of planning: expand the chosen cells to runs with ids. Per cell: the training grid (TrainingSpec
 * field order), then the option grid, then seeds; exclude rules drop runs (not of `include` rules); a run id
 * met before is skipped (deduplication). The id is SHA-256 of the spec's canonical JSON, hashed from a prefix
 * shared by the runs of one (cell, option pick), which is what keeps 100,000 runs fast (bench/plan_bench.ts).
 */
import type { z } from 'zod';
import type { ExcludeRule } from '../schemas/recipe.js';
import type { MethodSpec, PlannedRun, RunSpec, TrainingSpec as TrainingSpecSchema } from '../schemas/runspec.js';
import { canonicalJson } from './canonical.js';
import { Cells } from './cells.js';
import { Sha256, type IncrementalSha256 } from './hash.js';
import { countKey, paramsOf, SPEC_SCHEMA } from './ids.js';
import type { Cell, CountResult, CountTable, PlanContext, RunMeta } from './plan-types.js';
import { asList, globMatch, product } from './util.js';

type TrainingSpec = z.infer<typeof TrainingSpecSchema>;

/** Thrown when the runs exceed max_runs (caught by the planner, which reports the grid's size). */
export class TooManyRuns extends Error {}
/** Grid combinations past which a plan over max_runs is refused without expanding it. */
export const GRID_LIMIT = 1_000_000;
/** Training grids up to this size keep their built specs for the next option pick. */
const TRAINING_MEMO_LIMIT = 65_536;

/** A cell to expand, with its budget tag and whether exclude rules apply to it (not to `include` rules). */
export interface CellJob {
  cell: Cell;
  tag: string | null;
  apply: boolean;
}

/** Training specs of a cell by position in its training grid, built when first reached. */
function trainingMemo(c: Cell): (ti: number, pick: unknown[]) => { training: TrainingSpec; canon: string } {
  // Never the whole training grid up front (three lists of 1,000 values are 10^9 combinations); kept for the
  // next option pick when the grid is small.
  const count = c.trainAxes.reduce((n, a) => n * a.values.length, 1);
  const memo: ({ training: TrainingSpec; canon: string } | undefined)[] | null =
    count <= TRAINING_MEMO_LIMIT ? [] : null;
  return (ti, pick) => {
    const hit = memo?.[ti];
    if (hit) return hit;
    const training = Cells.trainingOf(c, pick);
    const t = { training, canon: canonicalJson(training) };
    if (memo) memo[ti] = t;
    return t;
  };
}

/** Exclude rules with their values in matchable form, and which of them matched a run. */
class Excluder {
  readonly used: boolean[];
  excluded = 0;
  private readonly sets;

  constructor(excludes: readonly ExcludeRule[]) {
    this.used = new Array<boolean>(excludes.length).fill(false);
    const canon = (m: Record<string, unknown> | undefined) =>
      Object.entries(m ?? {}).map(([k, v]) => [k, (Array.isArray(v) ? v : [v]).map(canonicalJson)] as const);
    this.sets = excludes.map((x) => ({
      method: asList(x.method),
      label: asList(x.label),
      dataset: asList(x.dataset),
      rank: asList(x.rank),
      seed: asList(x.seed),
      training: canon(x.training),
      options: canon(x.options),
    }));
  }

  get any(): boolean {
    return this.sets.length > 0;
  }

  /** Whether some rule drops this run (marking every rule that does). */
  drops(c: Cell, training: TrainingSpec, options: Record<string, unknown>, seed: number): boolean {
    let hit = false;
    this.sets.forEach((x, i) => {
      if (x.method && !x.method.includes(c.mm.name)) return;
      if (x.label && (c.mm.label === null || !x.label.includes(c.mm.label))) return;
      if (x.dataset && !x.dataset.some((p) => globMatch(p, c.d.name))) return;
      if (x.rank && (c.rank === null || !x.rank.includes(c.rank))) return;
      if (x.seed && !x.seed.includes(seed)) return;
      for (const [k, vals] of x.training)
        if (!vals.includes(canonicalJson((training as Record<string, unknown>)[k] ?? null))) return;
      for (const [k, vals] of x.options) if (!(k in options) || !vals.includes(canonicalJson(options[k]))) return;
      this.used[i] = true;
      hit = true;
    });
    return hit;
  }
}

/** The runs of the expanded cells, in order, with what labels need. */
export class Expansion {
  readonly runs: PlannedRun[] = [];
  readonly metas: RunMeta[] = [];
  gridSize = 0;
  readonly excluder: Excluder;
  private readonly byId = new Set<string>();
  private readonly counts: CountTable;
  private readonly haveCounts: boolean;
  private readonly newHash: () => IncrementalSha256;
  private readonly scratch: IncrementalSha256;
  private readonly modelCanon: string;

  constructor(
    ctx: PlanContext,
    private readonly cells: Cells,
    private readonly maxRuns: number,
  ) {
    this.excluder = new Excluder(ctx.recipe.exclude ?? []);
    this.counts = ctx.opts.counts ?? {};
    this.haveCounts = Object.keys(this.counts).length > 0;
    this.newHash = ctx.opts.sha256 ?? (() => new Sha256());
    this.scratch = this.newHash();
    this.modelCanon = canonicalJson(cells.model);
  }

  /** Expand the cells, in order. Throws TooManyRuns past max_runs. */
  expandAll(jobs: readonly CellJob[]): void {
    for (const x of jobs) this.expand(x.cell, x.tag, x.apply);
  }

  /** Expand one cell: training picks × option picks × seeds. */
  expand(c: Cell, tag: string | null, applyExclude: boolean): void {
    this.gridSize += Cells.size(c);
    const datasetCanon = canonicalJson(c.d.spec);
    const trainAxisValues = c.trainAxes.map((a) => a.values);
    const trainingAt = trainingMemo(c);
    product(
      c.options.axes.map((a) => a.values),
      (opick) => {
        const options = Cells.optionsOf(c, opick);
        const method: MethodSpec = { name: c.mm.name, rank: c.rank, options, targets: c.targets };
        const prefix = this.newHash().update(
          `{"dataset":${datasetCanon},"device":${JSON.stringify(this.cells.device)},"method":${canonicalJson(method)},"model":${this.modelCanon},"schema":"${SPEC_SCHEMA}","seed":`,
        );
        const keyByHead = new Map<boolean, string>();
        let ti = 0;
        product(trainAxisValues, (tpick) => {
          const { training, canon } = trainingAt(ti++, tpick);
          for (const seed of c.seeds) {
            if (applyExclude && this.excluder.any && this.excluder.drops(c, training, options, seed)) {
              this.excluder.excluded++;
              continue;
            }
            const id = 'run-' + this.scratch.copyFrom(prefix).update(`${seed},"training":${canon}}`).hex().slice(0, 32);
            this.add(id, c, method, training, seed, tag, keyByHead);
          }
        });
      },
    );
  }

  private add(
    id: string,
    c: Cell,
    method: MethodSpec,
    training: TrainingSpec,
    seed: number,
    tag: string | null,
    keyByHead: Map<boolean, string>,
  ): void {
    if (this.byId.has(id)) return;
    if (this.runs.length >= this.maxRuns) throw new TooManyRuns();
    this.byId.add(id);
    const model = this.cells.model;
    const spec: RunSpec = {
      schema: SPEC_SCHEMA,
      model,
      dataset: c.d.spec,
      method,
      training,
      seed,
      device: this.cells.device,
    };
    let cnt: CountResult | null | undefined;
    if (this.haveCounts) {
      let k = keyByHead.get(training.train_head);
      if (k === undefined) keyByHead.set(training.train_head, (k = countKey(spec)));
      cnt = this.counts[k];
    }
    this.runs.push({
      id,
      spec,
      labels: { model: model.name, method: c.mm.name, rank: c.rank, dataset: c.d.label, seed, setting: '', tags: [] },
      params: cnt ? paramsOf(cnt) : null,
    });
    this.metas.push({ entry: c.mm, budgetTag: tag });
  }
}
