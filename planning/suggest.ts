/** "Did you mean" hints: the closest known name by edit distance (with transpositions counted as one edit). */

export function editDistance(a: string, b: string): number {
  const m = a.length;
  const n = b.length;
  const d: number[][] = Array.from({ length: m + 1 }, (_, i) => {
    const row = new Array<number>(n + 1).fill(0);
    row[0] = i;
    return row;
  });
  for (let j = 0; j <= n; j++) d[0]![j] = j;
  for (let i = 1; i <= m; i++) {
    for (let j = 1; j <= n; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let v = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) v = Math.min(v, d[i - 2]![j - 2]! + 1);
      d[i]![j] = v;
    }
  }
  return d[m]![n]!;
}

/** The closest candidate to `name`, or null when nothing is close enough to be a plausible typo. */
export function closest(name: string, candidates: Iterable<string>): string | null {
  const lower = name.toLowerCase();
  let best: string | null = null;
  let bestD = Infinity;
  for (const c of candidates) {
    const cl = c.toLowerCase();
    if (cl === lower) return c;
    let dist = editDistance(lower, cl);
    // A name that is a suffix/prefix of a candidate (`sst2` for `glue/sst2`) is a strong hint.
    if (cl.endsWith('/' + lower) || cl.startsWith(lower + '/')) dist = Math.min(dist, 1);
    // A truncated name (`warmup` for `warmup_ratio`) is a strong hint too.
    if (lower.length >= 4 && cl.startsWith(lower)) dist = Math.min(dist, 2);
    if (dist < bestD || (dist === bestD && best !== null && c < best)) {
      best = c;
      bestD = dist;
    }
  }
  if (best === null) return null;
  const limit = Math.max(2, Math.floor(Math.max(name.length, best.length) / 3));
  return bestD <= limit ? best : null;
}

/** `did you mean `x`?` or a list of the valid names when none is close (at most `max` shown). */
export function suggestHint(name: string, candidates: readonly string[], what: string, max = 12): string {
  const c = closest(name, candidates);
  if (c !== null) return `did you mean \`${c}\`?`;
  const sorted = [...candidates].sort();
  const shown = sorted
    .slice(0, max)
    .map((x) => `\`${x}\``)
    .join(', ');
  return `known ${what}: ${shown}${sorted.length > max ? `, ... (${sorted.length} in all)` : ''}`;
}
