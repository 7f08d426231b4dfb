/**
 * Method and dataset options: checking a value against its schema (from `describe`), reading a recipe's
 * option mapping into fixed values and grid axes, and laying one option set over another (written once: an
 * entry over its `method_settings`, a matching override over the entry, a budget patch over both).
 */
import type { MethodDescription, OptionSchema } from '../schemas/describe.js';
import type { FieldPath, IssueList } from './issues.js';
import type { OptionAxis, ResolvedOptions } from './plan-types.js';
import { suggestHint } from './suggest.js';
import { fmtValue, uniq } from './util.js';
import { describeValue } from './validate.js';

export type OptionCheck = { ok: true; value: unknown } | { ok: false; message: string; hint?: string };

function checkType(s: OptionSchema, v: unknown, bad: (expected: string) => OptionCheck): OptionCheck | null {
  switch (s.type) {
    case 'boolean':
      return typeof v !== 'boolean' ? bad('true or false') : null;
    case 'integer':
      return typeof v !== 'number' || !Number.isInteger(v) ? bad('an integer') : null;
    case 'number':
      return typeof v !== 'number' || !Number.isFinite(v) ? bad('a number') : null;
    case 'string':
      return typeof v !== 'string' ? bad('a string') : null;
    case 'list':
      return !Array.isArray(v) ? bad('a list') : null;
    case 'enum': {
      const choices = s.choices ?? [];
      if (choices.some((c) => c === v)) return null;
      const names = choices.map(String);
      return {
        ok: false,
        message: `expected one of ${names.map((c) => `\`${c}\``).join(', ')}, got ${describeValue(v)}`,
        hint: typeof v === 'string' ? suggestHint(v, names, 'values') : undefined,
      };
    }
  }
  return null;
}

/** Check one option value against its schema; returns the normalised value or an error message. */
export function checkOption(s: OptionSchema, v: unknown): OptionCheck {
  if (v === null && s.default === null) return { ok: true, value: null }; // "use the method's own default"
  const bad = (expected: string): OptionCheck => ({
    ok: false,
    message: `expected ${expected}, got ${describeValue(v)}`,
    hint: s.help ? `${s.help} (default ${fmtValue(s.default)})` : undefined,
  });
  const typeError = checkType(s, v, bad);
  if (typeError) return typeError;
  if (typeof v === 'number') {
    if (s.min !== undefined && v < s.min)
      return { ok: false, message: `expected a value >= ${s.min}, got ${v}`, hint: s.help };
    if (s.max !== undefined && v > s.max)
      return { ok: false, message: `expected a value <= ${s.max}, got ${v}`, hint: s.help };
  }
  return { ok: true, value: v };
}

/**
 * Validate a method's options (values may be lists = grid axes; for list-typed options a list of lists is
 * the grid). Unknown options are errors with a "did you mean".
 */
export function resolveOptions(
  method: string,
  desc: MethodDescription,
  raw: Record<string, unknown> | undefined,
  path: FieldPath,
  issues: IssueList,
  withDefaults: boolean,
): ResolvedOptions {
  const fixed: Record<string, unknown> = {};
  const axes: OptionAxis[] = [];
  if (withDefaults) {
    // Options whose default is null mean "computed by the method" (e.g. RandLoRA's α = 20·r): they are left
    // out of the spec (the runtime refuses an explicit null), everything else is written out.
    for (const [k, s] of Object.entries(desc.options)) if (s.default !== null) fixed[k] = s.default;
  }
  for (const [k, v] of Object.entries(raw ?? {})) {
    const s = desc.options[k];
    if (!s) {
      const known = Object.keys(desc.options);
      issues.add(
        [...path, k],
        `unknown option \`${k}\` for method \`${method}\``,
        known.length ? suggestHint(k, known, `options of ${method}`) : `\`${method}\` has no options`,
      );
      continue;
    }
    const isGrid = Array.isArray(v) && (s.type !== 'list' || (v.length > 0 && v.every((e) => Array.isArray(e))));
    const values = isGrid ? (v as unknown[]) : [v];
    if (isGrid && values.length === 0) {
      issues.add([...path, k], 'expected a value or a non-empty list of values, got an empty list');
      continue;
    }
    const good: unknown[] = [];
    values.forEach((val, i) => {
      const r = checkOption(s, val);
      if (r.ok) good.push(r.value);
      else issues.add(isGrid ? [...path, k, i] : [...path, k], r.message, r.hint);
    });
    if (good.length !== values.length) continue;
    if (isGrid) {
      delete fixed[k];
      axes.push({ key: k, values: uniq(good) });
    } else {
      fixed[k] = good[0];
    }
  }
  return { fixed, axes };
}

/**
 * Lay `over` on `base` (in place): a fixed value replaces the key's value or axis; an axis replaces the key's
 * value or axis and moves to the end of the axes.
 */
export function overlayOptions(base: ResolvedOptions, over: ResolvedOptions): void {
  for (const [k, v] of Object.entries(over.fixed)) {
    base.fixed[k] = v;
    base.axes = base.axes.filter((a) => a.key !== k);
  }
  for (const a of over.axes) {
    delete base.fixed[a.key];
    base.axes = base.axes.filter((x) => x.key !== a.key);
    base.axes.push(a);
  }
}
