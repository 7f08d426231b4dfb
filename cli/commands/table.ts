/**
 * `rankflow table <sweep|recipe>...`: the paper table of one or more sweeps' results.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname, extname, resolve } from 'node:path';
import type { ParseArgsConfig } from 'node:util';
import type { Command } from '../command.js';
import { UserError } from '../../core/errors.js';
import { parseCli } from '../args.js';
import { openResultStore, readSelection } from '../results-reader.js';
import {
  DEFAULT_REFERENCE,
  filtersFrom,
  loadReferences,
  SELECTION_HELP,
  SELECTION_OPTIONS,
  userErrors,
} from '../selection.js';
import { buildTable, DIMS, type Dim, type TableOptions } from '../../tables/table.js';
import { FORMATS, render, type Format } from '../../tables/render.js';

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

function parseDims(flag: string, value: string): Dim[] {
  const dims = value
    .split(',')
    .map((d) => d.trim())
    .filter((d) => d !== '');
  for (const d of dims) {
    if (!(DIMS as readonly string[]).includes(d)) {
      throw new UserError(`${flag} ${value}: unknown dimension \`${d}\`; use ${DIMS.join(', ')}`);
    }
  }
  return dims as Dim[];
}

const EXT_FORMAT: Record<string, Format> = {
  '.md': 'md',
  '.tex': 'latex',
  '.csv': 'csv',
  '.html': 'html',
  '.htm': 'html',
  '.json': 'json',
};

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
    if (!(FORMATS as readonly string[]).includes(f))
      throw new UserError(`--format ${v.format}: use one of ${FORMATS.join(', ')}`);
    format = f as Format;
  } else if (outPath) {
    const f = EXT_FORMAT[extname(outPath).toLowerCase()];
    if (!f)
      throw new UserError(
        `--out ${outPath}: cannot tell the format from the extension; add --format ${FORMATS.join('|')}`,
      );
    format = f;
  }
  let digits = 1;
  if (v.digits !== undefined) {
    digits = Number(v.digits);
    if (!Number.isInteger(digits) || digits < 0 || digits > 6)
      throw new UserError(`--digits ${v.digits}: expected an integer from 0 to 6`);
  }
  let scale: TableOptions['scale'] = 'auto';
  if (v.scale !== undefined && v.scale !== 'auto') {
    scale = Number(v.scale);
    if (!Number.isFinite(scale) || scale === 0)
      throw new UserError(`--scale ${v.scale}: expected auto or a non-zero number such as 1 or 100`);
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
