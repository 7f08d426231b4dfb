/**
 * `rankflow table <sweep|recipe>...`: the paper table of one or more sweeps' results.
 */
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { dirname, extname, resolve } from 'node:path';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import type { Command } from './index.js';
import { UserError } from '../errors.js';
import { openResultStore, readSelection, type RunFilters } from '../results-reader.js';
import { buildTable, DIMS, type Dim, type TableOptions } from '../../tables/table.js';
import { FORMATS, render, type Format } from '../../tables/render.js';
import { parseReferences } from '../../tables/reference.js';
import { TableInputError } from '../../tables/errors.js';

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

const TABLE_OPTIONS = {
  ...SELECTION_OPTIONS,
  format: { type: 'string', short: 'f' },
  rows: { type: 'string' },
  cols: { type: 'string' },
  digits: { type: 'string' },
  baseline: { type: 'string' },
  reference: { type: 'string' },
  scale: { type: 'string' },
  title: { type: 'string' },
  out: { type: 'string', short: 'o' },
  'no-std': { type: 'boolean' },
  'no-params': { type: 'boolean' },
  'no-avg': { type: 'boolean' },
} as const satisfies ParseArgsConfig['options'];

const SELECTION_HELP = `Selection (repeatable, or comma-separated):
  --store DIR|s3://bucket/prefix   where the results are (default: the configured store)
  --method NAME   --dataset NAME|FAMILY   --rank N|none   --tag TAG   --model NAME   --setting TEXT
  --metric NAME   report this metric instead of each dataset's headline metric
  --best          use the metrics of the best checkpoint instead of the final ones`;

const HELP = `Usage: rankflow table <sweep|recipe>... [options]

Paper table of the results of one or more sweeps (joined), named by sweep id or recipe.
Cells are the mean ± sample standard deviation over seeds; cells with failed or missing runs say so.

${SELECTION_HELP}

Table:
  -f, --format md|latex|csv|html|json   (default: from --out's extension, else md)
  --rows DIMS      row dimensions, from ${DIMS.join(', ')} (default method; dimensions that vary are added)
  --cols DIM       column dimension (default dataset; adds GLUE / VTAB group averages and Avg)
  --digits N       decimals (default 1)
  --baseline ROW   add the difference to this row (a method such as lora, or a full row label)
  --reference [FILE]  add published numbers (default ${DEFAULT_REFERENCE}) and the difference to them
  --scale auto|1|100  ratio metrics ×100 when auto (default)
  --title TEXT     caption / heading
  --no-std --no-params --no-avg
  -o, --out FILE   write to FILE instead of stdout`;

function list(values: string[] | undefined): string[] | undefined {
  if (!values) return undefined;
  const out = values.flatMap((v) => v.split(',')).map((v) => v.trim()).filter((v) => v !== '');
  return out.length ? out : undefined;
}

export function parseCli<T extends ParseArgsConfig['options']>(argv: string[], options: T, command: string) {
  try {
    return parseArgs({ args: argv, options, allowPositionals: true, strict: true });
  } catch (e) {
    const msg = (e as Error).message.split('\n')[0]!.replace(/\. To specify a positional.*$/, '');
    throw new UserError(`${command}: ${msg}; run \`rankflow ${command} --help\``);
  }
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

function parseDims(flag: string, value: string): Dim[] {
  const dims = value.split(',').map((d) => d.trim()).filter((d) => d !== '');
  for (const d of dims) {
    if (!(DIMS as readonly string[]).includes(d)) {
      throw new UserError(`${flag} ${value}: unknown dimension \`${d}\`; use ${DIMS.join(', ')}`);
    }
  }
  return dims as Dim[];
}

const EXT_FORMAT: Record<string, Format> = { '.md': 'md', '.tex': 'latex', '.csv': 'csv', '.html': 'html', '.htm': 'html', '.json': 'json' };

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
    throw new UserError(`--reference ${path}: file not found; give a CSV with columns method,setting,backbone,benchmark,metric,value,params,source`);
  }
  return parseReferences(text, path);
}

export async function runTable(argv: string[]): Promise<number> {
  // `--reference` may stand without a file: use the default file then.
  const args = [...argv];
  const ri = args.indexOf('--reference');
  if (ri >= 0 && (ri === args.length - 1 || args[ri + 1]!.startsWith('-'))) args.splice(ri + 1, 0, DEFAULT_REFERENCE);
  const { values: v, positionals } = parseCli(args, TABLE_OPTIONS, 'table');
  const outPath = v.out;
  let format: Format = 'md';
  if (v.format) {
    const f = v.format === 'tex' ? 'latex' : v.format === 'markdown' ? 'md' : v.format;
    if (!(FORMATS as readonly string[]).includes(f)) throw new UserError(`--format ${v.format}: use one of ${FORMATS.join(', ')}`);
    format = f as Format;
  } else if (outPath) {
    const f = EXT_FORMAT[extname(outPath).toLowerCase()];
    if (!f) throw new UserError(`--out ${outPath}: cannot tell the format from the extension; add --format ${FORMATS.join('|')}`);
    format = f;
  }
  let digits = 1;
  if (v.digits !== undefined) {
    digits = Number(v.digits);
    if (!Number.isInteger(digits) || digits < 0 || digits > 6) throw new UserError(`--digits ${v.digits}: expected an integer from 0 to 6`);
  }
  let scale: TableOptions['scale'] = 'auto';
  if (v.scale !== undefined && v.scale !== 'auto') {
    scale = Number(v.scale);
    if (!Number.isFinite(scale) || scale === 0) throw new UserError(`--scale ${v.scale}: expected auto or a non-zero number such as 1 or 100`);
  }
  const rows = v.rows ? parseDims('--rows', v.rows) : undefined;
  const cols = v.cols ? parseDims('--cols', v.cols) : undefined;
  if (cols && cols.length !== 1) throw new UserError(`--cols ${v.cols}: give exactly one dimension`);
  const filters = filtersFrom(v);
  const text = await userErrors(async () => {
    const references = v.reference ? await loadReferences(v.reference) : undefined;
    const store = await openResultStore(v.store);
    const sel = await readSelection(store, positionals, filters);
    for (const n of sel.notes) process.stderr.write(`rankflow: note: ${n}\n`);
    const model = buildTable(sel.runs, {
      rows,
      cols: cols?.[0],
      metric: v.metric ?? null,
      which: v.best ? 'best' : 'final',
      digits,
      scale,
      baseline: v.baseline ?? null,
      references,
      std: !v['no-std'],
      params: !v['no-params'],
      avg: !v['no-avg'],
      title: v.title ?? null,
    });
    return render(model, format);
  });
  if (outPath) {
    const p = resolve(outPath);
    await mkdir(dirname(p), { recursive: true });
    await writeFile(p, text);
    process.stderr.write(`rankflow: wrote ${outPath}\n`);
  } else {
    process.stdout.write(text);
  }
  return 0;
}

export const tableCommand: Command = {
  name: 'table',
  summary: 'paper table (md, LaTeX, CSV, HTML, JSON) of sweep results',
  help: HELP,
  run: runTable,
};
