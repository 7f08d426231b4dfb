/**
 * Golden files (every format) of a paper table with significance marks, the parameter convention and the
 * reproducibility footer (issue 17), plus the footer's content. UPDATE_GOLDEN=1 rewrites them (review the diff).
 */
import { describe, expect, it } from 'vitest';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { buildTable, type TableOptions } from '../tables/table.js';
import { FORMATS, render } from '../tables/render.js';
import { footerLines, withProvenance } from '../tables/footer.js';
import { missingRun, runFromRecord, type RunRow } from '../tables/runs.js';
import { labelsFor, makeRecord } from './tables-fixtures.js';

const GOLDEN = join(import.meta.dirname, 'golden', 'tables');
const TOOL = { rankflow: '0.1.0', git: '0123456789ab' };

function golden(name: string, text: string): void {
  const path = join(GOLDEN, name);
  if (process.env.UPDATE_GOLDEN || !existsSync(path)) {
    mkdirSync(GOLDEN, { recursive: true });
    writeFileSync(path, text);
    if (!process.env.UPDATE_GOLDEN) throw new Error(`golden file ${name} was missing and has been written; rerun`);
  }
  expect(text).toBe(readFileSync(path, 'utf8'));
}

/**
 * LoRA, DoRA and VeRA on SST-2 and RTE, three seeds each, RoBERTa-base-like counts with a 592,130-parameter
 * head; two sweeps; DoRA within noise of LoRA, VeRA clearly behind; one VeRA run on RTE not finished yet.
 */
function paperRuns(): RunRow[] {
  const base: Record<string, [number, number]> = { lora: [0.948, 0.82], dora: [0.946, 0.825], vera: [0.93, 0.76] };
  const adapter: Record<string, number> = { lora: 294_912, dora: 313_344, vera: 43_008 };
  const jitter = [0, 0.004, -0.003];
  const out: RunRow[] = [];
  for (const [method, [sst2, rte]] of Object.entries(base)) {
    for (const [dataset, v] of [
      ['glue/sst2', sst2],
      ['glue/rte', rte],
    ] as const) {
      for (const seed of [0, 1, 2]) {
        const o = {
          method,
          rank: 8,
          dataset,
          seed,
          metrics: { accuracy: v + jitter[seed]! },
          trainable: adapter[method]! + 592_130,
          total: 125_000_000,
          head: 592_130,
          sweep_id: dataset === 'glue/sst2' ? 'sweep-sst2' : 'sweep-rte',
        };
        if (method === 'vera' && dataset === 'glue/rte' && seed === 2) {
          out.push(
            missingRun('run-vera-rte-2', 'sweep-rte', labelsFor(o), null, {
              trainable: 635_138,
              total: 125_000_000,
              head: 592_130,
            }),
          );
          continue;
        }
        const rec = makeRecord(o);
        out.push(runFromRecord({ ...rec, versions: { ...rec.versions, git: 'fedcba987654' } }));
      }
    }
  }
  return out;
}

const cases: [string, TableOptions][] = [
  ['paper-welch', { significance: 'welch', title: 'GLUE dev (RoBERTa-base-like)' }],
  ['paper-bootstrap-with-head', { significance: 'bootstrap', alpha: 0.1, paramsConvention: 'with-head' }],
];

describe('paper table goldens', () => {
  for (const [name, opts] of cases) {
    for (const format of FORMATS) {
      it(`${name}.${format}`, () => {
        const runs = paperRuns();
        golden(
          `${name}.${format === 'latex' ? 'tex' : format}`,
          render(withProvenance(buildTable(runs, opts), runs, TOOL), format),
        );
      });
    }
  }
});

describe('reproducibility footer', () => {
  it('names the table maker, the runs’ versions and the sweeps, in every format', () => {
    const runs = paperRuns();
    const m = withProvenance(buildTable(runs), runs, TOOL);
    expect(m.provenance).toEqual({
      table: TOOL,
      runs: { rankflow: ['0.1.0'], git: ['fedcba987654'], runtime: ['0.1.0'], torch: ['2.11.0'], python: ['3.11'] },
      sweeps: ['sweep-rte', 'sweep-sst2'],
    });
    const [made, by] = footerLines(m.provenance!);
    expect(made).toBe('Made by rankflow 0.1.0 (git 0123456789ab) from sweeps sweep-rte, sweep-sst2.');
    expect(by).toBe('Runs: rankflow 0.1.0 (git fedcba987654), runtime 0.1.0, torch 2.11.0, Python 3.11.');
    expect(render(m, 'latex').trimEnd().split('\n').slice(-2)).toEqual([`% ${made}`, `% ${by}`]);
    expect(render(m, 'csv').trimEnd().split('\n').slice(-2)).toEqual([`# ${made}`, `# ${by}`]);
    expect(render(m, 'md')).toContain(
      '<sub>Made by rankflow 0.1.0 (git 0123456789ab) from sweeps sweep-rte, sweep-sst2.</sub>',
    );
    expect(render(m, 'html')).toContain('<footer class="provenance">Made by rankflow 0.1.0');
    expect(JSON.parse(render(m, 'json')).provenance.sweeps).toEqual(['sweep-rte', 'sweep-sst2']);
    // A bare buildTable (no CLI) has no footer: the other goldens are unchanged.
    expect(render(buildTable(runs), 'md')).not.toContain('Made by rankflow');
  });
});
