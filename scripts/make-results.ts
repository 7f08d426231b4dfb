/**
 * Regenerates the tables and plots of `results/` from the artifact store in one command:
 *
 *   npm run results -- <sweep|recipe>... [--store DIR|s3://bucket/prefix] [--name NAME] [--out results]
 *                      [--reference [FILE]] [--baseline lora] [--digits 1] [--metric NAME] [--best] [--title TEXT]
 *
 * Writes <out>/<name>.{md,tex,csv,html,json} and <out>/<name>-{loss,params,rank}.{svg,png} (a plot the data
 * cannot support, such as score vs rank without ranked methods, is skipped with a note).
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { UserError } from '../core/errors.js';
import { openResultStore, readSelection } from '../cli/results-reader.js';
import { DEFAULT_REFERENCE, loadReferences, SELECTION_OPTIONS, userErrors } from '../cli/selection.js';
import { runScript, type OptionDefs, type Parsed } from '../cli/args.js';
import { writePlots } from '../cli/commands/plot.js';
import { buildTable } from '../tables/table.js';
import { FORMATS, render } from '../tables/render.js';
import { PLOT_KINDS } from '../tables/plots.js';

const EXT = { md: 'md', latex: 'tex', csv: 'csv', html: 'html', json: 'json' } as const;

const OPTIONS = {
  store: SELECTION_OPTIONS.store,
  name: { type: 'string', arg: 'NAME', help: 'file name prefix (default: the first sweep or recipe named)' },
  out: { type: 'string', arg: 'DIR', help: 'output folder (default results)' },
  reference: {
    type: 'string',
    arg: '[FILE]',
    bare: DEFAULT_REFERENCE,
    help: `add published numbers (default ${DEFAULT_REFERENCE})`,
  },
  baseline: { type: 'string', arg: 'ROW', help: 'add the difference to this row' },
  digits: { type: 'string', arg: 'N', help: 'decimals (default 1)' },
  metric: SELECTION_OPTIONS.metric,
  best: SELECTION_OPTIONS.best,
  title: { type: 'string', arg: 'TEXT', help: 'caption / heading' },
} as const satisfies OptionDefs;

async function main({ values: v, positionals }: Parsed<typeof OPTIONS>): Promise<number> {
  if (positionals.length === 0)
    throw new UserError('name a sweep id or recipe: npm run results -- <sweep|recipe> [--store DIR]');
  const name = (v.name ?? positionals[0]!).replace(/^.*\//, '').replace(/\.ya?ml$/, '');
  if (!/^[A-Za-z0-9._-]+$/.test(name))
    throw new UserError(`--name ${name}: use letters, digits, '.', '_' and '-' only`);
  const digits = v.digits === undefined ? 1 : Number(v.digits);
  const out = resolve(v.out ?? 'results');
  await mkdir(out, { recursive: true });
  const written = await userErrors(async () => {
    const store = await openResultStore(v.store);
    const sel = await readSelection(store, positionals);
    for (const n of sel.notes) process.stderr.write(`rankflow: note: ${n}\n`);
    const references = v.reference ? await loadReferences(v.reference) : undefined;
    const model = buildTable(sel.runs, {
      digits,
      metric: v.metric ?? null,
      which: v.best ? 'best' : 'final',
      baseline: v.baseline ?? null,
      references,
      title: v.title ?? `Results of ${sel.sweeps.map((s) => s.sweep_id).join(', ')}`,
    });
    const files: string[] = [];
    for (const f of FORMATS) {
      const path = join(out, `${name}.${EXT[f]}`);
      await writeFile(path, render(model, f));
      files.push(path);
    }
    const plots = await writePlots(sel.runs, {
      dir: out,
      name,
      kinds: [...PLOT_KINDS],
      formats: ['svg', 'png'],
      metric: v.metric ?? null,
      which: v.best ? 'best' : 'final',
      strict: false,
    });
    for (const s of plots.skipped) process.stderr.write(`make-results: skipped ${s}\n`);
    return [...files, ...plots.written];
  });
  for (const w of written) process.stderr.write(`make-results: wrote ${w}\n`);
  return 0;
}

runScript({
  name: 'make-results',
  usage: 'npm run results --',
  summary: 'regenerate the tables and plots of results/',
  args: '<sweep|recipe>...',
  options: OPTIONS,
  run: main,
});
