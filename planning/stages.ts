/**
 * Stages: recipes whose runs build on runs (pretrain → fine-tune, compress → fine-tune, prune → train → recover).
 *
 * Pure and deterministic like the planner it wraps. Each stage plans as a recipe of its own (`stageRecipe`: the
 * recipe's fields with the stage's on top; its `training` merges over the recipe's by the composition rules of
 * compose.ts: `lr_groups` group by group, `max_steps`/`epochs` clearing each other) through `planRecipe`; then every run gets its stage's `procedure`
 * and, for a stage with `from`, one copy per upstream run it pairs with, whose `inputs` name that run's artifact
 * (and, for the other inputs, the matching ancestors'). Because the upstream run id is part of the spec, it is
 * part of the downstream run's id: a finished upstream run is never redone when only a later stage's grid
 * grows, and resubmitting a recipe runs nothing. Runs come out in stage order (upstream first).
 *
 * Rules (recipes/README.md has the user's view):
 * - `from: S` feeds the procedure's first declared input; `from: {input: S, ...}` names them; the first entry
 *   drives (one run per driving run × grid point, or only the driving run of the same seed with `match: seed`);
 *   each other stage is an ancestor of the driving run (its run there), or a stage beside it: its runs of the
 *   driving run's seed that read exactly the runs the driving run reads (Break-for-Make's make stage reads the
 *   content and the style break runs of one base model; `combine` two plain adapters), every such run (a grid
 *   there multiplies the pairs) — their labels join the setting.
 * - An input of kind K reads the upstream run's artifact named K (`model`, `adapter`); a `finetune` upstream
 *   is asked for it through its `outputs` option, every other procedure must declare it among its outputs.
 * - A stage whose procedure reads an `adapter` (LoRAM's `recover`) takes the spec of the run that trained it
 *   (model, method, dataset, seed, training); only its own `options` vary — unless it names its own `datasets`
 *   (B4M's make stage trains on the style data): then it plans its own grid like any other stage.
 * - A run's label `stage` is its stage; its `setting` ends with the upstream run's label (`← compress lord r64
 *   ratio=0.5 ← pretrain full`), so tables keep runs built on different upstream runs apart and fold the seeds
 *   of each.
 */
import type { OptionSchema, ProcedureDescription } from '../schemas/describe.js';
import type { Recipe, StageEntry } from '../schemas/recipe.js';
import type { InputRef, PlannedRun, RunSpec } from '../schemas/runspec.js';
import { canonicalJson } from './canonical.js';
import { mergeLayers } from './compose.js';
import { IssueList, type FieldPath, type PlanIssue } from './issues.js';
import { planRecipe, runId, type PlanOptions, type PlanResult } from './planner.js';
import { suggestHint } from './suggest.js';

export const DEFAULT_PROCEDURE = 'finetune';

export interface StagePlanOptions extends PlanOptions {
  /** Procedure registry: `procedures` of `describe` (or of the committed snapshot). */
  procedures: Record<string, ProcedureDescription>;
}

interface Resolved {
  name: string;
  entry: StageEntry;
  procedure: string;
  /** input name -> upstream stage, in the order written (the first drives). */
  from: [string, string][];
  /** artifact names later stages read from this one. */
  needed: Set<string>;
}

const INHERIT_WITHOUT_METHODS = ['budget', 'zip', 'overrides', 'include', 'exclude'] as const;

/** The recipe a stage plans as (see the module docstring). */
export function stageRecipe(recipe: Recipe, stage: StageEntry): Recipe {
  const { stages: _stages, ...base } = recipe;
  const out: Recipe = { ...base };
  if (stage.datasets) out.datasets = stage.datasets;
  if (stage.methods) {
    out.methods = stage.methods;
    for (const k of INHERIT_WITHOUT_METHODS) delete out[k];
  }
  for (const k of ['ranks', 'seeds', ...INHERIT_WITHOUT_METHODS] as const) {
    if (stage[k] !== undefined) (out as Record<string, unknown>)[k] = stage[k];
  }
  // the stage's training over the recipe's, by the composition rules (lr_groups merge, max_steps/epochs)
  if (stage.training) out.training = mergeLayers([recipe.training, stage.training]) as Recipe['training'];
  return out;
}

/** Stage names in dependency order, or issues (unknown stages, cycles). */
function order(stages: Record<string, Resolved>, issues: IssueList): string[] {
  const names = Object.keys(stages);
  const done: string[] = [];
  const state = new Map<string, 'visiting' | 'done'>();
  const visit = (n: string, trail: string[]): void => {
    if (state.get(n) === 'done') return;
    if (state.get(n) === 'visiting') {
      issues.add(['stages', n, 'from'], `stages depend on each other in a circle (${[...trail, n].join(' -> ')})`);
      return;
    }
    state.set(n, 'visiting');
    for (const [, up] of stages[n]!.from) if (stages[up]) visit(up, [...trail, n]);
    state.set(n, 'done');
    done.push(n);
  };
  for (const n of names) visit(n, []);
  return done;
}

/** A stage's `from` as (input, upstream stage) pairs: a bare stage name feeds the first declared input. */
function stageFrom(name: string, entry: StageEntry, procedure: string, desc: ProcedureDescription, issues: IssueList) {
  const at: FieldPath = ['stages', name];
  const declared = Object.keys(desc.inputs);
  if (typeof entry.from === 'string') {
    if (declared.length) return [[declared[0]!, entry.from]] as [string, string][];
    issues.add([...at, 'from'], `procedure \`${procedure}\` reads no input`, 'remove `from`');
    return [];
  }
  if (!entry.from) return [];
  const from = Object.entries(entry.from);
  for (const [input] of from) {
    if (!desc.inputs[input])
      issues.add(
        [...at, 'from', input],
        `procedure \`${procedure}\` has no input \`${input}\``,
        suggestHint(input, declared, 'inputs'),
      );
  }
  return from;
}

/** Each upstream stage must exist and not be the stage itself; each required input must be fed. */
function checkFrom(
  name: string,
  entry: StageEntry,
  procedure: string,
  desc: ProcedureDescription,
  from: [string, string][],
  names: string[],
  issues: IssueList,
): void {
  const at: FieldPath = ['stages', name];
  for (const [input, up] of from) {
    if (!names.includes(up))
      issues.add(
        [...at, 'from', ...(typeof entry.from === 'string' ? [] : [input])],
        `no stage \`${up}\``,
        suggestHint(
          up,
          names.filter((n) => n !== name),
          'stages',
        ),
      );
    else if (up === name) issues.add([...at, 'from'], 'a stage cannot read its own runs');
  }
  for (const [input, d] of Object.entries(desc.inputs)) {
    if (d.required && !from.some(([i]) => i === input)) {
      issues.add(
        [...at, 'from'],
        `procedure \`${procedure}\` needs input \`${input}\` (${d.help})`,
        `write from: {${[...from.map(([i, s]) => `${i}: ${s}`), `${input}: <stage>`].join(', ')}}`,
      );
    }
  }
}

/** What later stages read of each stage (`needed`), and the check that its procedure writes it. */
function checkNeeded(stages: Record<string, Resolved>, procs: Record<string, ProcedureDescription>, issues: IssueList) {
  for (const s of Object.values(stages)) {
    for (const [input, up] of s.from) {
      const kind = procs[s.procedure]!.inputs[input]?.kind;
      if (kind && stages[up]) stages[up].needed.add(kind);
    }
  }
  for (const s of Object.values(stages)) {
    const outs = procs[s.procedure]!.outputs;
    for (const kind of s.needed) {
      if (s.procedure !== DEFAULT_PROCEDURE && outs[kind] !== kind)
        issues.add(
          ['stages', s.name, 'procedure'],
          `procedure \`${s.procedure}\` writes no \`${kind}\` artifact, which a later stage reads`,
          `it writes: ${Object.keys(outs).join(', ') || 'nothing'}`,
        );
    }
  }
}

function resolveStages(recipe: Recipe, procs: Record<string, ProcedureDescription>, issues: IssueList) {
  const stages: Record<string, Resolved> = {};
  const names = Object.keys(recipe.stages ?? {});
  for (const [name, entry] of Object.entries(recipe.stages ?? {})) {
    const procedure = entry.procedure ?? DEFAULT_PROCEDURE;
    const desc = procs[procedure];
    if (!desc) {
      issues.add(
        ['stages', name, 'procedure'],
        `unknown procedure \`${procedure}\``,
        suggestHint(procedure, Object.keys(procs), 'procedures'),
      );
      continue;
    }
    const from = stageFrom(name, entry, procedure, desc, issues);
    checkFrom(name, entry, procedure, desc, from, names, issues);
    stages[name] = { name, entry, procedure, from, needed: new Set() };
  }
  checkNeeded(stages, procs, issues);
  return stages;
}

/** Procedure options checked against the procedure's schema; list values are grid axes. */
function optionVariants(s: Resolved, desc: ProcedureDescription, issues: IssueList): Record<string, unknown>[] {
  const at: FieldPath = ['stages', s.name, 'options'];
  const axes: [string, unknown[]][] = [];
  for (const [k, v] of Object.entries(s.entry.options ?? {})) {
    const schema = desc.options[k];
    if (!schema) {
      issues.add(
        [...at, k],
        `unknown option \`${k}\` of procedure \`${s.procedure}\``,
        suggestHint(k, Object.keys(desc.options), 'options'),
      );
      continue;
    }
    const values = Array.isArray(v) && schema.type !== 'list' ? v : [v];
    values.forEach((x) => checkValue(x, schema, [...at, k], issues));
    axes.push([k, values]);
  }
  let out: Record<string, unknown>[] = [{}];
  for (const [k, values] of axes) out = out.flatMap((o) => values.map((x) => ({ ...o, [k]: x })));
  return out;
}

function checkValue(v: unknown, s: OptionSchema, path: FieldPath, issues: IssueList): void {
  const ok =
    s.type === 'boolean'
      ? typeof v === 'boolean'
      : s.type === 'integer'
        ? Number.isInteger(v)
        : s.type === 'number'
          ? typeof v === 'number'
          : s.type === 'string'
            ? typeof v === 'string'
            : s.type === 'list'
              ? Array.isArray(v)
              : (s.choices ?? []).some((c) => c === v);
  if (!ok) {
    const want =
      s.type === 'enum' ? `one of ${(s.choices ?? []).map((c) => `\`${String(c)}\``).join(', ')}` : `a ${s.type}`;
    issues.add(path, `expected ${want}, got \`${JSON.stringify(v)}\``, s.help || undefined);
    return;
  }
  if (typeof v === 'number' && ((s.min !== undefined && v < s.min) || (s.max !== undefined && v > s.max)))
    issues.add(path, `\`${v}\` is outside [${s.min ?? '-∞'}, ${s.max ?? '∞'}]`, s.help || undefined);
}

function withProcedure(spec: RunSpec, name: string, options: Record<string, unknown>): RunSpec {
  const { procedure: _p, ...rest } = spec;
  if (name === DEFAULT_PROCEDURE && Object.keys(options).length === 0) return rest;
  return { ...rest, procedure: { name, options } };
}

/** `← compress lord r64 ratio=0.5 ← pretrain full`: the upstream run, and its own upstream chain. */
function upstreamLabel(stage: string, r: PlannedRun): string {
  const parts = [r.labels.method + (r.labels.rank !== null ? ` r${r.labels.rank}` : '')];
  if (r.labels.setting) parts.push(r.labels.setting);
  return `← ${stage} ${parts.join(' ')}`;
}

/** Plan a recipe with `stages` (a recipe without them plans as before). */
export function planStages(recipe: Recipe, opts: StagePlanOptions): PlanResult {
  if (!recipe.stages || Object.keys(recipe.stages).length === 0) return planRecipe(recipe, opts);
  const issues = new IssueList();
  const warnings: PlanIssue[] = [];
  const stages = resolveStages(recipe, opts.procedures, issues);
  const names = order(stages, issues);
  if (issues.length) return { runs: [], issues: issues.items, warnings, countRequests: [], gridSize: 0 };
  const byStage = new Map<string, PlannedRun[]>();
  const stageOf = new Map<string, { stage: string; run: PlannedRun }>();
  const all: PlannedRun[] = [];
  const countRequests: RunSpec[] = [];
  let gridSize = 0;
  for (const name of names) {
    const s = stages[name]!;
    const sub = planRecipe(stageRecipe(recipe, s.entry), { ...opts, maxRuns: Number.MAX_SAFE_INTEGER });
    const own = new Set(Object.keys(s.entry));
    const mapPath = (p: FieldPath): FieldPath => (own.has(String(p[0])) ? ['stages', name, ...p] : p);
    for (const i of sub.issues) issues.add(mapPath(i.path), i.message, i.hint);
    warnings.push(...sub.warnings.map((w) => ({ ...w, path: mapPath(w.path) })));
    countRequests.push(...sub.countRequests);
    gridSize += sub.gridSize;
    const desc = opts.procedures[s.procedure]!;
    if (desc.methods) {
      const bad = [...new Set(sub.runs.map((r) => r.spec.method.name))].filter((m) => !desc.methods!.includes(m));
      if (bad.length)
        issues.add(
          own.has('methods') ? ['stages', name, 'methods'] : ['methods'],
          `procedure \`${s.procedure}\` runs ${desc.methods.join(', ')}, not ${bad.join(', ')}`,
          `give stage \`${name}\` methods: [${desc.methods[0]}]`,
        );
    }
    const variants = optionVariants(s, desc, issues);
    if (issues.length) continue;
    const runs = expandStage(s, sub.runs, variants, byStage, stageOf, opts.procedures, issues);
    byStage.set(name, runs);
    for (const r of runs) {
      if (stageOf.has(r.id)) continue;
      stageOf.set(r.id, { stage: name, run: r });
      all.push(r);
    }
  }
  const maxRuns = opts.maxRuns ?? recipe.max_runs ?? 2000;
  if (!issues.length && all.length > maxRuns)
    issues.add(
      ['max_runs'],
      `the stages plan ${all.length} runs, more than max_runs (${maxRuns})`,
      'raise max_runs or shrink a grid',
    );
  if (issues.length || countRequests.length)
    return { runs: [], issues: issues.items, warnings, countRequests: dedupSpecs(countRequests), gridSize };
  return { runs: all, issues: [], warnings, countRequests: [], gridSize };
}

function dedupSpecs(specs: RunSpec[]): RunSpec[] {
  const seen = new Set<string>();
  return specs.filter((s) => {
    const k = canonicalJson(s);
    if (seen.has(k)) return false;
    seen.add(k);
    return true;
  });
}

/** One stage's runs: procedure and options attached, paired with the upstream runs they read from. */
function expandStage(
  s: Resolved,
  grid: PlannedRun[],
  variants: Record<string, unknown>[],
  byStage: Map<string, PlannedRun[]>,
  stageOf: Map<string, { stage: string; run: PlannedRun }>,
  procs: Record<string, ProcedureDescription>,
  issues: IssueList,
): PlannedRun[] {
  const desc = procs[s.procedure]!;
  const outputs = s.procedure === DEFAULT_PROCEDURE && s.needed.size ? { outputs: [...s.needed].sort() } : {};
  const varying = Object.keys(variants[0] ?? {}).filter((k) =>
    variants.some((v) => canonicalJson(v[k]) !== canonicalJson(variants[0]![k])),
  );
  const settingOf = (v: Record<string, unknown>): string =>
    varying.map((k) => `${k}=${typeof v[k] === 'object' ? canonicalJson(v[k]) : String(v[k])}`).join(' ');
  const make = (
    base: PlannedRun,
    v: Record<string, unknown>,
    inputs: Record<string, InputRef> | null,
    upLabel: string | null,
  ): PlannedRun => {
    let spec = withProcedure(base.spec, s.procedure, { ...v, ...outputs });
    if (inputs) spec = { ...spec, inputs };
    const setting = [base.labels.setting, settingOf(v), upLabel ?? ''].filter(Boolean).join(' ');
    return {
      id: runId(spec),
      spec,
      labels: { ...base.labels, setting, stage: s.name },
      params: inputs ? null : base.params,
    };
  };
  if (!s.from.length) return grid.flatMap((g) => variants.map((v) => make(g, v, null, null)));
  const [[driveInput, driveStage], ...others] = s.from as [[string, string], ...[string, string][]];
  const adapterFed =
    !s.entry.datasets &&
    Object.entries(desc.inputs).some(([i, d]) => d.kind === 'adapter' && s.from.some(([x]) => x === i));
  const find = (u: PlannedRun, stage: string) => pairedRuns(u, stage, byStage, stageOf);
  const out: PlannedRun[] = [];
  for (const u of byStage.get(driveStage) ?? []) {
    let combos: { inputs: Record<string, InputRef>; label: string }[] = [
      {
        inputs: { [driveInput]: { run: u.id, artifact: desc.inputs[driveInput]!.kind } },
        label: upstreamLabel(driveStage, u),
      },
    ];
    for (const [input, stage] of others) {
      const found = find(u, stage);
      if (!found.runs.length) {
        issues.add(
          ['stages', s.name, 'from', input],
          `stage \`${stage}\` is neither upstream of stage \`${driveStage}\` nor built on the same runs with the same seed`,
          `\`${input}\` must come from a stage that \`${driveStage}\` builds on, or from one beside it (same upstream runs and seed)`,
        );
        return [];
      }
      const artifact = desc.inputs[input]!.kind;
      combos = combos.flatMap((c) =>
        found.runs.map((a) => ({
          inputs: { ...c.inputs, [input]: { run: a.id, artifact } },
          label: found.sibling ? `${c.label} ${upstreamLabel(stage, a)}` : c.label,
        })),
      );
    }
    const points = adapterFed ? [{ ...u, labels: { ...u.labels, setting: '' } }] : grid;
    for (const { inputs, label } of combos)
      for (const g of points) {
        if (!adapterFed && s.entry.match === 'seed' && g.spec.seed !== u.spec.seed) continue;
        for (const v of variants) out.push(make(adapterFed ? { ...g, spec: stripStage(u.spec) } : g, v, inputs, label));
      }
  }
  return out;
}

/**
 * The runs of `stage` that driving run `u` pairs with: its ancestor in that stage (one), else the runs beside it —
 * runs of that stage with u's seed that read exactly the runs u reads (two break runs on one base model, the two
 * plain adapters a `combine` run adds up): every one of them (a grid there multiplies the pairs).
 */
function pairedRuns(
  u: PlannedRun,
  stage: string,
  byStage: Map<string, PlannedRun[]>,
  stageOf: Map<string, { stage: string; run: PlannedRun }>,
): { runs: PlannedRun[]; sibling: boolean } {
  const seen = new Set<string>();
  const walk = (x: PlannedRun): PlannedRun | null => {
    if (seen.has(x.id)) return null;
    seen.add(x.id);
    if (stageOf.get(x.id)?.stage === stage) return x;
    for (const ref of Object.values(x.spec.inputs ?? {})) {
      const up = stageOf.get(ref.run);
      const hit = up ? walk(up.run) : null;
      if (hit) return hit;
    }
    return null;
  };
  const a = walk(u);
  if (a) return { runs: [a], sibling: false };
  const reads = (r: PlannedRun): string =>
    canonicalJson([...new Set(Object.values(r.spec.inputs ?? {}).map((x) => x.run))].sort());
  const runs = (byStage.get(stage) ?? []).filter((r) => r.spec.seed === u.spec.seed && reads(r) === reads(u));
  return { runs, sibling: true };
}

/** A run's spec without its procedure and inputs (the base of a stage that takes an upstream run's spec). */
function stripStage(spec: RunSpec): RunSpec {
  const { procedure: _p, inputs: _i, ...rest } = spec;
  return rest;
}
