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
import { parseArgs } from 'node:util';
import { UserError } from '../core/errors.js';
import { openResultStore, readSelection } from '../cli/results-reader.js';
import { DEFAULT_REFERENCE, loadReferences, userErrors } from '../cli/selection.js';
import { writePlots } from '../cli/commands/plot.js';
import { buildTable } from '../tables/table.js';
import { FORMATS, render } from '../tables/render.js';
import { PLOT_KINDS } from '../tables/plots.js';

const EXT = { md: 'md', latex: 'tex', csv: 'csv', html: 'html', json: 'json' } as const;

async function main(argv: string[]): Promise<void> {
  const args = [...argv];
  const ri = args.indexOf('--reference');
  if (ri >= 0 && (ri === args.length - 1 || args[ri + 1]!.startsWith('-'))) args.splice(ri + 1, 0, DEFAULT_REFERENCE);
  let parsed;
  try {
    parsed = parseArgs({
      args,
      allowPositionals: true,
      options: {
        store: { type: 'string' },
        name: { type: 'string' },
        out: { type: 'string' },
        reference: { type: 'string' },
        baseline: { type: 'string' },
        digits: { type: 'string' },
        metric: { type: 'string' },
        best: { type: 'boolean' },
        title: { type: 'string' },
      },
    });
  } catch (e) {
    throw new UserError(`make-results: ${(e as Error).message.split('\n')[0]}`);
  }
  const { values: v, positionals } = parsed;
  if (positionals.length === 0)
    throw new UserError('make-results: name a sweep id or recipe: npm run results -- <sweep|recipe> [--store DIR]');
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
}

main(process.argv.slice(2)).catch((e: unknown) => {
  if (e instanceof UserError) {
    process.stderr.write(`rankflow: ${e.message}\n`);
    process.exitCode = 2;
  } else {
    console.error(e);
    process.exitCode = 1;
  }
});
