/** Small pure helpers of the planner's phases (lists, glob patterns, value labels, cartesian products). */
import { canonicalJson } from './canonical.js';

export function asList<T>(v: T | T[] | undefined): T[] | undefined {
  if (v === undefined) return undefined;
  return Array.isArray(v) ? v : [v];
}

/** The distinct values of `xs` (by JSON), first occurrence first. */
export function uniq<T>(xs: T[]): T[] {
  const seen = new Set<string>();
  const out: T[] = [];
  for (const x of xs) {
    const k = JSON.stringify(x);
    if (!seen.has(k)) {
      seen.add(k);
      out.push(x);
    }
  }
  return out;
}

/** `*` matches any run of characters; a pattern without `*` matches only itself. */
export function globMatch(pattern: string, name: string): boolean {
  if (!pattern.includes('*')) return pattern === name;
  const re = new RegExp(
    '^' +
      pattern
        .split('*')
        .map((p) => p.replace(/[.+?^${}()|[\]\\]/g, '\\$&'))
        .join('.*') +
      '$',
  );
  return re.test(name);
}

/** A value as a setting label shows it (`lr=1e-4`, `targets=query+value`, `none`). */
export function fmtValue(v: unknown): string {
  if (typeof v === 'number') {
    if (v !== 0 && Math.abs(v) < 1e-3)
      return v
        .toExponential()
        .replace('e-', 'e-')
        .replace(/\.?0+e/, 'e');
    return String(v);
  }
  if (Array.isArray(v)) return v.map(fmtValue).join('+');
  if (v === null) return 'none';
  if (typeof v === 'object') return canonicalJson(v);
  return String(v);
}

/** Entries sorted by key, optionally without null values (the canonical form of option maps). */
export function sortedEntries(o: Record<string, unknown>, dropNull: boolean): Record<string, unknown> {
  const entries = Object.entries(o).filter(([, v]) => !dropNull || v !== null);
  return Object.fromEntries(entries.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}

/** Cartesian product of axes, calling `f` with one value per axis (last axis fastest). */
export function product<T>(axes: readonly (readonly T[])[], f: (pick: T[]) => void): void {
  const n = axes.length;
  if (n === 0) {
    f([]);
    return;
  }
  if (axes.some((a) => a.length === 0)) return;
  const idx = new Array<number>(n).fill(0);
  const pick = axes.map((a) => a[0]!);
  for (;;) {
    f(pick.slice());
    let i = n - 1;
    while (i >= 0) {
      idx[i]!++;
      if (idx[i]! < axes[i]!.length) {
        pick[i] = axes[i]![idx[i]!]!;
        break;
      }
      idx[i] = 0;
      pick[i] = axes[i]![0]!;
      i--;
    }
    if (i < 0) return;
  }
}
