/**
 * Schema validation of a recipe with readable, collected issues: zod's issues are turned into
 * "what was expected, what was found, how to fix it", with "did you mean" hints for unknown keys and values.
 */
import type { z } from 'zod';
import { Recipe, normalizeShorthands } from '../schemas/recipe.js';
import { IssueList, type FieldPath, type PlanIssue } from './issues.js';
import { suggestHint } from './suggest.js';

type AnyIssue = z.core.$ZodIssue;

/** Describe a JSON value briefly for an error message. */
export function describeValue(v: unknown): string {
  if (v === undefined) return 'nothing';
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'a list';
  if (typeof v === 'object') return 'a mapping';
  if (typeof v === 'string') return `\`${v.length > 40 ? v.slice(0, 37) + '...' : v}\``;
  return `${typeof v} \`${String(v)}\``;
}

function getAt(root: unknown, path: FieldPath): unknown {
  let cur: unknown = root;
  for (const seg of path) {
    if (cur === null || typeof cur !== 'object') return undefined;
    cur = (cur as Record<string | number, unknown>)[seg];
  }
  return cur;
}

interface Def {
  type: string;
  shape?: Record<string, { _zod: { def: Def } }>;
  element?: { _zod: { def: Def } };
  innerType?: { _zod: { def: Def } };
  options?: { _zod: { def: Def } }[];
  valueType?: { _zod: { def: Def } };
  in?: { _zod: { def: Def } };
}

/** The object schemas reachable at `path` (unions may give several); used to list the known keys. */
function objectDefsAt(def: Def, path: FieldPath): Def[] {
  const unwrap = (d: Def): Def[] => {
    if (d.type === 'optional' || d.type === 'nullable' || d.type === 'default') return unwrap(d.innerType!._zod.def);
    if (d.type === 'pipe' && d.in) return unwrap(d.in._zod.def);
    if (d.type === 'union') return d.options!.flatMap((o) => unwrap(o._zod.def));
    return [d];
  };
  let defs = unwrap(def);
  for (const seg of path) {
    const next: Def[] = [];
    for (const d of defs) {
      if (d.type === 'object' && typeof seg === 'string' && d.shape?.[seg]) next.push(...unwrap(d.shape[seg]._zod.def));
      else if (d.type === 'array' && typeof seg === 'number') next.push(...unwrap(d.element!._zod.def));
      else if (d.type === 'record') next.push(...unwrap(d.valueType!._zod.def));
    }
    defs = next;
  }
  return defs.filter((d) => d.type === 'object');
}

function expectedType(e: string): string {
  switch (e) {
    case 'array':
      return 'a list';
    case 'object':
    case 'record':
      return 'a mapping';
    case 'int':
      return 'an integer';
    case 'number':
      return 'a number';
    case 'string':
      return 'a string';
    case 'boolean':
      return 'true or false';
    case 'null':
      return 'null';
    default:
      return e;
  }
}

/** Pick the union branch that got furthest (deepest issue path; a list input prefers the list branch). */
function bestBranch(branches: AnyIssue[][], input: unknown): AnyIssue[] {
  let best = branches[0] ?? [];
  let bestScore = -Infinity;
  for (const b of branches) {
    let score = Math.max(0, ...b.map((i) => i.path.length));
    const top = b.find((i) => i.path.length === 0);
    if (top && top.code === 'invalid_type') {
      const exp = top.expected;
      if ((exp === 'array') === Array.isArray(input)) score += 0.5;
      else score -= 1;
    }
    if (score > bestScore) {
      best = b;
      bestScore = score;
    }
  }
  return best;
}

function addZodIssue(out: IssueList, issue: AnyIssue, prefix: FieldPath, raw: unknown, schemaDef: Def): void {
  const path = [...prefix, ...(issue.path as (string | number)[])];
  const found = getAt(raw, path);
  switch (issue.code) {
    case 'unrecognized_keys': {
      const known = objectDefsAt(schemaDef, path).flatMap((d) => Object.keys(d.shape ?? {}));
      for (const k of issue.keys) {
        out.add([...path, k], `unknown key \`${k}\``, suggestHint(k, [...new Set(known)], 'keys here'));
      }
      return;
    }
    case 'invalid_union': {
      if (issue.errors.length === 0) {
        out.add(path, 'ambiguous value');
        return;
      }
      // The axis unions (`T | T[]`) say "a value or a list of them".
      const branch = bestBranch(issue.errors, found);
      for (const sub of branch) addZodIssue(out, sub, path, raw, schemaDef);
      return;
    }
    case 'invalid_type': {
      if (found === undefined) {
        out.add(path, `missing required field (expected ${expectedType(issue.expected)})`, 'add it');
      } else {
        out.add(path, `expected ${expectedType(issue.expected)}, got ${describeValue(found)}`);
      }
      return;
    }
    case 'invalid_value': {
      const values = issue.values.map((v) => String(v));
      const hint = typeof found === 'string' ? suggestHint(found, values, 'values') : `use one of ${values.join(', ')}`;
      out.add(path, `expected one of ${values.map((v) => `\`${v}\``).join(', ')}, got ${describeValue(found)}`, hint);
      return;
    }
    case 'too_small': {
      if (issue.origin === 'array') out.add(path, `expected at least ${issue.minimum} item(s), got an empty list`);
      else if (issue.origin === 'string') out.add(path, 'expected a non-empty string');
      else
        out.add(
          path,
          `expected a number ${issue.inclusive ? '>=' : '>'} ${issue.minimum}, got ${describeValue(found)}`,
        );
      return;
    }
    case 'too_big': {
      if (issue.origin === 'string')
        out.add(
          path,
          `expected at most ${issue.maximum} characters, got ${typeof found === 'string' ? found.length : 'more'}`,
          'shorten it (a long text belongs in a file the recipe names)',
        );
      else if (issue.origin === 'array') out.add(path, `expected at most ${issue.maximum} item(s)`);
      else
        out.add(
          path,
          `expected a number ${issue.inclusive ? '<=' : '<'} ${issue.maximum}, got ${describeValue(found)}`,
        );
      return;
    }
    case 'invalid_format':
      out.add(
        path,
        `expected ${issue.message.replace(/^Invalid string: must match pattern .*/, 'a valid name')}, got ${describeValue(found)}`,
      );
      return;
    default:
      out.add(path, issue.message);
  }
}

/**
 * Convert the zod issues of `schema.safeParse(valueAt(root, prefix))` into PlanIssues with full paths.
 * `root` is the whole recipe, `prefix` the path of the validated value inside it.
 */
export function zodIssues(
  issues: readonly AnyIssue[],
  raw: unknown,
  schema: z.ZodType,
  prefix: FieldPath = [],
  into?: IssueList,
): PlanIssue[] {
  const out = into ?? new IssueList();
  const def = (schema as unknown as { _zod: { def: Def } })._zod.def;
  for (const i of issues) addZodIssue(out, i, prefix, raw, objectRoot(def, prefix));
  return out.items;
}

// zodIssues is called with a sub-schema and a sub-prefix; objectDefsAt needs the def of the root the
// full path starts from, so we wrap the sub-schema def in a chain of objects matching the prefix.
function objectRoot(def: Def, prefix: FieldPath): Def {
  let d = def;
  for (let i = prefix.length - 1; i >= 0; i--) {
    const seg = prefix[i]!;
    const inner = { _zod: { def: d } };
    d = typeof seg === 'number' ? { type: 'array', element: inner } : { type: 'object', shape: { [seg]: inner } };
  }
  return d;
}

function withoutKeys(value: unknown, path: readonly PropertyKey[], keys: readonly string[]): unknown {
  if (value === null || typeof value !== 'object') return value;
  if (path.length === 0) {
    if (Array.isArray(value)) return value;
    const out = { ...(value as Record<string, unknown>) };
    for (const k of keys) delete out[k];
    return out;
  }
  const [head, ...rest] = path;
  if (Array.isArray(value)) return value.map((v, i) => (i === head ? withoutKeys(v, rest, keys) : v));
  const obj = value as Record<string, unknown>;
  return { ...obj, [head as string]: withoutKeys(obj[head as string], rest, keys) };
}

/**
 * Validate a merged raw recipe (shorthands allowed); returns the parsed Recipe or the issues. When the only
 * problems are unknown keys, `partial` is the recipe without them, so the planner's own checks can still
 * run and every problem is reported in one pass.
 */
export function validateRecipe(raw: unknown): { recipe: Recipe | null; issues: PlanIssue[]; partial: Recipe | null } {
  const norm = normalizeShorthands(raw);
  const r = Recipe.safeParse(norm);
  if (r.success) return { recipe: r.data, issues: [], partial: null };
  const issues = zodIssues(r.error.issues, norm, Recipe);
  let partial: Recipe | null = null;
  if (r.error.issues.every((i) => i.code === 'unrecognized_keys')) {
    let stripped: unknown = norm;
    for (const i of r.error.issues)
      if (i.code === 'unrecognized_keys') stripped = withoutKeys(stripped, i.path, i.keys);
    const again = Recipe.safeParse(stripped);
    if (again.success) partial = again.data;
  }
  return { recipe: null, issues, partial };
}
