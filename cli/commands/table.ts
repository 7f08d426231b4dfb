/**
 * `rankflow table <sweep|recipe>...`: the paper table of one or more sweeps' results.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname, extname, resolve } from 'node:path';
import { UserError } from '../../core/errors.js';
import { defineCommand, type OptionDefs, type Parsed } from '../args.js';
import { openResultStore, readSelection } from '../results-reader.js';
import { DEFAULT_REFERENCE, filtersFrom, loadReferences, SELECTION_OPTIONS, userErrors } from '../selection.js';
import {
  buildTable,
  DIMS,
  PARAMS_CONVENTIONS,
  SIGNIFICANCE_TESTS,
  type Dim,
  type SignificanceTest,
  type ParamsConvention,
  type TableOptions,
} from '../../tables/table.js';
import { FORMATS, render, type Format } from '../../tables/render.js';
import { addStatColumns } from '../../tables/stats.js';
import { applySplits } from '../../tables/select.js';
import { withProvenance } from '../../tables/footer.js';
import { rankflowVersions } from '../worker.js';

const TAB = 'Table';

const TABLE_OPTIONS = {
  ...SELECTION_OPTIONS,
  format: {
    type: 'string',
    short: 'f',
    arg: 'md|latex|csv|html|json',
    help: "(default: from --out's extension, else md)",
    group: TAB,
  },
  rows: {
    type: 'string',
    arg: 'DIMS',
    help: `row dimensions, from ${DIMS.join(', ')} (default method; dimensions that vary are added)`,
    group: TAB,
  },
  cols: {
    type: 'string',
    arg: 'DIM',
    help: 'column dimension (default dataset; adds GLUE / VTAB group averages and Avg)',
    group: TAB,
  },
  digits: { type: 'string', arg: 'N', help: 'decimals (default 1)', group: TAB },
  baseline: {
    type: 'string',
    arg: 'ROW',
    help: 'add the difference to this row (a method such as lora, or a full row label)',
    group: TAB,
  },
  reference: {
    type: 'string',
    arg: '[FILE]',
    bare: DEFAULT_REFERENCE,
    help: `add published numbers (default ${DEFAULT_REFERENCE}) and the difference to them`,
    group: TAB,
  },
  scale: { type: 'string', arg: 'auto|1|100', help: 'ratio metrics ×100 when auto (default)', group: TAB },
  title: { type: 'string', arg: 'TEXT', help: 'caption / heading', group: TAB },
  out: { type: 'string', short: 'o', arg: 'FILE', help: 'write to FILE instead of stdout', group: TAB },
  'no-std': { type: 'boolean', help: 'no standard deviations', group: TAB },
  'no-params': { type: 'boolean', help: 'no parameter column', group: TAB },
  params: {
    type: 'string',
    arg: PARAMS_CONVENTIONS.join('|'),
    help: "count the task head or not (default without-head: the LoRA paper's convention; with-head: PEFT's)",
    group: TAB,
  },
  'no-avg': { type: 'boolean', help: 'no group averages', group: TAB },
  'select-on': {
    type: 'string',
    arg: 'SPLIT',
    help: 'pick per method the setting (lr, ...) with the best mean score on SPLIT over seeds (needs --report)',
    group: TAB,
  },
  report: {
    type: 'string',
    arg: 'SPLIT',
    help: "report this split's scores (runs planned with eval_splits: [validation, test]); never the --select-on one",
    group: TAB,
  },
  'select-per': {
    type: 'string',
    arg: 'method|dataset',
    help: 'one selected setting per method (default; mean over its datasets) or per method and dataset',
    group: TAB,
  },
  efficiency: {
    type: 'boolean',
    help: 'add peak memory, time per step and wall time columns (with the devices in the notes)',
    group: TAB,
  },
  significance: {
    type: 'string',
    arg: SIGNIFICANCE_TESTS.join('|'),
    help: "mark whether each column's best row is significantly better than each other row over seeds (bootstrap: paired, where seeds pair up)",
    group: TAB,
  },
  alpha: { type: 'string', arg: 'P', help: 'p threshold of --significance (default 0.05)', group: TAB },
  stats: {
    type: 'string',
    arg: 'KEYS',
    help: "stage statistics as extra columns (compression_ratio, params_pruned, tokens_per_s, ...: the run's or its upstream run's)",
    group: TAB,
  },
} as const satisfies OptionDefs;

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

function parseSignificance(
  test: string | undefined,
  alpha: string | undefined,
): { significance?: SignificanceTest; alpha?: number } {
  if (test === undefined) {
    if (alpha !== undefined) throw new UserError(`--alpha ${alpha}: add --significance welch or bootstrap`);
    return {};
  }
  if (!(SIGNIFICANCE_TESTS as readonly string[]).includes(test))
    throw new UserError(`--significance ${test}: use ${SIGNIFICANCE_TESTS.join(' or ')}`);
  if (alpha === undefined) return { significance: test as SignificanceTest };
  const a = Number(alpha);
  if (!(a > 0 && a < 1)) throw new UserError(`--alpha ${alpha}: expected a p threshold between 0 and 1, e.g. 0.05`);
  return { significance: test as SignificanceTest, alpha: a };
}

const EXT_FORMAT: Record<string, Format> = {
  '.md': 'md',
  '.tex': 'latex',
  '.csv': 'csv',
  '.html': 'html',
  '.htm': 'html',
  '.json': 'json',
};

/** `--select-on`, `--report`, `--select-per` as table options (tables/select.ts checks the rest). */
function splitOptions(v: {
  'select-on'?: string | undefined;
  report?: string | undefined;
  'select-per'?: string | undefined;
}): Pick<TableOptions, 'selectOn' | 'report' | 'selectPer'> {
  const per = v['select-per'];
  if (per !== undefined && per !== 'method' && per !== 'dataset')
    throw new UserError(`--select-per ${per}: use method or dataset`);
  if (per !== undefined && !v['select-on'])
    throw new UserError(`--select-per ${per} needs --select-on SPLIT (and --report SPLIT)`);
  return { selectOn: v['select-on'] ?? null, report: v.report ?? null, ...(per ? { selectPer: per } : {}) };
}

async function table({ values: v, positionals }: Parsed<typeof TABLE_OPTIONS>): Promise<number> {
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
  const convention = (v.params ?? 'without-head') as ParamsConvention;
  if (!(PARAMS_CONVENTIONS as readonly string[]).includes(convention))
    throw new UserError(`--params ${v.params}: use ${PARAMS_CONVENTIONS.join(' or ')}`);
  const significance = parseSignificance(v.significance, v.alpha);
  const rows = v.rows ? parseDims('--rows', v.rows) : undefined;
  const cols = v.cols ? parseDims('--cols', v.cols) : undefined;
  if (cols && cols.length !== 1) throw new UserError(`--cols ${v.cols}: give exactly one dimension`);
  const splits = splitOptions(v);
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
      paramsConvention: convention,
      ...significance,
      avg: !v['no-avg'],
      title: v.title ?? null,
      ...splits,
      efficiency: v.efficiency ?? false,
    });
    const stats = (v.stats ?? '')
      .split(',')
      .map((k) => k.trim())
      .filter(Boolean);
    // --stats averages the runs the table shows: under --select-on, the selected setting's only
    const shown = splits.selectOn
      ? applySplits(sel.runs, splits, v.best ? 'best' : 'final', v.metric ?? null, [])
      : sel.runs;
    return render(withProvenance(addStatColumns(model, shown, stats), sel.runs, rankflowVersions()), format);
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

export const tableCommand = defineCommand({
  name: 'table',
  summary: 'paper table (md, LaTeX, CSV, HTML, JSON) of sweep results',
  args: '<sweep|recipe>...',
  description: `Paper table of the results of one or more sweeps (joined), named by sweep id or recipe.
Cells are the mean ± sample standard deviation over seeds; cells with failed or missing runs say so.`,
  options: TABLE_OPTIONS,
  run: table,
});

/** \`rankflow table ARGV\` (submit prints the table of the sweep it ran). */
export const runTable = (argv: string[]): Promise<number> => tableCommand.run(argv);
