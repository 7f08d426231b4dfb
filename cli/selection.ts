/** What `table`, `plot` and `npm run results` share: the selection of runs, references, and their errors. */
import { readFile } from 'node:fs/promises';
import { TableInputError, UserError } from '../core/errors.js';
import type { RunFilters } from './results-reader.js';
import { listFlag, type OptionDefs } from './args.js';
import type { TableOptions } from '../tables/table.js';
import { parseReferences } from '../tables/reference.js';

export const DEFAULT_REFERENCE = 'reference/paper-numbers.csv';

const SEL = 'Selection (repeatable, or comma-separated)';

/** Options shared by `table`, `plot` and `npm run results`: the store and the selection. */
export const SELECTION_OPTIONS = {
  store: {
    type: 'string',
    arg: 'DIR|s3://bucket/prefix',
    help: 'where the results are (default: the configured store)',
    group: SEL,
  },
  method: { type: 'string', multiple: true, arg: 'NAME', help: 'methods', group: SEL },
  dataset: {
    type: 'string',
    multiple: true,
    arg: 'NAME|FAMILY',
    help: 'datasets, or a family (glue, vtab)',
    group: SEL,
  },
  rank: { type: 'string', multiple: true, arg: 'N|none', help: 'ranks (`none`: methods without one)', group: SEL },
  tag: { type: 'string', multiple: true, arg: 'TAG', help: 'runs carrying every tag given', group: SEL },
  model: { type: 'string', multiple: true, arg: 'NAME', help: 'models', group: SEL },
  setting: { type: 'string', multiple: true, arg: 'TEXT', help: 'setting labels (`lr=1e-3`)', group: SEL },
  stage: { type: 'string', multiple: true, arg: 'NAME', help: 'recipe stages (recipes with `stages`)', group: SEL },
  metric: {
    type: 'string',
    arg: 'NAME',
    help: "report this metric instead of each dataset's headline metric",
    group: SEL,
  },
  best: { type: 'boolean', help: 'use the metrics of the best checkpoint instead of the final ones', group: SEL },
} as const satisfies OptionDefs;

export function filtersFrom(v: {
  method?: string[] | undefined;
  dataset?: string[] | undefined;
  rank?: string[] | undefined;
  tag?: string[] | undefined;
  model?: string[] | undefined;
  setting?: string[] | undefined;
  stage?: string[] | undefined;
}): RunFilters {
  const ranks = listFlag(v.rank)?.map((r) => {
    if (r === 'none' || r === 'null') return null;
    const n = Number(r);
    if (!Number.isInteger(n) || n <= 0) throw new UserError(`--rank ${r}: expected a positive integer or \`none\``);
    return n;
  });
  return {
    methods: listFlag(v.method),
    datasets: listFlag(v.dataset),
    ranks,
    tags: listFlag(v.tag),
    models: listFlag(v.model),
    settings: v.setting, // settings may contain commas
    stages: listFlag(v.stage),
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
