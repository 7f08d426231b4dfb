/** Run labels: the `setting` that names what varies within a method entry, and the tags. */
import { TRAINING_FIELDS } from '../schemas/recipe.js';
import type { PlannedRun, RunLabels } from '../schemas/runspec.js';
import { canonicalJson } from './canonical.js';
import type { RunMeta } from './plan-types.js';
import { fmtValue } from './util.js';

/**
 * Fill `labels.setting` and `labels.tags`. The setting names the values of the fields that vary between
 * runs of the same method entry on the same dataset (besides rank and seed), so a table row is one setting;
 * a per-dataset difference (a learning rate per GLUE task) does not split rows.
 */
export function assignSettings(runs: PlannedRun[], metas: RunMeta[], recipeTags: string[]): void {
  const entryKey = (i: number) => `${metas[i]!.entry.name}\u0000${metas[i]!.entry.label ?? ''}`;
  const fieldsOf = (r: PlannedRun): [string, unknown][] => {
    const out: [string, unknown][] = [];
    for (const [k, v] of Object.entries(r.spec.method.options)) out.push([k, v]);
    if (r.spec.method.targets.length) out.push(['targets', r.spec.method.targets]);
    for (const f of TRAINING_FIELDS) {
      if (f === 'lr_groups') {
        for (const [g, v] of Object.entries(r.spec.training.lr_groups)) out.push([`lr.${g}`, v]);
      } else {
        out.push([f, r.spec.training[f]]);
      }
    }
    return out;
  };
  // (entry, dataset) -> field -> first value seen, plus the set of varying fields per entry. Runs that differ
  // only by seed share their training and method objects and come one after another: each such group is
  // looked at once.
  const first = new Map<string, Map<string, string>>();
  const varying = new Map<string, Set<string>>();
  const sameAsPrevious = (i: number): boolean => {
    if (i === 0) return false;
    const a = runs[i]!.spec;
    const b = runs[i - 1]!.spec;
    return (
      a.training === b.training &&
      a.method === b.method &&
      a.dataset === b.dataset &&
      metas[i]!.entry === metas[i - 1]!.entry
    );
  };
  runs.forEach((r, i) => {
    if (sameAsPrevious(i)) return;
    const ek = entryKey(i);
    const gk = ek + '\u0000' + r.spec.dataset.name;
    let f = first.get(gk);
    if (!f) {
      f = new Map();
      first.set(gk, f);
    }
    let vs = varying.get(ek);
    if (!vs) {
      vs = new Set();
      varying.set(ek, vs);
    }
    for (const [k, v] of fieldsOf(r)) {
      const c = typeof v === 'object' && v !== null ? canonicalJson(v) : String(v);
      const prev = f.get(k);
      if (prev === undefined) f.set(k, c);
      else if (prev !== c) vs.add(k);
    }
  });
  let setting = '';
  let tags: string[] = [];
  runs.forEach((r, i) => {
    if (!sameAsPrevious(i) || metas[i]!.budgetTag !== metas[i - 1]!.budgetTag) {
      const meta = metas[i]!;
      const vs = varying.get(entryKey(i))!;
      const parts: string[] = [];
      if (meta.entry.label) parts.push(meta.entry.label);
      if (vs.size) for (const [k, v] of fieldsOf(r)) if (vs.has(k)) parts.push(`${k}=${fmtValue(v)}`);
      setting = parts.join(' ');
      tags = [...new Set([...recipeTags, ...meta.entry.tags, ...(meta.budgetTag ? [meta.budgetTag] : [])])].sort();
    }
    (r.labels as RunLabels).setting = setting;
    (r.labels as RunLabels).tags = tags.slice();
  });
}
