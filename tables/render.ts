/**
 * Renderers of a `TableModel`: Markdown (GitHub), LaTeX (booktabs), CSV (one line per row × column, full
 * precision, for machines), HTML (a standalone page) and JSON (the model itself). Pure string functions.
 */
import type { TableCell, TableColumn, TableModel, TableRow } from './table.js';
import { VTAB_GROUPS } from './names.js';
import { paramsText } from './params.js';
import { footerLines } from './footer.js';

export const FORMATS = ['md', 'latex', 'csv', 'html', 'json'] as const;
export type Format = (typeof FORMATS)[number];

export function render(model: TableModel, format: Format): string {
  switch (format) {
    case 'md':
      return renderMarkdown(model);
    case 'latex':
      return renderLatex(model);
    case 'csv':
      return renderCsv(model);
    case 'html':
      return renderHtml(model);
    case 'json':
      return JSON.stringify(model, null, 2) + '\n';
  }
}

/** Fixed-point text without a negative zero. */
export function fixed(x: number, digits: number): string {
  const s = x.toFixed(digits);
  return /^-0(\.0*)?$/.test(s) ? s.slice(1) : s;
}

function signed(x: number, digits: number): string {
  const s = fixed(x, digits);
  return s.startsWith('-') ? s : `+${s}`;
}

export { formatCount, formatCountRange, formatPercent, paramsText } from './params.js';

const STATUS_TEXT: Record<string, string> = {
  empty: '–',
  incomplete: 'n/a',
  failed: 'failed',
  missing: 'missing',
  'failed+missing': 'failed/missing',
};

/** The parts of one cell's text; each renderer decorates them in its own syntax. */
interface CellParts {
  value: string | null;
  std: string | null;
  note: string | null;
  delta: string | null;
  text: string | null;
  mark: 'best' | 'second' | null;
  /** Significance against the column's best: `†` significantly worse, `≈` a tie, `?` not tested. */
  sig: string | null;
}

const SIG_TEXT: Record<string, string> = { significant: '†', tie: '≈', untested: '?' };

function cellParts(model: TableModel, row: TableRow, col: TableColumn, cell: TableCell): CellParts {
  const d = model.digits;
  if (cell.mean === null) {
    return {
      value: null,
      std: null,
      note: null,
      delta: null,
      text: STATUS_TEXT[cell.status] ?? '–',
      mark: null,
      sig: null,
    };
  }
  if (row.kind === 'reference-delta') {
    return { value: signed(cell.mean, d), std: null, note: null, delta: null, text: null, mark: null, sig: null };
  }
  const std =
    model.show_std && col.kind === 'data' && row.kind === 'result' && cell.std !== null ? fixed(cell.std, d) : null;
  let note: string | null = null;
  if (cell.status === 'partial') note = `(${cell.n}/${cell.planned})`;
  else if (cell.partial_members) note = '(*)';
  return {
    value: fixed(cell.mean, d),
    std,
    note,
    delta: cell.delta !== null ? signed(cell.delta, d) : null,
    text: null,
    mark: cell.mark,
    sig: cell.sig ? SIG_TEXT[cell.sig]! : null,
  };
}

function header(model: TableModel): string[] {
  const first = model.row_dims.map((d) => d[0]!.toUpperCase() + d.slice(1)).join(' / ');
  return [first, ...(model.show_params ? ['Params'] : []), ...model.columns.map((c) => c.label)];
}

// ------------------------------------------------------------------------------------------------------------
// Markdown

export function mdEscape(s: string): string {
  return s
    .replace(/([\\|*_`[\]])/g, '\\$1')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;');
}

function mdCell(p: CellParts): string {
  if (p.text !== null) return p.text;
  let v = p.value!;
  if (p.mark === 'best') v = `**${v}**`;
  else if (p.mark === 'second') v = `<u>${v}</u>`;
  if (p.std !== null) v += ` ± ${p.std}`;
  if (p.sig) v += ` ${p.sig}`;
  if (p.note) v += ` ${p.note}`;
  if (p.delta) v += ` (${p.delta})`;
  return v;
}

export function renderMarkdown(model: TableModel): string {
  const lines: string[] = [];
  if (model.title) lines.push(`**${mdEscape(model.title)}**`, '');
  const h = header(model).map(mdEscape);
  lines.push(`| ${h.join(' | ')} |`);
  lines.push(`|${h.map((_, i) => (i === 0 ? ':--' : '--:')).join('|')}|`);
  for (const row of model.rows) {
    let label = mdEscape(row.label);
    if (row.kind === 'reference') label = `_${label}_`;
    if (row.is_baseline) label += ' (baseline)';
    const cells = model.columns.map((c, i) => mdCell(cellParts(model, row, c, row.cells[i]!)));
    lines.push(
      `| ${[label, ...(model.show_params ? [paramsText(row, model.percent_digits)] : []), ...cells].join(' | ')} |`,
    );
  }
  lines.push('');
  for (const n of model.notes) lines.push(`- ${mdEscape(n)}`);
  const sources = referenceSources(model);
  for (const s of sources) lines.push(`- ${mdEscape(s)}`);
  if (model.provenance) lines.push('', ...footerLines(model.provenance).map((l) => `<sub>${mdEscape(l)}</sub><br>`));
  return lines.join('\n') + '\n';
}

function referenceSources(model: TableModel): string[] {
  return model.rows.filter((r) => r.kind === 'reference').map((r) => `${r.label}: ${r.source}`);
}

// ------------------------------------------------------------------------------------------------------------
// LaTeX (booktabs)

const LATEX_UNICODE: [RegExp, string][] = [
  [/±/g, '$\\pm$'],
  [/×/g, '$\\times$'],
  [/−/g, '$-$'],
  [/–/g, '--'],
  [/—/g, '---'],
  [/Δ/g, '$\\Delta$'],
  [/≤/g, '$\\leq$'],
  [/≥/g, '$\\geq$'],
  [/…/g, '\\ldots{}'],
];

/** Escapes text for LaTeX: the ten special characters and the few Unicode symbols the tables print. */
export function latexEscape(s: string): string {
  let out = s.replace(/[\\{}$&#^_%~]/g, (ch) => {
    switch (ch) {
      case '\\':
        return '\\textbackslash{}';
      case '^':
        return '\\textasciicircum{}';
      case '~':
        return '\\textasciitilde{}';
      default:
        return `\\${ch}`;
    }
  });
  for (const [re, rep] of LATEX_UNICODE) out = out.replace(re, rep);
  return out;
}

const LATEX_SIG: Record<string, string> = { '†': '$^{\\dagger}$', '≈': '$^{\\approx}$', '?': '$^{?}$' };

function latexNumber(s: string): string {
  return s.startsWith('-') ? `$-$${s.slice(1)}` : s;
}

function latexCell(p: CellParts): string {
  if (p.text !== null) return latexEscape(p.text);
  let v = latexNumber(p.value!);
  if (p.mark === 'best') v = `\\textbf{${v}}`;
  else if (p.mark === 'second') v = `\\underline{${v}}`;
  if (p.std !== null) v += `$_{\\pm ${p.std}}$`;
  if (p.sig) v += LATEX_SIG[p.sig]!;
  if (p.note) v += `\\,{\\scriptsize ${latexEscape(p.note)}}`;
  if (p.delta) v += `\\,{\\scriptsize(${latexNumber(p.delta)})}`;
  return v;
}

export function renderLatex(model: TableModel, label = 'tab:results'): string {
  const h = header(model);
  const spec = `l${model.show_params ? 'r' : ''}${model.columns.map(() => 'c').join('')}`;
  const lines: string[] = [];
  lines.push('% Generated by `rankflow table`; needs \\usepackage{booktabs}.');
  lines.push('\\begin{table}[t]');
  lines.push('\\centering');
  // A \label names the number \caption gives the table: both, in this order (a label alone refers to nothing).
  lines.push(`\\caption{${latexEscape(model.title ?? model.notes[0] ?? 'Results.')}}`);
  lines.push(`\\label{${label}}`);
  lines.push('\\small');
  lines.push(`\\begin{tabular}{${spec}}`);
  lines.push('\\toprule');
  lines.push(...latexGroupHeader(model));
  lines.push(`${h.map(latexEscape).join(' & ')} \\\\`);
  lines.push('\\midrule');
  let prevKind: TableRow['kind'] = 'result';
  for (const row of model.rows) {
    if (row.kind === 'reference' && prevKind === 'result') lines.push('\\midrule');
    prevKind = row.kind;
    let name = latexEscape(row.label);
    if (row.kind !== 'result') name = `\\textit{${name}}`;
    if (row.is_baseline) name += ' (baseline)';
    const cells = model.columns.map((c, i) => latexCell(cellParts(model, row, c, row.cells[i]!)));
    const params = model.show_params ? [latexEscape(paramsText(row, model.percent_digits))] : [];
    lines.push(`${[name, ...params, ...cells].join(' & ')} \\\\`);
  }
  lines.push('\\bottomrule');
  lines.push('\\end{tabular}');
  const notes = [...model.notes, ...referenceSources(model)];
  if (notes.length > 0) {
    lines.push('\\par\\smallskip');
    lines.push(`{\\footnotesize ${notes.map(latexEscape).join(' ')}}`);
  }
  lines.push('\\end{table}');
  if (model.provenance) lines.push(...footerLines(model.provenance).map((l) => `% ${l}`));
  return lines.join('\n') + '\n';
}

/** VTAB-1k tables get a spanning header per group (Natural / Specialized / Structured), as the papers print. */
function latexGroupHeader(model: TableModel): string[] {
  const groupOf = (c: TableColumn): string => {
    if (c.key.startsWith('vtab:')) return c.key.slice(5);
    const m = /^vtab\/(.+)$/.exec(c.key);
    if (!m || c.kind !== 'data') return '';
    for (const [g, tasks] of Object.entries(VTAB_GROUPS)) if ((tasks as readonly string[]).includes(m[1]!)) return g;
    return '';
  };
  const groups = model.columns.map(groupOf);
  if (!groups.some((g) => g !== '')) return [];
  const lead = 1 + (model.show_params ? 1 : 0);
  const cells: string[] = Array.from({ length: lead }, () => '');
  const rules: string[] = [];
  let i = 0;
  while (i < groups.length) {
    let j = i;
    while (j + 1 < groups.length && groups[j + 1] === groups[i]) j++;
    const g = groups[i]!;
    const n = j - i + 1;
    if (g === '') cells.push(...Array.from({ length: n }, () => ''));
    else {
      cells.push(`\\multicolumn{${n}}{c}{${g[0]!.toUpperCase()}${g.slice(1)}}`);
      rules.push(`\\cmidrule(lr){${lead + i + 1}-${lead + j + 1}}`);
    }
    i = j + 1;
  }
  return [`${cells.join(' & ')} \\\\`, rules.join(' ')];
}

// ------------------------------------------------------------------------------------------------------------
// CSV (tidy: one line per row × column)

export const CSV_COLUMNS = [
  'row',
  'row_kind',
  'model',
  'method',
  'rank',
  'setting',
  'dataset',
  'column',
  'column_label',
  'column_kind',
  'metric',
  'scale',
  'mean',
  'std',
  'n',
  'planned',
  'failed',
  'missing',
  'seeds',
  'status',
  'mark',
  'delta',
  'trainable_params',
  'trainable_params_max',
  'total_params',
  'source',
] as const;

export function csvField(v: string | number | null | undefined): string {
  if (v === null || v === undefined) return '';
  const s = typeof v === 'number' ? String(Number(v.toPrecision(12))) : v;
  return /[",\r\n]/.test(s) || /^\s|\s$/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

/** Columns a table with significance tests adds to the CSV. */
export const CSV_SIG_COLUMNS = ['significance', 'p_value'] as const;

export function renderCsv(model: TableModel): string {
  const sig = model.significance !== undefined;
  const lines = [[...CSV_COLUMNS, ...(sig ? CSV_SIG_COLUMNS : [])].join(',')];
  for (const row of model.rows) {
    model.columns.forEach((col, i) => {
      const cell = row.cells[i]!;
      const dims = row.dims;
      const dataset = model.col_dim === 'dataset' && col.kind === 'data' ? col.key : (dims.dataset ?? null);
      const rec: Record<(typeof CSV_COLUMNS)[number], string | number | null> = {
        row: row.label,
        row_kind: row.kind,
        model: dims.model ?? null,
        method: dims.method ?? null,
        rank: model.col_dim === 'rank' && col.kind === 'data' ? col.key : (dims.rank ?? null),
        setting: dims.setting ?? null,
        dataset: dataset === null ? null : String(dataset),
        column: col.key,
        column_label: col.label,
        column_kind: col.kind,
        metric: col.metric,
        scale: model.scales[col.metric] ?? null,
        mean: cell.mean,
        std: cell.std,
        n: row.kind === 'result' ? cell.n : null,
        planned: row.kind === 'result' ? cell.planned : null,
        failed: row.kind === 'result' ? cell.failed : null,
        missing: row.kind === 'result' ? cell.missing : null,
        seeds: cell.seeds.join(';'),
        status: cell.status,
        mark: cell.mark,
        delta: cell.delta,
        trainable_params: row.params?.trainable ?? null,
        trainable_params_max: row.params?.trainable_max ?? null,
        total_params: row.params?.total ?? null,
        source: row.source,
      };
      const extra = sig ? [csvField(cell.sig ?? null), csvField(cell.p ?? null)] : [];
      lines.push([...CSV_COLUMNS.map((c) => csvField(rec[c])), ...extra].join(','));
    });
  }
  // Comment lines (pandas: read_csv(..., comment='#')).
  if (model.provenance) lines.push(...footerLines(model.provenance).map((l) => `# ${l}`));
  return lines.join('\n') + '\n';
}

// ------------------------------------------------------------------------------------------------------------
// HTML

export function htmlEscape(s: string): string {
  return s
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/"/g, '&quot;')
    .replace(/'/g, '&#39;');
}

function htmlCell(p: CellParts): string {
  if (p.text !== null) return `<span class="status">${htmlEscape(p.text)}</span>`;
  let v = htmlEscape(p.value!);
  if (p.mark === 'best') v = `<b>${v}</b>`;
  else if (p.mark === 'second') v = `<u>${v}</u>`;
  if (p.std !== null) v += `<span class="std"> ± ${htmlEscape(p.std)}</span>`;
  if (p.sig) v += `<sup class="sig">${htmlEscape(p.sig)}</sup>`;
  if (p.note) v += ` <span class="note">${htmlEscape(p.note)}</span>`;
  if (p.delta) v += ` <span class="delta">(${htmlEscape(p.delta)})</span>`;
  return v;
}

export function renderHtml(model: TableModel): string {
  const title = model.title ?? 'rankflow results';
  const out: string[] = [];
  out.push('<!DOCTYPE html>');
  out.push('<html lang="en">');
  out.push('<head>');
  out.push('<meta charset="utf-8">');
  out.push(`<title>${htmlEscape(title)}</title>`);
  out.push('<style>');
  out.push('body{font-family:system-ui,sans-serif;margin:2em}');
  out.push('table{border-collapse:collapse;border-top:2px solid #000;border-bottom:2px solid #000}');
  out.push('th,td{padding:.3em .7em;text-align:right;white-space:nowrap}');
  out.push('th:first-child,td:first-child{text-align:left}');
  out.push('thead th{border-bottom:1px solid #000}');
  out.push('tr.reference td,tr.reference-delta td{font-style:italic;color:#444}');
  out.push('tr.first td{border-top:1px solid #000}');
  out.push('.std,.note,.delta{font-size:80%;color:#555}.status{color:#a00}');
  if (model.provenance) out.push('footer.provenance{margin-top:1.5em;font-size:80%;color:#555}');
  out.push('</style>');
  out.push('</head>');
  out.push('<body>');
  out.push(`<h1>${htmlEscape(title)}</h1>`);
  out.push('<table>');
  out.push(
    `<thead><tr>${header(model)
      .map((h) => `<th>${htmlEscape(h)}</th>`)
      .join('')}</tr></thead>`,
  );
  out.push('<tbody>');
  let firstRef = true;
  for (const row of model.rows) {
    const label = htmlEscape(row.label) + (row.is_baseline ? ' (baseline)' : '');
    const cls = row.kind === 'reference' && firstRef ? `${row.kind} first` : row.kind;
    if (row.kind === 'reference') firstRef = false;
    const cells = model.columns.map((c, i) => `<td>${htmlCell(cellParts(model, row, c, row.cells[i]!))}</td>`);
    const params = model.show_params ? [`<td>${htmlEscape(paramsText(row, model.percent_digits))}</td>`] : [];
    out.push(`<tr class="${cls}"><td>${label}</td>${params.join('')}${cells.join('')}</tr>`);
  }
  out.push('</tbody>');
  out.push('</table>');
  const notes = [...model.notes, ...referenceSources(model)];
  if (notes.length > 0) {
    out.push('<ul class="notes">');
    for (const n of notes) out.push(`<li>${htmlEscape(n)}</li>`);
    out.push('</ul>');
  }
  if (model.provenance) {
    out.push(`<footer class="provenance">${footerLines(model.provenance).map(htmlEscape).join('<br>')}</footer>`);
  }
  out.push('</body>');
  out.push('</html>');
  return out.join('\n') + '\n';
}
