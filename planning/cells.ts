/**
 * Cells: one (method entry, dataset, rank or budget choice, zip combination) with its training layers
 * composed (planning/compose.ts) and split into fixed values and grid axes, its options (the entry's, then the
 * matching overrides', then a budget patch), targets and seeds. Expanding a cell (expand.ts) gives its runs.
 */
import type { z } from 'zod';
import { TRAINING_FIELDS, type Override, type TrainingLayer } from '../schemas/recipe.js';
import type { ModelSpec, RunSpec, TrainingSpec as TrainingSpecSchema } from '../schemas/runspec.js';
import { defaultTraining, mergeLayers } from './compose.js';
import { SPEC_SCHEMA } from './ids.js';
import { overlayOptions, resolveOptions } from './options.js';
import type {
  Cell,
  PlanContext,
  ResolvedDataset,
  ResolvedMethod,
  ResolvedOptions,
  ResolvedRecipe,
  ZipCombo,
} from './plan-types.js';
import { asList, globMatch, sortedEntries, uniq } from './util.js';

type TrainingSpec = z.infer<typeof TrainingSpecSchema>;

function overrideMatches(o: Override, mm: ResolvedMethod, d: ResolvedDataset, rank: number | null): boolean {
  const ms = asList(o.when.method);
  if (ms && !ms.some((x) => x === mm.name || x === mm.label)) return false;
  const ds = asList(o.when.dataset);
  if (ds && !ds.some((p) => globMatch(p, d.name))) return false;
  const rs = asList(o.when.rank);
  if (rs && (rank === null || !rs.includes(rank))) return false;
  return true;
}

/** The merged training value spec split into grid axes (in TrainingSpec field order) and fixed values. */
function splitTraining(
  spec: Record<string, unknown>,
  lrGroups: readonly string[],
): Pick<Cell, 'trainAxes' | 'trainFixed'> {
  const trainAxes: Cell['trainAxes'] = [];
  const trainFixed: Record<string, unknown> = {};
  for (const f of TRAINING_FIELDS) {
    if (f === 'lr_groups') {
      const groups = (spec.lr_groups as Record<string, unknown> | undefined) ?? {};
      const fixed: Record<string, unknown> = {};
      for (const g of [...lrGroups].sort()) {
        const v = groups[g];
        if (Array.isArray(v)) trainAxes.push({ field: 'lr_groups', group: g, values: uniq(v) });
        else if (v !== undefined) fixed[g] = v;
      }
      trainFixed.lr_groups = fixed;
      continue;
    }
    const v = spec[f];
    if (Array.isArray(v)) trainAxes.push({ field: f, group: null, values: uniq(v) });
    else trainFixed[f] = v === undefined ? null : v;
  }
  return { trainAxes, trainFixed };
}

export class Cells {
  /** Which overrides selected at least one cell (for the "selects no run" warnings). */
  readonly overrideUsed: boolean[];
  readonly device: RunSpec['device'];
  private readonly overrideOptionCache = new Map<string, ResolvedOptions>();

  constructor(
    private readonly ctx: PlanContext,
    private readonly r: ResolvedRecipe,
  ) {
    this.overrideUsed = new Array<boolean>(r.overrides.length).fill(false);
    this.device = ctx.recipe.device ?? 'auto';
  }

  get model(): ModelSpec {
    return this.r.model;
  }

  /** An override's options for a method (checked once per method). */
  private overrideOptions(i: number, mm: ResolvedMethod): ResolvedOptions {
    const key = `${i}\u0000${mm.name}`;
    let r = this.overrideOptionCache.get(key);
    if (!r) {
      const options = this.r.overrides[i]!.options;
      r = resolveOptions(mm.name, mm.desc, options, ['overrides', i, 'options'], this.ctx.issues, false);
      this.overrideOptionCache.set(key, r);
    }
    return r;
  }

  build(
    mm: ResolvedMethod,
    d: ResolvedDataset,
    rank: number | null,
    z: ZipCombo,
    optionPatch?: Record<string, unknown>,
  ): Cell {
    const overrides = this.r.overrides;
    const matched = overrides.map((o, i) => (overrideMatches(o, mm, d, rank) ? i : -1)).filter((i) => i >= 0);
    for (const i of matched) this.overrideUsed[i] = true;
    const layers: (TrainingLayer | undefined)[] = [
      defaultTraining(this.r.model.task),
      this.ctx.recipe.training,
      z.training,
      ...d.layers.map((l) => l.data),
      ...mm.layers.map((l) => l.data),
      ...matched.map((i) => overrides[i]!.training),
    ];
    const spec = mergeLayers(layers);
    const options: ResolvedOptions = { fixed: { ...mm.options.fixed }, axes: mm.options.axes.slice() };
    let targets = mm.targets;
    for (const i of matched) {
      if (overrides[i]!.options) overlayOptions(options, this.overrideOptions(i, mm));
      if (overrides[i]!.targets) targets = overrides[i]!.targets!;
    }
    if (optionPatch) overlayOptions(options, { fixed: optionPatch, axes: [] });
    return {
      mm,
      d,
      rank,
      ...splitTraining(spec, mm.desc.lr_groups),
      evalBatchFollows: spec.eval_batch_size === undefined,
      options: { fixed: sortedEntries(options.fixed, true), axes: options.axes },
      targets,
      seeds: mm.seeds ?? this.r.seeds,
    };
  }

  /** Grid combinations of a cell (before exclude rules and deduplication). */
  static size(c: Cell): number {
    return (
      c.trainAxes.reduce((n, a) => n * a.values.length, 1) *
      c.options.axes.reduce((n, a) => n * a.values.length, 1) *
      c.seeds.length
    );
  }

  /** The training spec of one pick of the training axes. */
  static trainingOf(c: Cell, pick: unknown[]): TrainingSpec {
    const v: Record<string, unknown> = { ...c.trainFixed };
    const groups: Record<string, unknown> = { ...(c.trainFixed.lr_groups as object) };
    c.trainAxes.forEach((a, i) => {
      if (a.group !== null) groups[a.group] = pick[i];
      else v[a.field] = pick[i];
    });
    for (const g of c.mm.desc.lr_groups) if (groups[g] === undefined) groups[g] = v.lr;
    v.lr_groups = Object.fromEntries(Object.entries(groups).sort(([a], [b]) => (a < b ? -1 : 1)));
    if (c.evalBatchFollows) v.eval_batch_size = v.batch_size;
    // in TrainingSpec field order, for readable JSON (the id does not depend on key order)
    const t: Record<string, unknown> = {};
    for (const f of TRAINING_FIELDS) t[f] = v[f];
    return t as TrainingSpec;
  }

  /** The method options of one pick of the option axes. */
  static optionsOf(c: Cell, pick: unknown[]): Record<string, unknown> {
    if (c.options.axes.length === 0) return c.options.fixed;
    const o: Record<string, unknown> = { ...c.options.fixed };
    c.options.axes.forEach((a, i) => (o[a.key] = pick[i]));
    return sortedEntries(o, true);
  }

  /** The spec of a cell's first grid point (what budget matching counts). */
  firstSpec(c: Cell): RunSpec {
    return {
      schema: SPEC_SCHEMA,
      model: this.r.model,
      dataset: c.d.spec,
      method: {
        name: c.mm.name,
        rank: c.rank,
        options: Cells.optionsOf(
          c,
          c.options.axes.map((a) => a.values[0]),
        ),
        targets: c.targets,
      },
      training: Cells.trainingOf(
        c,
        c.trainAxes.map((a) => a.values[0]),
      ),
      seed: c.seeds[0] ?? 0,
      device: this.device,
    };
  }
}
