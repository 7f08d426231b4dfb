/**
 * The LaTeX table compiles: the golden-file table (escaped names, booktabs rules, bold / underline, ± std,
 * partial-cell notes, deltas) inside a minimal article, run through pdflatex when the machine has it.
 */
import { describe, expect, it } from 'vitest';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildTable } from '../tables/table.js';
import { renderLatex } from '../tables/render.js';
import { parseReferences } from '../tables/reference.js';
import { glueRuns, vtabRuns } from './tables-fixtures.js';

function hasTex(): boolean {
  try {
    execFileSync('pdflatex', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}
const tex = hasTex();
if (!tex) {
  console.warn(
    'tables-latex: skipped: no pdflatex on this machine (apt-get install texlive-latex-base texlive-latex-recommended)',
  );
}

describe('LaTeX output', () => {
  it.skipIf(!tex)('compiles with pdflatex and booktabs', () => {
    const refs = parseReferences(
      readFileSync(join(import.meta.dirname, '..', 'reference', 'paper-numbers.csv'), 'utf8'),
      'reference/paper-numbers.csv',
    );
    const model = buildTable(glueRuns(), {
      baseline: 'lora',
      references: refs,
      title: 'GLUE dev: 50% & more_than #1 $',
    });
    const vtab = buildTable(vtabRuns(), { title: 'VTAB-1k' });
    const doc = [
      '\\documentclass{article}',
      '\\usepackage[T1]{fontenc}',
      '\\usepackage{booktabs}',
      '\\begin{document}',
      renderLatex(model),
      renderLatex(vtab, 'tab:vtab'),
      '\\end{document}',
      '',
    ].join('\n');
    const dir = mkdtempSync(join(tmpdir(), 'rankflow-tex-'));
    try {
      writeFileSync(join(dir, 'table.tex'), doc);
      const r = spawnSync('pdflatex', ['-interaction=nonstopmode', '-halt-on-error', 'table.tex'], {
        cwd: dir,
        encoding: 'utf8',
        timeout: 60_000,
      });
      expect(r.status, r.stdout.slice(-2000)).toBe(0);
      expect(existsSync(join(dir, 'table.pdf'))).toBe(true);
      const log = readFileSync(join(dir, 'table.log'), 'utf8');
      expect(log).not.toMatch(/Missing character|Undefined control sequence/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
