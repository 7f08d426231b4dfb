/**
 * Phase 1 of planning: resolve the recipe. The model spec; every dataset entry over its `dataset_settings`
 * and the catalogue's defaults; every method entry (and `include` rule) over its `method_settings`, options
 * checked against `describe`; seeds, ranks, the zip groups' combinations, budget levels, overrides and
 * exclude rules checked. Issues are added in recipe order (model, training, datasets, methods, include, lr
 * groups, zip, budget, overrides, exclude), so messages come out in the order a reader meets the fields.
 */
import type { z } from 'zod';
import {
  TRAINING_FIELDS,
  type DatasetEntry,
  type MethodEntry,
  type Recipe,
  type TrainingLayer,
} from '../schemas/recipe.js';
import { TrainingSpec as TrainingSpecSchema, type DatasetSpec, type ModelSpec } from '../schemas/runspec.js';
import {
  BUILTIN_MODELS,
  datasetDefaults as catalogDefaults,
  datasetLabel,
  isOwnData,
  knownDatasets,
  MNLI_SPLIT_NAMES,
  ownDataDefaults,
  type DatasetDefaults,
} from './catalog.js';
import { dataSource, entryOver } from './compose.js';
import { IssueList, type FieldPath } from './issues.js';
import { checkOption, overlayOptions, resolveOptions } from './options.js';
import type {
  Layer,
  PlanContext,
  PlanOptions,
  ResolvedDataset,
  ResolvedMethod,
  ResolvedRecipe,
  Task,
  ZipCombo,
} from './plan-types.js';
import { suggestHint } from './suggest.js';
import { asList, product, uniq } from './util.js';
import { describeValue, zodIssues } from './validate.js';

export function makeContext(recipe: Recipe, opts: PlanOptions): PlanContext {
  return {
    recipe,
    opts,
    issues: new IssueList(),
    warnings: new IssueList(),
    registry: opts.methods,
    methodNames: Object.keys(opts.methods),
    allDatasets: knownDatasets(opts.datasets),
    // your own data's defaults come from its column mapping (the entry's fields, else its dataset_settings')
    datasetDefaults: (name, entry) => {
      const own = { ...(recipe.dataset_settings?.[name] ?? {}), ...(entry ?? {}) };
      if (isOwnData(name, own)) return ownDataDefaults(own, opts.datasets);
      return catalogDefaults(name, opts.datasets);
    },
  };
}

// ---- model ---------------------------------------------------------------------------------------------

/** The one task all the recipe's datasets need, if they agree. */
function datasetsTask(ctx: PlanContext): Task | undefined {
  const tasks = new Set(
    ctx.recipe.datasets.map((d) => ctx.datasetDefaults(d.name, d)?.task).filter((t) => t !== undefined),
  );
  return tasks.size === 1 ? [...tasks][0]! : undefined;
}

function builtinTask(ctx: PlanContext): Task | undefined {
  const m = ctx.recipe.model;
  const builtin = BUILTIN_MODELS[m.name];
  if (!builtin) {
    ctx.issues.add(
      ['model', 'name'],
      `unknown built-in model \`${m.name}\``,
      suggestHint(m.name, Object.keys(BUILTIN_MODELS), 'built-in models'),
    );
    return m.task;
  }
  const heads = [builtin.task, ...(builtin.otherTasks ?? [])];
  if (m.task !== undefined && !heads.includes(m.task)) {
    ctx.issues.add(
      ['model', 'task'],
      `\`${m.name}\` has a ${heads.join(' or ')} head, not ${m.task}`,
      `remove \`task\` or set it to ${builtin.task}`,
    );
    return m.task;
  }
  if (m.task !== undefined) return m.task;
  // a built-in with several heads (the decoder also classifies) takes the one its datasets need
  const only = datasetsTask(ctx);
  return only !== undefined && heads.includes(only) ? only : builtin.task;
}

function hubTask(ctx: PlanContext): Task | undefined {
  const m = ctx.recipe.model;
  if (BUILTIN_MODELS[m.name]) {
    ctx.issues.add(
      ['model', 'source'],
      `\`${m.name}\` is a built-in model, not a Hugging Face one`,
      'remove `source: hf`',
    );
    return m.task;
  }
  if (m.task !== undefined) return m.task;
  const task = datasetsTask(ctx);
  if (task === undefined)
    ctx.issues.add(
      ['model', 'task'],
      `missing the task head of Hugging Face model \`${m.name}\``,
      'add `task: seq-cls`, `img-cls` or `causal-lm`',
    );
  return task;
}

/** The model spec, and the task as the recipe fixes it (undefined when it cannot be told). */
export function resolveModel(ctx: PlanContext): { model: ModelSpec; task: Task | undefined } {
  const m = ctx.recipe.model;
  const source = m.source ?? (BUILTIN_MODELS[m.name] ? 'builtin' : 'hf');
  const task = source === 'builtin' ? builtinTask(ctx) : hubTask(ctx);
  const model: ModelSpec = {
    name: m.name,
    source,
    task: task ?? 'seq-cls',
    config: m.config ?? {},
    random_init: m.random_init ?? false,
    ...(m.trust_remote_code ? { trust_remote_code: true } : {}),
  };
  return { model, task };
}

// ---- training layers -------------------------------------------------------------------------------------

/** A training layer with the shape checks every layer shares. */
export function checkLayer(ctx: PlanContext, layer: TrainingLayer | undefined, path: FieldPath): Layer[] {
  if (!layer) return [];
  if (layer.max_steps !== undefined && layer.epochs !== undefined) {
    ctx.issues.add(
      [...path, 'epochs'],
      'both `max_steps` and `epochs` are set',
      'keep one: a run trains for a number of steps or of epochs',
    );
  }
  return [{ path, data: layer }];
}

// ---- datasets --------------------------------------------------------------------------------------------

function unknownDataset(ctx: PlanContext, path: FieldPath, name: string): void {
  ctx.issues.add(path, `unknown dataset \`${name}\``, suggestHint(name, ctx.allDatasets, 'datasets'));
}

/** The dataset options: the schema's defaults, then the settings', then the entry's, each checked; sorted. */
function datasetOptions(
  ctx: PlanContext,
  e: DatasetEntry,
  path: FieldPath,
  defs: DatasetDefaults,
  options: Record<string, unknown>,
): Record<string, unknown> {
  const schemas = defs.options;
  if (!schemas) return options;
  const filled: Record<string, unknown> = {};
  for (const [k, sch] of Object.entries(schemas)) if (sch.default !== null) filled[k] = sch.default;
  for (const [k, v] of Object.entries(options)) {
    const p = e.options && k in e.options ? [...path, 'options', k] : ['dataset_settings', e.name, 'options', k];
    const sch = schemas[k];
    if (!sch) {
      ctx.issues.add(
        p,
        `unknown option \`${k}\` for dataset \`${e.name}\``,
        suggestHint(k, Object.keys(schemas), `options of ${e.name}`),
      );
      continue;
    }
    const r = checkOption(sch, v);
    if (!r.ok) ctx.issues.add(p, r.message, r.hint);
    else if (r.value === null) delete filled[k];
    else filled[k] = r.value;
  }
  return Object.fromEntries(Object.entries(filled).sort(([a], [b]) => (a < b ? -1 : 1)));
}

/** A dataset's `eval_splits` (entry, then dataset_settings, then the recipe's), deduplicated; undefined: unset. */
function evalSplitsOf(e: Partial<DatasetEntry>, st: Partial<DatasetEntry>, recipe: string[] | undefined) {
  const splits = e.eval_splits ?? st.eval_splits ?? recipe;
  return splits ? [...new Set(splits)] : undefined;
}

/** Where an `eval_splits` problem is reported: the field that set it. */
function splitPath(e: Partial<DatasetEntry>, st: Partial<DatasetEntry>, path: FieldPath, name: string): FieldPath {
  if (e.eval_splits !== undefined || e.eval_split !== undefined) return [...path, 'eval_splits'];
  if (st.eval_splits !== undefined || st.eval_split !== undefined) return ['dataset_settings', name, 'eval_splits'];
  return ['eval_splits'];
}

/**
 * The best checkpoint is chosen on `eval_split`: it must be one of `eval_splits`, and never `test` while another
 * split is evaluated (hyperparameters and checkpoints are selected on validation, reported on test).
 */
function evalSplitsIssue(spec: DatasetSpec): { message: string; hint: string } | null {
  const splits = spec.eval_splits;
  if (!splits) return null;
  if (!splits.includes(spec.eval_split))
    return {
      message: `eval_split \`${spec.eval_split}\` (the best-checkpoint split) is not among eval_splits [${splits.join(', ')}]`,
      hint: `add ${spec.eval_split} to eval_splits, or remove eval_split (default: the first of eval_splits)`,
    };
  if (spec.eval_split === 'test' && splits.length > 1)
    return {
      message: `eval_split is \`test\` while eval_splits also has ${splits.filter((x) => x !== 'test').join(', ')}: the best checkpoint would be chosen on the reported split`,
      hint: 'list the validation split first in eval_splits (or set eval_split: validation)',
    };
  return null;
}

/** The dataset spec: the entry over its dataset_settings over the defaults (and the recipe's data_root). */
function datasetSpec(ctx: PlanContext, e: DatasetEntry, path: FieldPath, defs: DatasetDefaults): DatasetSpec {
  const st = ctx.recipe.dataset_settings?.[e.name] ?? {};
  const pick = <K extends keyof DatasetEntry>(k: K) => entryOver(e, st, k);
  const metric = pick('metric') ?? defs.metric;
  const splits = evalSplitsOf(e, st, ctx.recipe.eval_splits);
  if (!defs.metrics.includes(metric)) {
    const p = e.metric !== undefined ? [...path, 'metric'] : ['dataset_settings', e.name, 'metric'];
    ctx.issues.add(
      p,
      `\`${e.name}\` has no metric \`${metric}\``,
      suggestHint(metric, defs.metrics, `metrics of ${e.name}`),
    );
  }
  const dataRoot = pick('data_root');
  const trainSize = pick('train_size');
  const evalSize = pick('eval_size');
  const spec: DatasetSpec = {
    name: e.name,
    data_root: dataRoot !== undefined ? dataRoot : (ctx.recipe.data_root ?? null),
    max_length: pick('max_length') ?? defs.max_length,
    train_size: trainSize !== undefined ? trainSize : defs.train_size,
    eval_size: evalSize !== undefined ? evalSize : defs.eval_size,
    eval_split: pick('eval_split') ?? splits?.[0] ?? defs.eval_split,
    ...(splits ? { eval_splits: splits } : {}),
    metric,
    options: { ...(st.options ?? {}), ...(e.options ?? {}) },
    ...dataSource(e, st),
  };
  spec.options = datasetOptions(ctx, e, path, defs, spec.options);
  const splitIssue = evalSplitsIssue(spec);
  if (splitIssue) ctx.issues.add(splitPath(e, st, path, e.name), splitIssue.message, splitIssue.hint);
  const named = MNLI_SPLIT_NAMES[e.name];
  if (named && spec.eval_split !== named) {
    const p = e.eval_split !== undefined ? [...path, 'eval_split'] : ['dataset_settings', e.name, 'eval_split'];
    ctx.issues.add(
      p,
      `\`${e.name}\` evaluates ${named}, not ${spec.eval_split}`,
      `remove eval_split, or use glue/mnli with eval_split: ${spec.eval_split}`,
    );
  }
  return spec;
}

function resolveDataset(
  ctx: PlanContext,
  model: { name: string; task: Task | undefined },
  entry: DatasetEntry | { name: string },
  path: FieldPath,
  namePath: FieldPath,
): ResolvedDataset | null {
  const defs = ctx.datasetDefaults(entry.name, entry);
  if (!defs) {
    unknownDataset(ctx, namePath, entry.name);
    return null;
  }
  if (model.task !== undefined && defs.task !== model.task) {
    ctx.issues.add(
      namePath,
      `dataset \`${entry.name}\` needs a ${defs.task} model, but \`${model.name}\` is ${model.task}`,
      'use a model with the matching head, or a separate recipe per task',
    );
  }
  const e = entry as DatasetEntry;
  const spec = datasetSpec(ctx, e, path, defs);
  const st = ctx.recipe.dataset_settings?.[entry.name] ?? {};
  return {
    name: entry.name,
    label: datasetLabel(entry.name, spec.eval_split, defs.eval_split),
    path,
    spec,
    layers: [
      ...checkLayer(ctx, st.training, ['dataset_settings', entry.name, 'training']),
      ...checkLayer(ctx, e.training, [...path, 'training']),
    ],
  };
}

// ---- methods ---------------------------------------------------------------------------------------------

/** A budget's `match_by` of an entry (or its settings): the option it names must be numeric, its values valid. */
function checkMatchBy(ctx: PlanContext, entry: MethodEntry, path: FieldPath, matchBy: MethodEntry['match_by']): void {
  const desc = ctx.registry[entry.name]!;
  const base = entry.match_by !== undefined ? [...path, 'match_by'] : ['method_settings', entry.name, 'match_by'];
  if (matchBy === 'rank' && !desc.needs_rank) {
    ctx.issues.add(
      base,
      `method \`${entry.name}\` takes no rank to match by`,
      'use `match_by: none` or a numeric option',
    );
  }
  if (matchBy === undefined || typeof matchBy !== 'object') return;
  asList(matchBy.option)!.forEach((name, k) => {
    const s = desc.options[name];
    const p = Array.isArray(matchBy.option) ? [...base, 'option', k] : [...base, 'option'];
    if (!s)
      ctx.issues.add(
        p,
        `unknown option \`${name}\` for method \`${entry.name}\``,
        suggestHint(name, Object.keys(desc.options), `options of ${entry.name}`),
      );
    else if (s.type !== 'integer' && s.type !== 'number')
      ctx.issues.add(p, `option \`${name}\` is ${s.type}; budget matching needs a numeric option`);
    else
      matchBy.values.forEach((v, i) => {
        const r = checkOption(s, v);
        if (!r.ok) ctx.issues.add([...base, 'values', i], r.message, r.hint);
      });
  });
}

function resolveMethod(
  ctx: PlanContext,
  declaredGroups: Set<string>,
  entry: MethodEntry,
  path: FieldPath,
  extra: { datasets?: string[]; seeds?: number[]; isInclude: boolean },
): ResolvedMethod | null {
  const desc = ctx.registry[entry.name];
  if (!desc) {
    ctx.issues.add(
      [...path, 'name'],
      `unknown method \`${entry.name}\``,
      suggestHint(entry.name, ctx.methodNames, 'methods'),
    );
    return null;
  }
  for (const g of desc.lr_groups) declaredGroups.add(g);
  const st = ctx.recipe.method_settings?.[entry.name] ?? {};
  const settingsAt: FieldPath = ['method_settings', entry.name];
  const options = resolveOptions(entry.name, desc, st.options, [...settingsAt, 'options'], ctx.issues, true);
  overlayOptions(options, resolveOptions(entry.name, desc, entry.options, [...path, 'options'], ctx.issues, false));
  const ranksRaw = entry.ranks ?? st.ranks;
  if (!desc.needs_rank && ranksRaw !== undefined) {
    const p = entry.ranks !== undefined ? [...path, 'ranks'] : [...settingsAt, 'ranks'];
    ctx.issues.add(p, `method \`${entry.name}\` takes no rank`, 'remove `ranks` for it');
  }
  const matchBy = entry.match_by ?? st.match_by;
  checkMatchBy(ctx, entry, path, matchBy);
  return {
    path,
    name: entry.name,
    label: entry.label ?? st.label ?? null,
    desc,
    options,
    ranks: desc.needs_rank && ranksRaw !== undefined ? uniq(asList(ranksRaw)!) : null,
    targets: entry.targets ?? st.targets ?? [],
    layers: [
      ...checkLayer(ctx, st.training, [...settingsAt, 'training']),
      ...checkLayer(ctx, entry.training, [...path, 'training']),
    ],
    matchBy,
    tags: [...(st.tags ?? []), ...(entry.tags ?? [])],
    datasets: extra.datasets ?? null,
    seeds: extra.seeds ?? null,
    isInclude: extra.isInclude,
  };
}

function resolveIncludes(ctx: PlanContext, declaredGroups: Set<string>): ResolvedMethod[] {
  const includes: ResolvedMethod[] = [];
  (ctx.recipe.include ?? []).forEach((rule, k) => {
    const { datasets: ds, seeds, ...entry } = rule;
    const dsList = asList(ds);
    dsList?.forEach((name, i) => {
      if (!ctx.datasetDefaults(name))
        unknownDataset(ctx, ['include', k, 'datasets', ...(Array.isArray(ds) ? [i] : [])], name);
    });
    const r = resolveMethod(ctx, declaredGroups, entry, ['include', k], {
      datasets: dsList,
      seeds: asList(seeds),
      isInclude: true,
    });
    if (r) includes.push(r);
  });
  return includes;
}

/** Every lr_groups key of every layer must be a group some method of the recipe declares. */
function checkLrGroups(ctx: PlanContext, layers: Layer[], declaredGroups: Set<string>): void {
  for (const l of layers) {
    for (const g of Object.keys(l.data.lr_groups ?? {})) {
      if (declaredGroups.has(g)) continue;
      ctx.issues.add(
        [...l.path, 'lr_groups', g],
        `no method in this recipe has a parameter group \`${g}\``,
        declaredGroups.size
          ? suggestHint(g, [...declaredGroups], 'groups')
          : 'only methods that declare groups (e.g. DePT `prompt`) take lr_groups',
      );
    }
  }
}

// ---- zip -------------------------------------------------------------------------------------------------

/** Check one field of a zip group; false when it cannot vary there or a value is invalid. */
function checkZipField(ctx: PlanContext, values: unknown[], gi: number, k: string): boolean {
  const { issues, recipe } = ctx;
  if (k === 'rank') {
    let ok = true;
    values.forEach((v, i) => {
      if (typeof v !== 'number' || !Number.isInteger(v) || v <= 0) {
        issues.add(['zip', gi, k, i], `expected a positive integer, got ${describeValue(v)}`);
        ok = false;
      }
    });
    return ok;
  }
  if (k === 'lr_groups' || !(TRAINING_FIELDS as string[]).includes(k)) {
    issues.add(
      ['zip', gi, k],
      `\`${k}\` cannot vary in a zip group`,
      k === 'lr_groups'
        ? 'zip scalar training fields only'
        : suggestHint(k, [...TRAINING_FIELDS.filter((f) => f !== 'lr_groups'), 'rank'], 'fields'),
    );
    return false;
  }
  let ok = true;
  if (Array.isArray((recipe.training as Record<string, unknown> | undefined)?.[k])) {
    issues.add(
      ['zip', gi, k],
      `\`${k}\` is both a grid axis in \`training\` and a zip field`,
      `remove the list from training.${k}`,
    );
    ok = false;
  }
  const fieldSchema = (TrainingSpecSchema.shape as Record<string, z.ZodType>)[k]!;
  values.forEach((v, i) => {
    const r = fieldSchema.safeParse(v);
    if (!r.success) {
      for (const sub of zodIssues(r.error.issues, recipe, fieldSchema, ['zip', gi, k, i]))
        issues.add(sub.path, sub.message, sub.hint);
      ok = false;
    }
  });
  return ok;
}

/** One zip group's positions, or null when it has issues. */
function zipGroup(ctx: PlanContext, group: Record<string, unknown[]>, gi: number): ZipCombo[] | null {
  const keys = Object.keys(group);
  if (keys.length === 0) {
    ctx.issues.add(['zip', gi], 'empty zip group', 'list two or more fields that vary together');
    return null;
  }
  const lens = keys.map((k) => group[k]!.length);
  if (new Set(lens).size > 1) {
    ctx.issues.add(
      ['zip', gi],
      `zip lists must have the same length; got ${keys.map((k, i) => `${k}: ${lens[i]}`).join(', ')}`,
      'each position of the lists is one setting',
    );
    return null;
  }
  let ok = true;
  for (const k of keys) if (!checkZipField(ctx, group[k]!, gi, k)) ok = false;
  if (!ok) return null;
  return Array.from({ length: lens[0]! }, (_, i) => {
    const training: Record<string, unknown> = {};
    let rank: number | undefined;
    for (const k of keys) {
      if (k === 'rank') rank = group[k]![i] as number;
      else training[k] = group[k]![i];
    }
    return { training: training as TrainingLayer, rank };
  });
}

/** The product of the zip groups' positions (one empty combination without zip groups). */
function resolveZip(ctx: PlanContext): ZipCombo[] {
  const groups: ZipCombo[][] = [];
  (ctx.recipe.zip ?? []).forEach((group, gi) => {
    const g = zipGroup(ctx, group, gi);
    if (g) groups.push(g);
  });
  const combos: ZipCombo[] = [];
  product(groups, (pick) => {
    const training: Record<string, unknown> = {};
    let rank: number | undefined;
    for (const p of pick) {
      Object.assign(training, p.training);
      if (p.rank !== undefined) rank = p.rank;
    }
    combos.push({ training: training as TrainingLayer, rank });
  });
  return combos;
}

// ---- budget, overrides, exclude rules ----------------------------------------------------------------------

/** The budget's reference ranks, after checking the budget against the recipe. */
function budgetLevels(ctx: PlanContext, recipeRanks: number[] | null, zipCombos: ZipCombo[]): number[] {
  const { budget } = ctx.recipe;
  if (!budget) return [];
  const ref = ctx.registry[budget.match];
  if (!ref)
    ctx.issues.add(
      ['budget', 'match'],
      `unknown method \`${budget.match}\``,
      suggestHint(budget.match, ctx.methodNames, 'methods'),
    );
  else if (!ref.needs_rank)
    ctx.issues.add(
      ['budget', 'match'],
      `method \`${budget.match}\` has no rank to set a budget with`,
      'match against a method with a rank, e.g. `lora`',
    );
  if (recipeRanks)
    ctx.issues.add(
      ['ranks'],
      '`ranks` is not used with `budget`',
      "budget.rank sets the reference rank; a method's own `ranks` lists its candidates",
    );
  if (zipCombos.some((z) => z.rank !== undefined))
    ctx.issues.add(['zip'], '`rank` in a zip group is not used with `budget`', 'remove `rank` from the zip group');
  return uniq(asList(budget.rank)!);
}

function checkOverrides(ctx: PlanContext, labels: Set<string>): void {
  (ctx.recipe.overrides ?? []).forEach((o, i) => {
    asList(o.when.method)?.forEach((name, k) => {
      if (!ctx.registry[name] && !labels.has(name)) {
        ctx.issues.add(
          ['overrides', i, 'when', 'method', ...(Array.isArray(o.when.method) ? [k] : [])],
          `unknown method \`${name}\``,
          suggestHint(name, [...ctx.methodNames, ...labels], 'methods'),
        );
      }
    });
    asList(o.when.dataset)?.forEach((pat, k) => {
      if (!pat.includes('*') && !ctx.datasetDefaults(pat))
        unknownDataset(ctx, ['overrides', i, 'when', 'dataset', ...(Array.isArray(o.when.dataset) ? [k] : [])], pat);
    });
  });
}

function checkExcludes(
  ctx: PlanContext,
  methods: ResolvedMethod[],
  includes: ResolvedMethod[],
  labels: Set<string>,
): void {
  const { issues } = ctx;
  (ctx.recipe.exclude ?? []).forEach((x, i) => {
    if (Object.keys(x).length === 0)
      issues.add(
        ['exclude', i],
        'empty exclude rule (it would drop every run)',
        'give at least one of method, label, dataset, rank, seed, training, options',
      );
    asList(x.method)?.forEach((name, k) => {
      if (!ctx.registry[name])
        issues.add(
          ['exclude', i, 'method', ...(Array.isArray(x.method) ? [k] : [])],
          `unknown method \`${name}\``,
          suggestHint(name, ctx.methodNames, 'methods'),
        );
    });
    asList(x.label)?.forEach((name, k) => {
      if (!labels.has(name))
        issues.add(
          ['exclude', i, 'label', ...(Array.isArray(x.label) ? [k] : [])],
          `no method entry has the label \`${name}\``,
          labels.size ? suggestHint(name, [...labels], 'labels') : 'labels are set with `label:` on a method entry',
        );
    });
    for (const k of Object.keys(x.training ?? {})) {
      if (!(TRAINING_FIELDS as string[]).includes(k))
        issues.add(
          ['exclude', i, 'training', k],
          `unknown training field \`${k}\``,
          suggestHint(k, TRAINING_FIELDS, 'training fields'),
        );
    }
    for (const k of Object.keys(x.options ?? {})) {
      const owners = [...methods, ...includes].filter((mm) => k in mm.desc.options);
      if (owners.length === 0)
        issues.add(
          ['exclude', i, 'options', k],
          `no method in this recipe has an option \`${k}\``,
          suggestHint(k, [...new Set(methods.flatMap((mm) => Object.keys(mm.desc.options)))], 'options'),
        );
    }
  });
}

// ---- the phase ---------------------------------------------------------------------------------------------

/** Resolve and check the whole recipe; issues go to `ctx.issues` (the result is only meaningful without any). */
export function resolveRecipe(ctx: PlanContext): ResolvedRecipe {
  const { recipe } = ctx;
  const { model, task } = resolveModel(ctx);
  const recipeLayers = checkLayer(ctx, recipe.training, ['training']);

  for (const name of Object.keys(recipe.dataset_settings ?? {}))
    if (!ctx.datasetDefaults(name)) unknownDataset(ctx, ['dataset_settings', name], name);
  const named = { name: model.name, task };
  const datasetOf: ResolvedRecipe['resolveDataset'] = (entry, path, namePath) =>
    resolveDataset(ctx, named, entry, path, namePath);
  const datasets = recipe.datasets
    .map((d, i) => datasetOf(d, ['datasets', i], ['datasets', i, 'name']))
    .filter((d): d is ResolvedDataset => d !== null);
  const datasetByName = new Map<string, ResolvedDataset>();
  for (const d of datasets) if (!datasetByName.has(d.name)) datasetByName.set(d.name, d);

  for (const name of Object.keys(recipe.method_settings ?? {})) {
    if (!ctx.registry[name])
      ctx.issues.add(
        ['method_settings', name],
        `unknown method \`${name}\``,
        suggestHint(name, ctx.methodNames, 'methods'),
      );
  }
  const declaredGroups = new Set<string>();
  const methods = recipe.methods
    .map((e, j) => resolveMethod(ctx, declaredGroups, e, ['methods', j], { isInclude: false }))
    .filter((m): m is ResolvedMethod => m !== null);
  const includes = resolveIncludes(ctx, declaredGroups);
  const labels = new Set(methods.map((x) => x.label).filter((x): x is string => x !== null));

  checkLrGroups(
    ctx,
    [
      ...recipeLayers,
      ...datasets.flatMap((d) => d.layers),
      ...methods.flatMap((x) => x.layers),
      ...includes.flatMap((x) => x.layers),
      ...(recipe.overrides ?? []).flatMap((o, i) =>
        o.training ? [{ path: ['overrides', i, 'training'], data: o.training }] : [],
      ),
    ],
    declaredGroups,
  );

  const recipeRanks = recipe.ranks !== undefined ? uniq(asList(recipe.ranks)!) : null;
  const zipCombos = resolveZip(ctx);
  const levels = budgetLevels(ctx, recipeRanks, zipCombos);
  checkOverrides(ctx, labels);
  checkExcludes(ctx, methods, includes, labels);
  return {
    model,
    datasets,
    datasetByName,
    methods,
    includes,
    seeds: uniq(asList(recipe.seeds) ?? [0]),
    recipeRanks,
    zipCombos,
    budget: recipe.budget,
    budgetLevels: levels,
    overrides: recipe.overrides ?? [],
    excludes: recipe.exclude ?? [],
    resolveDataset: datasetOf,
    resolveMethod: (entry, path) => resolveMethod(ctx, declaredGroups, entry, path, { isInclude: false }),
  };
}
