/**
 * The dashboard's pages: plain server-rendered HTML from the data of cli/ui/model.ts. Every string that comes
 * from a recipe, a run or the store goes through `htmlEscape` (the table renderer's); the only script is the
 * served /assets/app.js (no inline script: the Content-Security-Policy forbids it). A page's live part sits in
 * `<div id="live">`, which the script replaces with `?fragment=1` of the same address every few seconds.
 */
import { htmlEscape as esc } from '../../tables/render.js';
import { runLabel } from '../sweeps.js';
import {
  SWEEP_ACTIONS,
  type Counts,
  type PlotView,
  type RunRowView,
  type RunView,
  type SweepSummary,
  type SweepView,
  type TableView,
} from './model.js';

export const TABLE_DOWNLOADS = [
  ['md', 'Markdown'],
  ['tex', 'LaTeX'],
  ['csv', 'CSV'],
  ['html', 'HTML'],
  ['json', 'JSON'],
] as const;
export const TABLE_EXT_FORMAT: Record<string, string> = {
  md: 'md',
  tex: 'latex',
  csv: 'csv',
  html: 'html',
  json: 'json',
};

const STYLE = `
body{font-family:system-ui,sans-serif;margin:0;color:#1b1f24;background:#f6f7f9}
header{background:#1b1f24;color:#fff;padding:.6em 1.2em;display:flex;gap:1.5em;align-items:baseline}
header a{color:#fff;text-decoration:none}header .brand{font-weight:700}
main{padding:1em 1.5em}h1{font-size:1.4em;margin:.3em 0 .6em}h2{font-size:1.1em;margin:1.4em 0 .5em}
table.grid{border-collapse:collapse;background:#fff;font-size:90%}
.grid th,.grid td{padding:.25em .6em;border-bottom:1px solid #e3e6ea;text-align:left;white-space:nowrap}
.grid th a{color:inherit}.grid td.num{text-align:right;font-variant-numeric:tabular-nums}
.state{display:inline-block;padding:0 .45em;border-radius:.6em;font-size:85%;background:#e3e6ea}
.state-running,.state-cancelling{background:#cfe3ff}.state-succeeded,.state-completed{background:#d4f2dc}
.state-failed,.state-blocked{background:#ffd9d9}.state-cancelled,.state-missing{background:#f1e4c8}
.state-waiting,.state-pending,.state-queued{background:#eee}
.bar{display:inline-block;width:8em;height:.7em;background:#e3e6ea;border-radius:.35em;overflow:hidden;vertical-align:middle}
.bar span{display:block;height:100%;background:#3a7bd5}
#banner{display:none;padding:.5em 1.5em;background:#fff3c4;border-bottom:1px solid #e0c060}
#banner.down{display:block;background:#ffd9d9}#banner.up{display:block;background:#d4f2dc}
form.inline{display:inline}button{font:inherit;padding:.1em .6em;cursor:pointer}
.filters{margin:.6em 0;display:flex;gap:.6em;flex-wrap:wrap;align-items:center}
.error{color:#a00}.hint{color:#555}.muted{color:#666}
pre{background:#fff;border:1px solid #e3e6ea;padding:.6em;overflow:auto;max-height:30em;font-size:85%}
.chart{background:#fff;border:1px solid #e3e6ea;margin:.4em 0;min-height:60px;max-width:760px}
.plot{background:#fff;border:1px solid #e3e6ea;padding:.6em;margin:.6em 0;display:inline-block}
code{background:#eef0f3;padding:0 .3em}
.paper-table table{border-collapse:collapse;background:#fff;border-top:2px solid #000;border-bottom:2px solid #000}
.paper-table th,.paper-table td{padding:.3em .7em;text-align:right;white-space:nowrap}
.paper-table th:first-child,.paper-table td:first-child{text-align:left}.paper-table thead th{border-bottom:1px solid #000}
.paper-table tr.reference td{font-style:italic;color:#444}.paper-table tr.first td{border-top:1px solid #000}
.paper-table .std,.paper-table .note,.paper-table .delta{font-size:80%;color:#555}.paper-table .status{color:#a00}
`;

export interface PageContext {
  csrf: string;
  title: string;
  /** Refresh interval of the live part, ms (0: static). */
  refreshMs: number;
}

export function layout(ctx: PageContext, body: string, head = ''): string {
  return `<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<meta name="csrf" content="${esc(ctx.csrf)}"><title>${esc(ctx.title)} · rankflow</title>
<link rel="stylesheet" href="/assets/app.css">${head}
<script src="/assets/app.js" defer></script></head>
<body data-refresh="${ctx.refreshMs}">
<header><a class="brand" href="/">rankflow</a><a href="/">Sweeps</a></header>
<div id="banner" role="status"></div>
<main>${body}</main></body></html>
`;
}

export const css = (): string => STYLE;

const DONE_STATES = ['succeeded', 'skipped', 'failed', 'cancelled', 'blocked'];

export function doneCount(c: Counts): number {
  return DONE_STATES.reduce((n, k) => n + (c[k] ?? 0), 0);
}

function stateBadge(state: string): string {
  return `<span class="state state-${esc(state.replace(/[^a-z]/g, ''))}">${esc(state)}</span>`;
}

function time(iso: string | null): string {
  if (!iso) return '';
  return `<time datetime="${esc(iso)}">${esc(iso.replace('T', ' ').replace(/\.\d+Z$/, 'Z'))}</time>`;
}

function progressBar(done: number, total: number): string {
  const pct = total > 0 ? Math.round((100 * done) / total) : 0;
  return `<span class="bar" title="${done}/${total}"><span style="width:${pct}%"></span></span> ${done}/${total}`;
}

function countsText(c: Counts | null): string {
  if (!c) return '';
  return Object.entries(c)
    .filter(([, n]) => n > 0)
    .map(([k, n]) => `${stateBadge(k)} ${n}`)
    .join(' ');
}

/** The pause / unpause / cancel / resume buttons a sweep in that state can use (POSTs with the CSRF token). */
export function actionButtons(s: SweepSummary, csrf: string): string {
  const running = s.state === 'running' || s.state === 'waiting';
  const allowed = new Set<string>();
  if (running) allowed.add(s.paused ? 'unpause' : 'pause').add('cancel');
  if (!running && s.state !== 'cancelling') allowed.add('resume');
  return SWEEP_ACTIONS.filter((a) => allowed.has(a))
    .map(
      (a) =>
        `<form class="inline" method="post" action="/sweeps/${encodeURIComponent(s.sweep_id)}/${a}"${a === 'cancel' ? ' data-confirm="Cancel this sweep? Running runs checkpoint, then stop."' : ''}>` +
        `<input type="hidden" name="csrf" value="${esc(csrf)}"><button type="submit" name="action" value="${a}" data-action="${a}">${a}</button></form>`,
    )
    .join(' ');
}

function sweepHref(id: string): string {
  return `/sweeps/${encodeURIComponent(id)}`;
}

export function sweepsPage(sweeps: SweepSummary[], csrf: string): string {
  if (sweeps.length === 0)
    return '<p>No sweeps yet: submit one with <code>rankflow submit &lt;recipe.yaml&gt;</code>.</p>';
  const rows = sweeps.map((s) => {
    const done = s.counts ? doneCount(s.counts) : null;
    return `<tr data-sweep="${esc(s.sweep_id)}" data-state="${esc(s.state)}"><td><a href="${sweepHref(s.sweep_id)}">${esc(s.sweep_id)}</a></td>
<td>${esc(s.recipe ?? '')}</td><td>${stateBadge(s.state)}${s.paused ? ' (paused)' : ''}</td>
<td>${done === null ? '' : progressBar(done, s.total)}</td><td>${countsText(s.counts)}${s.note ? ` <span class="muted">${esc(s.note)}</span>` : ''}</td>
<td>${time(s.created_at)}</td><td>${time(s.finished_at)}</td><td>${actionButtons(s, csrf)}</td></tr>`;
  });
  return `<table class="grid" id="sweeps"><thead><tr><th>sweep</th><th>recipe</th><th>state</th><th>progress</th><th>runs by state</th><th>submitted</th><th>finished</th><th></th></tr></thead>
<tbody>${rows.join('\n')}</tbody></table>`;
}

// ---------------------------------------------------------------------------------------------------------------
// A sweep: filters and sorting (from the address's query, so a filtered view is a link)

export const SORT_KEYS = ['method', 'rank', 'dataset', 'seed', 'state', 'step', 'loss', 'metric', 'attempts'] as const;
export type SortKey = (typeof SORT_KEYS)[number];

export interface SweepQuery {
  state: string;
  method: string;
  dataset: string;
  rank: string;
  q: string;
  sort: SortKey | null;
  desc: boolean;
}

export function parseSweepQuery(p: URLSearchParams): SweepQuery {
  const sort = p.get('sort');
  return {
    state: p.get('state') ?? '',
    method: p.get('method') ?? '',
    dataset: p.get('dataset') ?? '',
    rank: p.get('rank') ?? '',
    q: (p.get('q') ?? '').trim(),
    sort: (SORT_KEYS as readonly string[]).includes(sort ?? '') ? (sort as SortKey) : null,
    desc: p.get('dir') === 'desc',
  };
}

function sortValue(r: RunRowView, k: SortKey): string | number | null {
  if (k === 'method' || k === 'dataset') return r.labels[k];
  if (k === 'rank' || k === 'seed') return r.labels[k];
  return r[k];
}

export function filterSortRuns(runs: RunRowView[], q: SweepQuery): RunRowView[] {
  const text = q.q.toLowerCase();
  const out = runs.filter(
    (r) =>
      (!q.state || r.state === q.state) &&
      (!q.method || r.labels.method === q.method) &&
      (!q.dataset || r.labels.dataset === q.dataset) &&
      (!q.rank || String(r.labels.rank ?? 'none') === q.rank) &&
      (!text || `${r.run_id} ${runLabel(r.labels)} ${r.error ?? ''}`.toLowerCase().includes(text)),
  );
  if (!q.sort) return out;
  const k = q.sort;
  const sign = q.desc ? -1 : 1;
  return out.sort((a, b) => {
    const x = sortValue(a, k);
    const y = sortValue(b, k);
    if (x === y) return 0;
    if (x === null) return 1; // empty cells last either way
    if (y === null) return -1;
    return (x < y ? -1 : 1) * sign;
  });
}

function select(name: string, label: string, values: string[], current: string): string {
  const opts = ['', ...values].map(
    (v) =>
      `<option value="${esc(v)}"${v === current ? ' selected' : ''}>${v === '' ? `any ${label}` : esc(v)}</option>`,
  );
  return `<label>${label} <select name="${name}">${opts.join('')}</select></label>`;
}

const uniq = (xs: string[]): string[] => [...new Set(xs)].sort((a, b) => a.localeCompare(b, 'en', { numeric: true }));

export function filterForm(view: SweepView, q: SweepQuery): string {
  const r = view.runs;
  return `<form class="filters" method="get" id="filters">
${select('state', 'state', uniq(r.map((x) => x.state)), q.state)}
${select('method', 'method', uniq(r.map((x) => x.labels.method)), q.method)}
${select('dataset', 'dataset', uniq(r.map((x) => x.labels.dataset)), q.dataset)}
${select('rank', 'rank', uniq(r.map((x) => String(x.labels.rank ?? 'none'))), q.rank)}
<label>search <input type="search" name="q" value="${esc(q.q)}" placeholder="run id, label, error"></label>
${q.sort ? `<input type="hidden" name="sort" value="${q.sort}"><input type="hidden" name="dir" value="${q.desc ? 'desc' : 'asc'}">` : ''}
<button type="submit">filter</button> <a href="?">clear</a></form>`;
}

function sortLink(k: SortKey, q: SweepQuery): string {
  const p = new URLSearchParams();
  for (const f of ['state', 'method', 'dataset', 'rank', 'q'] as const) if (q[f]) p.set(f, q[f]);
  p.set('sort', k);
  const desc = q.sort === k && !q.desc;
  p.set('dir', desc ? 'desc' : 'asc');
  const arrow = q.sort === k ? (q.desc ? ' ▼' : ' ▲') : '';
  return `<a href="?${esc(p.toString())}" data-sort="${k}">${k}${arrow}</a>`;
}

const num = (x: number | null, digits = 4): string =>
  x === null ? '' : Number.isInteger(x) ? String(x) : x.toFixed(digits);

function runRow(sweepId: string, r: RunRowView): string {
  const href = `${sweepHref(sweepId)}/runs/${encodeURIComponent(r.run_id)}`;
  const step = r.step === null ? '' : `${r.step}${r.total_steps ? `/${r.total_steps}` : ''}`;
  return `<tr data-run="${esc(r.run_id)}" data-state="${esc(r.state)}"><td><a href="${href}">${esc(r.run_id)}</a></td>
<td>${esc(r.labels.method)}</td><td class="num">${r.labels.rank ?? ''}</td><td>${esc(r.labels.dataset)}</td><td class="num">${r.labels.seed}</td>
<td>${stateBadge(r.state)}</td><td class="num">${step}</td><td class="num">${num(r.loss)}</td>
<td class="num" title="${esc(r.metric_name)}">${num(r.metric)}</td><td class="num">${r.attempts ?? ''}</td></tr>`;
}

export function sweepHeader(s: SweepSummary, csrf: string): string {
  const done = s.counts ? doneCount(s.counts) : null;
  return `<p>${stateBadge(s.state)}${s.paused ? ' (paused)' : ''} recipe <b>${esc(s.recipe ?? '(none)')}</b> ·
${done === null ? `${s.total} runs` : progressBar(done, s.total)} · ${countsText(s.counts)}
${s.note ? `<br><span class="muted">${esc(s.note)}</span>` : ''}<br>submitted ${time(s.created_at)}${s.started_at ? ` · started ${time(s.started_at)}` : ''}${s.finished_at ? ` · finished ${time(s.finished_at)}` : ''}</p>
<p id="actions">${actionButtons(s, csrf)}</p>`;
}

export function sweepLive(view: SweepView, q: SweepQuery, csrf: string): string {
  const id = view.summary.sweep_id;
  const shown = filterSortRuns(view.runs, q);
  const failed = view.runs.filter((r) => r.state === 'failed' || r.state === 'blocked');
  const failedList = failed.length
    ? `<h2>Failed runs (${failed.length})</h2><ul id="failed">${failed
        .map(
          (r) =>
            `<li><a href="${sweepHref(id)}/runs/${encodeURIComponent(r.run_id)}">${esc(runLabel(r.labels))}</a> <span class="error">${esc(r.error ?? 'failed')}</span>${r.hint ? `<br><span class="hint">hint: ${esc(r.hint)}</span>` : ''}</li>`,
        )
        .join('')}</ul>`
    : '';
  const head = SORT_KEYS.map((k) => `<th>${sortLink(k, q)}</th>`).join('');
  return `${sweepHeader(view.summary, csrf)}${failedList}
<h2>Runs (${shown.length} of ${view.runs.length})</h2>
<table class="grid" id="runs"><thead><tr><th>run</th>${head}</tr></thead>
<tbody>${shown.map((r) => runRow(id, r)).join('\n')}</tbody></table>`;
}

export function sweepPage(view: SweepView, q: SweepQuery, csrf: string): string {
  const id = view.summary.sweep_id;
  return `<h1>Sweep ${esc(id)}</h1>
<p><a href="${sweepHref(id)}/table">paper table</a> · <a href="${sweepHref(id)}/plots">plots</a></p>
${filterForm(view, q)}<div id="live">${sweepLive(view, q, csrf)}</div>`;
}

// ---------------------------------------------------------------------------------------------------------------
// A run

export function runLive(v: RunView): string {
  const rec = v.result ?? v.failure;
  const err = v.failure?.error ?? null;
  const step = v.step === null ? '' : ` · step ${v.step}${v.total_steps ? `/${v.total_steps}` : ''}`;
  const phase = v.phase && v.state === 'running' ? ` (${esc(v.phase)})` : '';
  const metrics = v.result
    ? `<p>final: ${Object.entries(v.result.metrics)
        .map(([k, x]) => `${esc(k)} <b>${num(x)}</b>`)
        .join(', ')}${v.result.best_step !== null ? ` · best at step ${v.result.best_step}` : ''}</p>`
    : '';
  const failure = err
    ? `<p class="error" id="run-error">${esc(err.kind)}: ${esc(err.message.split('\n')[0] ?? '')}</p>${err.hint ? `<p class="hint">hint: ${esc(err.hint)}</p>` : ''}`
    : '';
  const ckpts = v.checkpoints.length
    ? `<table class="grid" id="checkpoints"><thead><tr><th>step</th><th>best</th><th>reason</th><th>files</th><th>stored</th></tr></thead><tbody>${v.checkpoints
        .map(
          (c) =>
            `<tr><td class="num">${c.step}</td><td>${c.best ? 'best' : ''}</td><td>${esc(c.reason)}</td><td class="num">${c.files.length}</td><td>${time(c.stored_at)}</td></tr>`,
        )
        .join('')}</tbody></table>`
    : '<p class="muted">no checkpoint stored yet</p>';
  const attempts = v.logs.length
    ? v.logs
        .map(
          (l) =>
            `<h3>attempt ${l.attempt} <a href="/runs/${encodeURIComponent(v.run_id)}/logs/${l.attempt}">full log</a></h3><pre class="log">${l.truncated ? '…\n' : ''}${esc(l.text)}</pre>`,
        )
        .join('')
    : '<p class="muted">no log stored yet (a log is stored when an attempt ends)</p>';
  return `<p id="run-state" data-state="${esc(v.state)}">${stateBadge(v.state)}${phase}${step}${v.attempt ? ` · attempt ${v.attempt}` : ''}${rec ? ` · ${rec.timings.attempts} attempt(s) recorded, ${num(rec.timings.wall_s, 1)} s` : ''}</p>
${metrics}${failure}
<h2>Checkpoints</h2>${ckpts}
<h2>Attempts and logs</h2>${attempts}`;
}

export function runPage(v: RunView): string {
  const sweep = sweepHref(v.sweep_id);
  return `<h1>Run ${esc(v.run_id)}</h1>
<p>${esc(runLabel(v.labels))} · sweep <a href="${sweep}">${esc(v.sweep_id)}</a> · model ${esc(v.labels.model)}</p>
<h2>Training loss</h2><div class="chart" id="loss-chart" data-kind="loss" data-points="0" data-src="/api${sweep}/runs/${encodeURIComponent(v.run_id)}/curve"></div>
<h2>Evaluation</h2><div class="chart" id="eval-chart" data-kind="eval" data-points="0"></div>
<div id="live">${runLive(v)}</div>
<h2>Export</h2><p>The adapter of its best checkpoint: <code id="export">${esc(v.export_command)}</code></p>
<h2>Spec</h2><pre id="spec">${esc(JSON.stringify(v.spec, null, 2))}</pre>`;
}

// ---------------------------------------------------------------------------------------------------------------
// Table and plots

export function tablePage(sweepId: string, t: TableView): string {
  const base = `${sweepHref(sweepId)}/table`;
  const links = TABLE_DOWNLOADS.map(([ext, name]) => `<a href="${base}.${ext}" download>${name}</a>`).join(' · ');
  return `<h1>Paper table of <a href="${sweepHref(sweepId)}">${esc(sweepId)}</a></h1>
<p>download: ${links} · the same as <code>rankflow table ${esc(sweepId)}</code></p>
${t.notes.map((n) => `<p class="muted">${esc(n)}</p>`).join('')}
<div id="live" class="paper-table">${t.html}</div>`;
}

export function plotsPage(sweepId: string, plots: PlotView[]): string {
  const base = `${sweepHref(sweepId)}/plots`;
  const items = plots.map((p) =>
    p.svg
      ? `<section class="plot" data-plot="${esc(p.kind)}"><h2>${esc(p.kind)}</h2>${p.svg}<p>download: <a href="${base}/${esc(p.kind)}.svg" download>SVG</a> · <a href="${base}/${esc(p.kind)}.png" download>PNG</a></p></section>`
      : `<p class="muted" data-skipped="${esc(p.kind)}">${esc(p.kind)}: ${esc(p.skipped ?? 'not available')}</p>`,
  );
  return `<h1>Plots of <a href="${sweepHref(sweepId)}">${esc(sweepId)}</a></h1>
<p class="muted">the figures of <code>rankflow plot ${esc(sweepId)}</code></p>${items.join('\n')}`;
}

export function errorPage(status: number, message: string): string {
  return `<h1 id="error-page">${status}</h1><p class="error">${esc(message)}</p><p><a href="/">all sweeps</a></p>`;
}
