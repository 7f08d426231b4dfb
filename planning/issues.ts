/** Problems found while validating or planning a recipe: a field path, what is wrong, and how to fix it. */

export type FieldPath = readonly (string | number)[];

export interface PlanIssue {
  /** Path of the offending field in the (merged) recipe, e.g. `['methods', 2, 'name']`. */
  path: FieldPath;
  /** What is wrong and what was expected. */
  message: string;
  /** How to fix it ("did you mean `randlora`?"). */
  hint?: string;
}

/** `methods[2].options.alpha` */
export function formatPath(path: FieldPath): string {
  let out = '';
  for (const seg of path) {
    if (typeof seg === 'number') out += `[${seg}]`;
    else if (/^[A-Za-z_][A-Za-z0-9_-]*$/.test(seg)) out += (out ? '.' : '') + seg;
    else out += `[${JSON.stringify(seg)}]`;
  }
  return out || '(recipe)';
}

/** Collects issues, dropping exact duplicates (the same problem met in many grid cells is reported once). */
export class IssueList {
  readonly items: PlanIssue[] = [];
  private readonly seen = new Set<string>();

  add(path: FieldPath, message: string, hint?: string): void {
    const key = formatPath(path) + '\u0000' + message;
    if (this.seen.has(key)) return;
    this.seen.add(key);
    this.items.push(hint === undefined ? { path: [...path], message } : { path: [...path], message, hint });
  }

  get length(): number {
    return this.items.length;
  }
}
