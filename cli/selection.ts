/** What `table`, `plot` and `npm run results` share: the selection of runs, references, and their errors. */
import { readFile } from 'node:fs/promises';
import type { ParseArgsConfig } from 'node:util';
import { TableInputError, UserError } from '../core/errors.js';
import type { RunFilters } from './results-reader.js';
import type { TableOptions } from '../tables/table.js';
import { parseReferences } from '../tables/reference.js';

export const DEFAULT_REFERENCE = 'reference/paper-numbers.csv';

/** Options shared by `table` and `plot`: the store and the selection. */
export const SELECTION_OPTIONS = {
  store: { type: 'string' },
  method: { type: 'string', multiple: true },
  dataset: { type: 'string', multiple: true },
  rank: { type: 'string', multiple: true },
  tag: { type: 'string', multiple: true },
  model: { type: 'string', multiple: true },
  setting: { type: 'string', multiple: true },
  metric: { type: 'string' },
  best: { type: 'boolean' },
} as const satisfies ParseArgsConfig['options'];

export const SELECTION_HELP = `Selection (repeatable, or comma-separated):
  --store DIR|s3://bucket/prefix   where the results are (default: the configured store)
  --method NAME   --dataset NAME|FAMILY   --rank N|none   --tag TAG   --model NAME   --setting TEXT
  --metric NAME   report this metric instead of each dataset's headline metric
  --best          use the metrics of the best checkpoint instead of the final ones`;

function list(values: string[] | undefined): string[] | undefined {
  if (!values) return undefined;
  const out = values
    .flatMap((v) => v.split(','))
    .map((v) => v.trim())
    .filter((v) => v !== '');
  return out.length ? out : undefined;
}

export function filtersFrom(v: {
  method?: string[] | undefined;
  dataset?: string[] | undefined;
  rank?: string[] | undefined;
  tag?: string[] | undefined;
  model?: string[] | undefined;
  setting?: string[] | undefined;
}): RunFilters {
  const ranks = list(v.rank)?.map((r) => {
    if (r === 'none' || r === 'null') return null;
    const n = Number(r);
    if (!Number.isInteger(n) || n <= 0) throw new UserError(`--rank ${r}: expected a positive integer or \`none\``);
    return n;
  });
  return {
    methods: list(v.method),
    datasets: list(v.dataset),
    ranks,
    tags: list(v.tag),
    models: list(v.model),
    settings: v.setting, // settings may contain commas
  };
}

/** Runs a table/plot step, turning the tables' input errors into one-line user errors. */
export async function userErrors<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (e) {
    if (e instanceof TableInputError) throw new UserError(e.message);
    throw e;
  }
}

export async function loadReferences(path: string): Promise<TableOptions['references']> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch {
    throw new UserError(
      `--reference ${path}: file not found; give a CSV with columns method,setting,backbone,benchmark,metric,value,params,source`,
    );
  }
  return parseReferences(text, path);
}
