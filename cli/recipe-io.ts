/**
 * Reading recipe files: YAML with positions, `preset:` and `extends:` composition, and errors that name the
 * file, line and column of the offending field. Also `planRecipeFile`, the one call the orchestration code
 * makes to turn a recipe file into runs.
 *
 * Composition: a recipe is its preset (if any), then each `extends` file in order (each resolved the same
 * way, paths relative to the file that names them), then the file itself; later layers win. Mappings merge
 * key by key; lists and scalars replace, except the top-level `overrides`, `include` and `exclude` lists,
 * which concatenate (base first). A layer that changes `model.name` replaces the whole `model`. Setting
 * `max_steps` in a `training` mapping clears an inherited `epochs`, and vice versa. `name` is not
 * inherited: it is the file's own `name`, or its file name without the extension.
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import { basename, dirname, extname, join, relative, resolve } from 'node:path';
import { isMap, isScalar, isSeq, LineCounter, parseDocument, visit, type Document, type Node as YamlNode } from 'yaml';
import { MethodsSnapshot, type MethodDescription, type ProcedureDescription } from '../schemas/describe.js';
import { normalizeShorthands, type Recipe } from '../schemas/recipe.js';
import type { PlannedRun, RunSpec } from '../schemas/runspec.js';
import { applyLengthRule } from '../planning/compose.js';
import { formatPath, type FieldPath, type PlanIssue } from '../planning/issues.js';
import {
  attachCounts,
  countableSpec,
  countKey,
  countRequestsFor,
  fullModelSpec,
  sweepId as makeSweepId,
  type CountResult,
  type CountTable,
} from '../planning/planner.js';
import { PRESETS } from '../planning/presets.js';
import { planStages, type StagePlanOptions } from '../planning/stages.js';
import { suggestHint } from '../planning/suggest.js';
import { validateRecipe } from '../planning/validate.js';
import snapshotJson from '../schemas/methods.generated.json' with { type: 'json' };
import { UserError } from '../core/errors.js';
import { countSpecs } from '../launcher/runtime-calls.js';
import { CountCache, countSpecsCached } from '../launcher/count-cache.js';
import { defaultStateDir } from '../services/embedded.js';
import { runtimeAvailable } from '../launcher/spawn.js';

/** The committed `describe` snapshot (`schemas/methods.generated.json`). */
export function snapshot(): MethodsSnapshot {
  return MethodsSnapshot.parse(snapshotJson);
}

/** The method registry of the committed `describe` snapshot. */
export function snapshotMethods(): Record<string, MethodDescription> {
  return snapshot().methods;
}

interface FileLayer {
  kind: 'file';
  /** Path as shown in messages (relative to the working directory when inside it). */
  display: string;
  doc: Document;
  lc: LineCounter;
  data: Record<string, unknown>;
}
interface PresetLayer {
  kind: 'preset';
  display: string;
  data: Record<string, unknown>;
}
type Layer = FileLayer | PresetLayer;

export interface Location {
  file: string;
  line: number | null;
  col: number | null;
}

export interface LoadedRecipe {
  /** Absolute path of the recipe file. */
  path: string;
  /** The merged recipe before validation (shorthands expanded). */
  raw: Record<string, unknown>;
  layers: Layer[];
  /** Where a field of the merged recipe was written. */
  locate(path: FieldPath): Location;
}

const CONCAT_KEYS = ['overrides', 'include', 'exclude'] as const;
/** The largest recipe file read (a recipe is a few KB; a 10 MB one takes seconds and GBs to parse). */
export const MAX_RECIPE_BYTES = 2 ** 20;
/** Alias expansions allowed in one recipe file (beyond it, an alias bomb). */
export const MAX_ALIAS_COUNT = 1000;
/** Nesting depth of mappings and lists allowed in a recipe file. */
export const MAX_RECIPE_DEPTH = 64;

/** The YAML library's message, or what it means when it is the engine's own. */
function yamlMessage(msg: string): string {
  return /Maximum call stack size exceeded/.test(msg)
    ? `mappings or lists nested too deep (a recipe may nest ${MAX_RECIPE_DEPTH} levels)`
    : msg;
}

/** The deepest nesting of `v`, counted without recursion, stopping once past `limit`. */
function depthOf(v: unknown, limit: number): number {
  let max = 0;
  const stack: [unknown, number][] = [[v, 0]];
  while (stack.length) {
    const [x, d] = stack.pop()!;
    if (x === null || typeof x !== 'object') continue;
    if (d + 1 > max) max = d + 1;
    if (max > limit) return max;
    for (const c of Object.values(x as object)) stack.push([c, d + 1]);
  }
  return max;
}

/** Where the first node nested deeper than MAX_RECIPE_DEPTH is written ('' when only aliases make it so). */
function tooDeepAt(doc: Document, lc: LineCounter): string {
  const stack: [unknown, number][] = [[doc.contents, 1]];
  while (stack.length) {
    const [n, d] = stack.pop()!;
    if (!isMap(n) && !isSeq(n)) continue;
    if (d > MAX_RECIPE_DEPTH) {
      if (!n.range) return '';
      const p = lineCol(lc, n.range[0]);
      return `:${p.line}:${p.col}`;
    }
    for (const item of n.items) stack.push([isMap(n) ? (item as { value: unknown }).value : item, d + 1]);
  }
  return '';
}

/** Where the first alias of a document is (for the alias-bomb message). */
function firstAliasAt(doc: Document, lc: LineCounter): string {
  let at = '';
  visit(doc, {
    Alias(_, node) {
      if (node.range) {
        const p = lineCol(lc, node.range[0]);
        at = `:${p.line}:${p.col}`;
      }
      return visit.BREAK;
    },
  });
  return at;
}

/** A parsed document's data, or the one-line error saying why it cannot be had (aliases, depth). */
function yamlData(doc: Document, lc: LineCounter, display: string): { data: unknown } | { error: string } {
  let data: unknown;
  try {
    data = doc.toJS({ maxAliasCount: MAX_ALIAS_COUNT }) as unknown;
  } catch (e) {
    const msg = (e as Error).message ?? String(e);
    if (/alias/i.test(msg))
      return {
        error: `${display}${firstAliasAt(doc, lc)}: YAML: aliases expand to too many nodes (more than ${MAX_ALIAS_COUNT} expansions: an alias bomb) — write the values out or use \`extends\``,
      };
    return { error: `${display}: YAML: ${yamlMessage(msg)}` };
  }
  if (depthOf(data, MAX_RECIPE_DEPTH) > MAX_RECIPE_DEPTH)
    return { error: `${display}${tooDeepAt(doc, lc)}: YAML: ${yamlMessage('Maximum call stack size exceeded')}` };
  return { data };
}

function displayPath(abs: string): string {
  const rel = relative(process.cwd(), abs);
  return rel && !rel.startsWith('..') ? rel : abs;
}

function lineCol(lc: LineCounter, offset: number): { line: number; col: number } {
  const p = lc.linePos(offset);
  return { line: p.line, col: p.col };
}

/** The YAML node for `path` (or its deepest existing prefix) and how many segments were found. */
function nodeAt(doc: Document, path: FieldPath): { node: YamlNode | null; keyNode: YamlNode | null; depth: number } {
  let node = doc.contents as YamlNode | null;
  let keyNode: YamlNode | null = null;
  let depth = 0;
  for (const seg of path) {
    if (node && isMap(node)) {
      const pair = node.items.find((p) => isScalar(p.key) && String(p.key.value) === String(seg));
      if (!pair) break;
      keyNode = pair.key as YamlNode;
      node = (pair.value as YamlNode | null) ?? null;
    } else if (node && isSeq(node) && typeof seg === 'number') {
      const item = node.items[seg] as YamlNode | undefined;
      if (!item) break;
      keyNode = null;
      node = item;
    } else break;
    depth++;
  }
  return { node, keyNode, depth };
}

function hasPath(data: unknown, path: FieldPath): number {
  let cur = data;
  let depth = 0;
  for (const seg of path) {
    if (cur === null || typeof cur !== 'object') break;
    const next = (cur as Record<string | number, unknown>)[seg];
    if (next === undefined) break;
    cur = next;
    depth++;
  }
  return depth;
}

function isObj(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

function mergeInto(
  base: Record<string, unknown>,
  over: Record<string, unknown>,
  top: boolean,
): Record<string, unknown> {
  const out: Record<string, unknown> = { ...base };
  for (const [k, v] of Object.entries(over)) {
    if (top && (k === 'extends' || k === 'preset')) continue;
    const b = out[k];
    if (top && (CONCAT_KEYS as readonly string[]).includes(k) && Array.isArray(b) && Array.isArray(v)) {
      out[k] = [...b, ...v];
    } else if (top && k === 'model' && isObj(b) && isObj(v) && v.name !== undefined && v.name !== b.name) {
      out[k] = v;
    } else if (isObj(b) && isObj(v)) {
      const merged = mergeInto(b, v, false);
      if (k === 'training') applyLengthRule(merged, v);
      out[k] = merged;
    } else {
      out[k] = v;
    }
  }
  return out;
}

/** Format issues as `file:line:col: path: message — hint` lines. */
export function formatIssues(issues: readonly PlanIssue[], locate: (p: FieldPath) => Location): string[] {
  return issues.map((i) => {
    const loc = locate(i.path);
    const where = loc.line !== null ? `${loc.file}:${loc.line}:${loc.col}` : loc.file;
    return `${where}: ${formatPath(i.path)}: ${i.message}${i.hint ? ` — ${i.hint}` : ''}`;
  });
}

/**
 * A model folder the recipe names that is not there (checked without the runtime): a path-like name
 * (`./`, `../`, `/`, `~`) that does not exist, or a folder without `config.json`. Paths are relative to the
 * folder rankflow runs in, as the runtime reads them.
 */
export function missingModelFolder(model: { name: string; source?: string }): { message: string; hint: string } | null {
  const name = model.name;
  if (model.source === 'builtin') return null;
  const pathLike = /^(\.{1,2}[\\/]|[\\/]|~)/.test(name);
  const full = resolve(name.startsWith('~') ? name.replace(/^~/, process.env.HOME ?? '~') : name);
  if (!existsSync(full)) {
    if (!pathLike) return null; // a hub id (in the local HF cache, or not: the runtime's count says)
    return {
      message: `model folder \`${name}\` does not exist (${full})`,
      hint: 'fix the path (relative to the folder you run rankflow in), or name a bundled model / a hub id in the local HF cache',
    };
  }
  if (!existsSync(join(full, 'config.json'))) {
    return {
      message: `\`${name}\` has no config.json, so it is not a Hugging Face model folder`,
      hint: 'point model.name at the folder save_pretrained wrote',
    };
  }
  return null;
}

/** A count failure that is the model's fault (the runtime names a `model.*` field): the recipe is wrong, not a run. */
function modelError(countErrors: readonly string[]): PlanIssue | null {
  for (const e of countErrors) {
    // a rank the adapted layers cannot hold (the runtime's MAX_PARAMS bound): an error, not an uncounted run
    const r = /(?:^|: )method\.rank: (.* trainable parameters \(at most .*)$/.exec(e);
    if (r) return { path: ['ranks'], message: `the runtime refuses the rank: ${r[1]}` };
    const m = /(?:^|: )(model(?:\.[A-Za-z_][\w]*)*): (.*)$/.exec(e);
    if (!m) continue;
    const path = m[1]!.split('.').slice(0, 2) as FieldPath;
    return { path: path.length > 1 ? path : ['model', 'name'], message: `the runtime cannot build the model: ${m[2]}` };
  }
  return null;
}

function failWith(lines: string[], file: string): never {
  if (lines.length === 1) throw new UserError(lines[0]!);
  throw new UserError(`${lines.length} problems in ${file}:\n  ${lines.join('\n  ')}`);
}

/** A recipe file's text, or null with the error (too big, unreadable) pushed. */
function readRecipeText(
  path: string,
  display: string,
  fromWhere: (() => string) | null,
  errors: string[],
): string | null {
  try {
    const size = statSync(path).size;
    if (size > MAX_RECIPE_BYTES) {
      errors.push(
        `${display}: the recipe is ${(size / 2 ** 20).toFixed(1)} MiB, more than the ${MAX_RECIPE_BYTES / 2 ** 20} MiB a recipe file may be — use grid lists and \`extends\` instead of writing runs out`,
      );
      return null;
    }
    return readFileSync(path, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    errors.push(
      fromWhere
        ? `${fromWhere()}: extends: cannot read \`${display}\` (${code === 'ENOENT' ? 'no such file' : code}) — paths are relative to the file that names them`
        : `${display}: cannot read the recipe (${code === 'ENOENT' ? 'no such file' : code})`,
    );
    return null;
  }
}

/** A recipe file's YAML as a layer (shorthands expanded) and its data as written, or null with the errors pushed. */
function parseRecipeLayer(
  text: string,
  display: string,
  errors: string[],
): { layer: FileLayer; data: Record<string, unknown> } | null {
  const lc = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lc, prettyErrors: true, uniqueKeys: true });
  if (doc.errors.length) {
    for (const e of doc.errors) {
      const p = e.linePos?.[0];
      const msg = e.message.split('\n')[0]!.replace(/ at line \d+, column \d+:?$/, '');
      errors.push(`${display}${p ? `:${p.line}:${p.col}` : ''}: YAML: ${yamlMessage(msg)}`);
    }
    return null;
  }
  const js = yamlData(doc, lc, display);
  if ('error' in js) {
    errors.push(js.error);
    return null;
  }
  const data = js.data;
  if (data === null || data === undefined) {
    errors.push(`${display}: the recipe is empty — start from recipes/quickstart.yaml`);
    return null;
  }
  if (!isObj(data)) {
    errors.push(
      `${display}:1:1: (recipe): expected a mapping of recipe fields, got ${Array.isArray(data) ? 'a list' : 'a scalar'}`,
    );
    return null;
  }
  return {
    layer: { kind: 'file', display, doc, lc, data: normalizeShorthands(data) as Record<string, unknown> },
    data,
  };
}

/** `file:line:col` of a field of a file layer (its key), or the file alone. */
function locOf(layer: FileLayer, p: FieldPath): string {
  const { node, keyNode } = nodeAt(layer.doc, p);
  const n = keyNode ?? node;
  if (!n?.range) return layer.display;
  const lcp = lineCol(layer.lc, n.range[0]);
  return `${layer.display}:${lcp.line}:${lcp.col}`;
}

/** The preset a file names (its `preset:` value as written, before shorthands), or null with any error pushed. */
function presetLayer(layer: FileLayer, preset: unknown, errors: string[]): PresetLayer | null {
  if (preset === undefined) return null;
  if (typeof preset !== 'string') {
    errors.push(
      `${locOf(layer, ['preset'])}: preset: expected a preset name — one of ${Object.keys(PRESETS).join(', ')}`,
    );
    return null;
  }
  if (!PRESETS[preset]) {
    errors.push(
      `${locOf(layer, ['preset'])}: preset: unknown preset \`${preset}\` — ${suggestHint(preset, Object.keys(PRESETS), 'presets')}`,
    );
    return null;
  }
  return {
    kind: 'preset',
    display: `preset \`${preset}\``,
    data: normalizeShorthands(PRESETS[preset]!.recipe) as Record<string, unknown>,
  };
}

type Provenance = Record<string, { layer: number; index: number }[]>;

/** The layers merged in order, and for each item of a concatenated list the layer and index it came from. */
function mergeRecipeLayers(layers: readonly Layer[]): { raw: Record<string, unknown>; provenance: Provenance } {
  let raw: Record<string, unknown> = {};
  const provenance: Provenance = {};
  for (const key of CONCAT_KEYS) provenance[key] = [];
  layers.forEach((l, li) => {
    raw = mergeInto(raw, l.data, true);
    for (const key of CONCAT_KEYS) {
      const v = l.data[key];
      if (Array.isArray(v)) {
        // a non-list value replaced a list (validation reports it); otherwise the list was appended
        v.forEach((_, index) => provenance[key]!.push({ layer: li, index }));
      }
    }
  });
  return { raw, provenance };
}

/** Where a field of the merged recipe was written: the layer that wrote the deepest part of its path. */
function recipeLocator(layers: readonly Layer[], provenance: Provenance): (path: FieldPath) => Location {
  const top = layers[layers.length - 1]!;
  return (path) => {
    if (
      path.length >= 2 &&
      (CONCAT_KEYS as readonly string[]).includes(path[0] as string) &&
      typeof path[1] === 'number'
    ) {
      const p = provenance[path[0] as string]![path[1]];
      if (p) return locateIn(layers[p.layer]!, [path[0]!, p.index, ...path.slice(2)]);
    }
    let best: Layer = top;
    let bestDepth = -1;
    for (let i = layers.length - 1; i >= 0; i--) {
      const d = hasPath(layers[i]!.data, path);
      if (d > bestDepth) {
        best = layers[i]!;
        bestDepth = d;
      }
    }
    return locateIn(best, path);
  };
}

/** Read a recipe file with its presets and `extends`, merged; parse errors are UserErrors with positions. */
export function loadRecipeFile(file: string): LoadedRecipe {
  const abs = resolve(file);
  const layers: Layer[] = [];
  const errors: string[] = [];

  const readLayer = (path: string, stack: string[], from: { layer: FileLayer; at: FieldPath } | null): void => {
    const display = displayPath(path);
    const fromWhere = (): string => {
      if (!from) return display;
      const { node, keyNode } = nodeAt(from.layer.doc, from.at);
      const n = node ?? keyNode;
      if (!n?.range) return from.layer.display;
      const p = lineCol(from.layer.lc, n.range[0]);
      return `${from.layer.display}:${p.line}:${p.col}`;
    };
    if (stack.includes(path)) {
      errors.push(
        `${fromWhere()}: extends: \`${display}\` extends itself (${[...stack, path].map(displayPath).join(' -> ')}) — remove one of the extends`,
      );
      return;
    }
    const text = readRecipeText(path, display, from ? fromWhere : null, errors);
    if (text === null) return;
    const parsed = parseRecipeLayer(text, display, errors);
    if (!parsed) return;
    const { layer, data } = parsed;
    const preset = presetLayer(layer, data.preset, errors);
    if (preset) layers.push(preset);
    if (data.extends !== undefined) {
      const list = Array.isArray(data.extends) ? data.extends : [data.extends];
      list.forEach((ext, i) => {
        const at: FieldPath = Array.isArray(data.extends) ? ['extends', i] : ['extends'];
        if (typeof ext !== 'string' || ext === '') {
          errors.push(`${locOf(layer, at)}: ${formatPath(at)}: expected a path to a recipe file`);
          return;
        }
        readLayer(resolve(dirname(path), ext), [...stack, path], { layer, at });
      });
    }
    layers.push(layer);
  };

  readLayer(abs, [], null);
  if (errors.length) failWith(errors, displayPath(abs));

  const { raw, provenance } = mergeRecipeLayers(layers);
  // The name is the study's own: not inherited from a base file (two studies on one base stay apart).
  const topName = layers[layers.length - 1]!.data.name;
  raw.name = topName !== undefined ? topName : basename(abs, extname(abs));
  return { path: abs, raw, layers, locate: recipeLocator(layers, provenance) };
}

function locateIn(layer: Layer, path: FieldPath): Location {
  if (layer.kind === 'preset') return { file: layer.display, line: null, col: null };
  // Point at the key of a mapping entry (or the item of a list); for a missing field, at its parent.
  const { node, keyNode } = nodeAt(layer.doc, path);
  const n = keyNode ?? node;
  if (!n?.range) return { file: layer.display, line: 1, col: 1 };
  const p = lineCol(layer.lc, n.range[0]);
  return { file: layer.display, line: p.line, col: p.col };
}

/**
 * Load and schema-check a recipe file; every problem is reported at once with its position. When the only
 * schema problems are unknown keys, the planner's checks (names, options, axes) run too, so they are
 * reported in the same pass.
 */
export function readRecipe(
  file: string,
  registry: {
    methods: Record<string, MethodDescription>;
    datasets: Record<string, unknown>;
    procedures?: Record<string, ProcedureDescription>;
  } = snapshot(),
): { loaded: LoadedRecipe; recipe: Recipe } {
  const loaded = loadRecipeFile(file);
  const { recipe, issues, partial } = validateRecipe(loaded.raw);
  if (!recipe) {
    const all = [...issues];
    const procedures = registry.procedures ?? snapshot().procedures;
    if (partial)
      all.push(...planStages(partial, { methods: registry.methods, datasets: registry.datasets, procedures }).issues);
    failWith(formatIssues(all, loaded.locate), displayPath(loaded.path));
  }
  return { loaded, recipe };
}

export interface PlanFileOptions {
  /** Method registry (default: the committed `schemas/methods.generated.json`). */
  methods?: Record<string, MethodDescription>;
  /** Dataset families of `describe` (default: the committed snapshot's). */
  datasets?: Record<string, unknown>;
  /**
   * Parameter counts from the runtime: `auto` (default) counts when the runtime is installed and always
   * when budget matching needs it; `always` fails without the runtime; `never` never starts it (then a
   * recipe with `budget` is an error).
   */
  count?: 'auto' | 'always' | 'never';
  /** Counting function (default: the runtime's `count --specs`); tests may pass a table-backed one. */
  countFn?: (specs: RunSpec[]) => Promise<(CountResult | null)[]>;
  /**
   * The count cache folder for the runtime's counts (default `<state folder>/count-cache`, the state folder
   * being `$RANKFLOW_STATE_DIR` or `.state/services`); false: count every time. Unused with `countFn`.
   */
  countCache?: string | false;
  /** Overrides the recipe's max_runs. */
  maxRuns?: number;
}

export interface PlannedRecipe {
  recipe: Recipe;
  runs: PlannedRun[];
  sweepId: string;
  /** Non-fatal remarks, formatted with positions. */
  warnings: string[];
  /** The parameter counts gathered (by `countKey`), including the full-model size per dataset. */
  counts: CountTable;
  /** Absolute path of the recipe file. */
  path: string;
}

/** Trainable parameters of a run as a fraction of the full model it adapts (null without counts). */
export function fractionOfFull(run: PlannedRun, counts: CountTable): number | null {
  const full = counts[countKey(fullModelSpec(run.spec))];
  if (!run.params || !full) return null;
  return run.params.trainable / full.total;
}

/** The runtime's `count`, through the on-disk count cache unless `cacheDir` is false. */
function runtimeCounter(
  cacheDir: string | false | undefined,
  errors: string[],
): (specs: RunSpec[]) => Promise<(CountResult | null)[]> {
  if (cacheDir === false) return (specs) => countSpecs(specs, undefined, errors);
  const cache = new CountCache(cacheDir ?? join(defaultStateDir(), 'count-cache'));
  return (specs) => countSpecsCached(specs, cache, errors);
}

/**
 * Plan a recipe file: load (presets, extends), validate, expand, count parameters, deduplicate.
 * Throws a UserError naming file:line:col for every problem. This is the API the orchestration code calls.
 */
/** How planRecipeFile counts: whether it can, the counting call (filling `counts`) and what the runtime said. */
type StagePlanInputs = Omit<StagePlanOptions, 'counts'>;

interface Counter {
  mode: 'auto' | 'always' | 'never';
  canCount: boolean;
  counts: CountTable;
  errors: string[];
  fill(specs: RunSpec[]): Promise<void>;
}

function makeCounter(opts: PlanFileOptions): Counter {
  const mode = opts.count ?? 'auto';
  const errors: string[] = [];
  const countFn = opts.countFn ?? runtimeCounter(opts.countCache, errors);
  const counts: CountTable = {};
  return {
    mode,
    canCount: opts.countFn !== undefined || (mode !== 'never' && runtimeAvailable()),
    counts,
    errors,
    fill: async (specs) => {
      const res = await countFn(specs.map(countableSpec));
      specs.forEach((s, i) => (counts[countKey(s)] = res[i] ?? null));
    },
  };
}

/** Plan the recipe, counting what budget matching asks for first; every issue is a UserError at its line. */
async function planCounted(
  recipe: Recipe,
  opts: StagePlanInputs,
  c: Counter,
  loaded: LoadedRecipe,
  display: string,
): Promise<ReturnType<typeof planStages>> {
  let result = planStages(recipe, { ...opts, counts: c.counts });
  if (result.issues.length === 0 && result.countRequests.length > 0) {
    if (!c.canCount) {
      throw new UserError(
        `${display}: budget: matching parameter budgets needs counts from the runtime — ` +
          (c.mode === 'never' ? 'drop --no-count' : 'run `bash scripts/setup-python.sh` or set RANKFLOW_PYTHON'),
      );
    }
    await c.fill(result.countRequests);
    result = planStages(recipe, { ...opts, counts: c.counts });
  }
  if (result.issues.length) {
    const lines = formatIssues(result.issues, loaded.locate);
    if (c.errors.length) lines.push(`${display}: the runtime said: ${c.errors[0]}`);
    failWith(lines, display);
  }
  if (result.countRequests.length)
    throw new UserError(`${display}: budget: the runtime did not count every candidate setting`);
  return result;
}

/** Count the planned runs (and their full models) when the runtime can; `auto` plans on without counts. */
async function countPlanned(
  runs: PlannedRun[],
  c: Counter,
  withFullModel: boolean,
  explicitFn: boolean,
): Promise<void> {
  if (c.canCount && (c.mode === 'always' || explicitFn || c.mode === 'auto')) {
    const wanted = countRequestsFor(runs, c.counts, withFullModel);
    if (wanted.length) {
      try {
        await c.fill(wanted);
      } catch (e) {
        if (c.mode === 'always' || !(e instanceof UserError)) throw e;
        // auto: counting is a nicety when budget matching does not need it
      }
    }
    attachCounts(runs, c.counts);
  } else if (c.mode === 'always') {
    throw new UserError(
      'cannot count parameters: the runtime is not installed (run `bash scripts/setup-python.sh` or set RANKFLOW_PYTHON)',
    );
  }
}

export async function planRecipeFile(file: string, opts: PlanFileOptions = {}): Promise<PlannedRecipe> {
  const snap = snapshot();
  const methods = opts.methods ?? snap.methods;
  const datasets = opts.datasets ?? snap.datasets;
  const procedures = snap.procedures;
  const { loaded, recipe } = readRecipe(file, { methods, datasets, procedures });
  const display = displayPath(loaded.path);
  const c = makeCounter(opts);

  const missing = missingModelFolder(recipe.model);
  if (missing) failWith(formatIssues([{ path: ['model', 'name'], ...missing }], loaded.locate), display);
  const result = await planCounted(
    recipe,
    { methods, datasets, procedures, maxRuns: opts.maxRuns },
    c,
    loaded,
    display,
  );
  await countPlanned(result.runs, c, Boolean(methods.full), opts.countFn !== undefined);

  const broken = modelError(c.errors);
  if (broken) failWith(formatIssues([broken], loaded.locate), display);
  const warnings = formatIssues(result.warnings, loaded.locate);
  const uncounted = result.runs.filter((r) => r.params === null).length;
  if (c.canCount && uncounted > 0 && c.errors.length > 0) {
    warnings.push(`${display}: the runtime could not count ${uncounted} run(s); first error: ${c.errors[0]}`);
  }
  return {
    recipe,
    runs: result.runs,
    sweepId: makeSweepId(
      recipe.name,
      result.runs.map((r) => r.id),
    ),
    warnings,
    counts: c.counts,
    path: loaded.path,
  };
}
