/**
 * The dashboard's HTTP server (node:http, no framework): routes, the same-origin and CSRF checks of every
 * state-changing request, security headers, and the static assets (the page script, uPlot from node_modules).
 *
 * Every POST must come from a page of this server: its `Host` must be one this server answers to (on loopback:
 * 127.0.0.1/localhost/[::1] with its port, which also defeats DNS rebinding), its `Origin` (or, lacking one,
 * its `Referer`) must be `http://<that host>`, and it must carry the server's CSRF token (random per server,
 * in each page's forms). GETs never change anything.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { randomBytes, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import { PROJECT_ROOT } from '../../core/paths.js';
import { TableInputError, UserError } from '../../core/errors.js';
import { SWEEP_ACTIONS, type SweepAction, type UiSource } from './model.js';
import { CLIENT_JS } from './client.js';
import {
  css,
  errorPage,
  layout,
  parseSweepQuery,
  plotsPage,
  runLive,
  runPage,
  sweepLive,
  sweepPage,
  sweepsPage,
  TABLE_EXT_FORMAT,
  tablePage,
} from './pages.js';

export const LOOPBACK = new Set(['127.0.0.1', 'localhost', '::1']);

export interface UiOptions {
  host: string;
  port: number;
  /** Refresh interval of the pages' live parts, ms (default 2000). */
  refreshMs?: number;
}

export interface RunningUi {
  url: string;
  server: Server;
  csrf: string;
  close(): Promise<void>;
}

class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

const SECURITY_HEADERS = {
  'Content-Security-Policy':
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
  'X-Content-Type-Options': 'nosniff',
  'X-Frame-Options': 'DENY',
  'Referrer-Policy': 'same-origin',
  'Cache-Control': 'no-store',
};

function send(res: ServerResponse, status: number, type: string, body: string | Buffer, extra = {}): void {
  res.writeHead(status, { ...SECURITY_HEADERS, 'Content-Type': type, ...extra });
  res.end(body);
}

const HTML = 'text/html; charset=utf-8';

/** The hosts (`name:port`) a server bound to `host:port` answers to; null: any (bound beyond loopback). */
export function allowedHosts(host: string, port: number): Set<string> | null {
  if (!LOOPBACK.has(host)) return null;
  return new Set([`127.0.0.1:${port}`, `localhost:${port}`, `[::1]:${port}`]);
}

/** Why a request is refused as not same-origin, or null when it may go on. */
export function sameOriginProblem(
  headers: IncomingMessage['headers'],
  allowed: Set<string> | null,
  method: string,
): string | null {
  const host = headers.host;
  if (!host) return 'no Host header';
  if (allowed && !allowed.has(host.toLowerCase())) return `Host ${host} is not this server`;
  if (method === 'GET' || method === 'HEAD') return null;
  const origin = headers.origin ?? (headers.referer ? safeOrigin(headers.referer) : null);
  if (!origin) return 'a state-changing request needs an Origin (or Referer) header';
  if (origin !== `http://${host}`) return `Origin ${origin} is not http://${host}`;
  return null;
}

function safeOrigin(url: string): string | null {
  try {
    return new URL(url).origin;
  } catch {
    return null;
  }
}

export function tokenMatches(given: string | null, csrf: string): boolean {
  if (!given) return false;
  const a = Buffer.from(given);
  const b = Buffer.from(csrf);
  return a.length === b.length && timingSafeEqual(a, b);
}

async function readBody(req: IncomingMessage, max = 16 * 1024): Promise<string> {
  let size = 0;
  const chunks: Buffer[] = [];
  for await (const c of req as AsyncIterable<Buffer>) {
    size += c.length;
    if (size > max) throw new HttpError(413, 'request body too large');
    chunks.push(c);
  }
  return Buffer.concat(chunks).toString('utf8');
}

function asset(name: string): { type: string; body: string | Buffer } | null {
  if (name === 'app.js') return { type: 'text/javascript; charset=utf-8', body: CLIENT_JS };
  if (name === 'app.css') return { type: 'text/css; charset=utf-8', body: css() };
  const uplot: Record<string, [string, string]> = {
    'uplot.js': ['uPlot.iife.min.js', 'text/javascript; charset=utf-8'],
    'uplot.css': ['uPlot.min.css', 'text/css; charset=utf-8'],
  };
  const u = uplot[name];
  if (!u) return null;
  return { type: u[1], body: readFileSync(join(PROJECT_ROOT, 'node_modules', 'uplot', 'dist', u[0])) };
}

const UPLOT_HEAD = '<link rel="stylesheet" href="/assets/uplot.css"><script src="/assets/uplot.js" defer></script>';

type Route = (m: RegExpExecArray, url: URL, req: IncomingMessage, res: ServerResponse) => Promise<void>;

export class UiServer {
  readonly csrf = randomBytes(24).toString('base64url');
  private allowed: Set<string> | null = null;
  private readonly routes: [string, RegExp, Route][];
  private readonly refreshMs: number;

  constructor(
    readonly source: UiSource,
    opts: { refreshMs?: number } = {},
  ) {
    this.refreshMs = opts.refreshMs ?? 2000;
    const seg = '([^/]+)';
    this.routes = [
      ['GET', /^\/$/, (_m, u, _q, r) => this.sweeps(u, r)],
      ['GET', /^\/api\/health$/, async (_m, _u, _q, r) => this.json(r, await this.source.health())],
      ['GET', /^\/api\/sweeps$/, async (_m, _u, _q, r) => this.json(r, await this.source.sweeps())],
      [
        'GET',
        new RegExp(`^/api/sweeps/${seg}$`),
        async (m, _u, _q, r) => this.json(r, await this.need(this.source.sweep(m[1]!))),
      ],
      ['GET', new RegExp(`^/api/sweeps/${seg}/runs/${seg}/curve$`), (m, _u, _q, r) => this.curve(m[1]!, m[2]!, r)],
      ['GET', new RegExp(`^/assets/${seg}$`), (m, _u, _q, r) => this.asset(m[1]!, r)],
      ['GET', new RegExp(`^/sweeps/${seg}$`), (m, u, _q, r) => this.sweep(m[1]!, u, r)],
      ['GET', new RegExp(`^/sweeps/${seg}/runs/${seg}$`), (m, u, _q, r) => this.run(m[1]!, m[2]!, u, r)],
      ['GET', new RegExp(`^/sweeps/${seg}/table$`), (m, u, _q, r) => this.table(m[1]!, u, r)],
      [
        'GET',
        new RegExp(`^/sweeps/${seg}/table\\.(md|tex|csv|html|json)$`),
        (m, _u, _q, r) => this.tableFile(m[1]!, m[2]!, r),
      ],
      ['GET', new RegExp(`^/sweeps/${seg}/plots$`), (m, _u, _q, r) => this.plots(m[1]!, r)],
      [
        'GET',
        new RegExp(`^/sweeps/${seg}/plots/([a-z]+)\\.(svg|png)$`),
        (m, _u, _q, r) => this.plotFile(m[1]!, m[2]!, m[3]!, r),
      ],
      ['GET', new RegExp(`^/runs/${seg}/logs/(\\d+)$`), (m, _u, _q, r) => this.log(m[1]!, Number(m[2]), r)],
      ['POST', new RegExp(`^/sweeps/${seg}/([a-z]+)$`), (m, _u, q, r) => this.action(m[1]!, m[2]!, q, r)],
    ];
  }

  /** Sets the hosts this server answers to, once its port is known. */
  bind(host: string, port: number): void {
    this.allowed = allowedHosts(host, port);
  }

  readonly handle = (req: IncomingMessage, res: ServerResponse): void => {
    void this.dispatch(req, res).catch((e: unknown) => this.fail(res, e));
  };

  private async dispatch(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const method = req.method ?? 'GET';
    const problem = sameOriginProblem(req.headers, this.allowed, method);
    if (problem) throw new HttpError(403, `refused: ${problem}`);
    const url = new URL(req.url ?? '/', 'http://dashboard.invalid');
    let pathMatched = false;
    for (const [m, re, route] of this.routes) {
      const hit = re.exec(url.pathname);
      if (!hit) continue;
      pathMatched = true;
      if (m !== method) continue;
      const decoded = hit.map((x) => (x === undefined ? x : decodeURIComponent(x))) as unknown as RegExpExecArray;
      return await route(decoded, url, req, res);
    }
    throw new HttpError(
      pathMatched ? 405 : 404,
      pathMatched ? `${method} is not allowed here` : `no page ${url.pathname}`,
    );
  }

  private fail(res: ServerResponse, e: unknown): void {
    let status = 500;
    let message = e instanceof Error ? e.message.split('\n')[0]! : String(e);
    if (e instanceof HttpError) status = e.status;
    else if (/UNAVAILABLE|ECONNREFUSED|cannot reach the Temporal server|deadline/i.test(message)) {
      status = 503;
      message = `the Temporal server or the store does not answer (${message}); reload to retry`;
    } else if (e instanceof UserError || e instanceof TableInputError) status = 400;
    if (res.headersSent) return void res.end();
    send(
      res,
      status,
      HTML,
      layout({ csrf: this.csrf, title: String(status), refreshMs: 0 }, errorPage(status, message)),
    );
  }

  private json(res: ServerResponse, value: unknown): void {
    send(res, 200, 'application/json; charset=utf-8', JSON.stringify(value));
  }

  private page(res: ServerResponse, url: URL, title: string, body: string, live: string | null, head = ''): void {
    if (url.searchParams.get('fragment') === '1' && live !== null) return send(res, 200, HTML, live);
    send(res, 200, HTML, layout({ csrf: this.csrf, title, refreshMs: live === null ? 0 : this.refreshMs }, body, head));
  }

  private async need<T>(p: Promise<T | null>): Promise<T> {
    const v = await p;
    if (v === null) throw new HttpError(404, 'no such sweep or run in the store (see `rankflow ls`)');
    return v;
  }

  private async sweeps(url: URL, res: ServerResponse): Promise<void> {
    const sweeps = await this.source.sweeps();
    const live = sweepsPage(sweeps, this.csrf);
    this.page(res, url, 'Sweeps', `<h1>Sweeps</h1><div id="live">${live}</div>`, live);
  }

  private async sweep(id: string, url: URL, res: ServerResponse): Promise<void> {
    const view = await this.need(this.source.sweep(id));
    const q = parseSweepQuery(url.searchParams);
    this.page(res, url, `Sweep ${id}`, sweepPage(view, q, this.csrf), sweepLive(view, q, this.csrf));
  }

  private async run(sweepId: string, runId: string, url: URL, res: ServerResponse): Promise<void> {
    const v = await this.need(this.source.run(sweepId, runId));
    this.page(res, url, `Run ${runId}`, runPage(v), runLive(v), UPLOT_HEAD);
  }

  private async curve(sweepId: string, runId: string, res: ServerResponse): Promise<void> {
    const v = await this.need(this.source.run(sweepId, runId));
    this.json(res, { run_id: v.run_id, state: v.state, curve: v.curve, evals: v.evals });
  }

  private async table(id: string, url: URL, res: ServerResponse): Promise<void> {
    const t = await this.source.tableView(id);
    this.page(res, url, `Table ${id}`, tablePage(id, t), null);
  }

  private async tableFile(id: string, ext: string, res: ServerResponse): Promise<void> {
    const text = await this.source.table(id, TABLE_EXT_FORMAT[ext]!);
    const types: Record<string, string> = {
      md: 'text/markdown',
      tex: 'application/x-tex',
      csv: 'text/csv',
      html: 'text/html',
      json: 'application/json',
    };
    send(res, 200, `${types[ext]}; charset=utf-8`, text, {
      'Content-Disposition': `attachment; filename="${id.replace(/[^A-Za-z0-9._-]/g, '_')}.${ext}"`,
    });
  }

  private async plots(id: string, res: ServerResponse): Promise<void> {
    const plots = await this.source.plots(id);
    send(res, 200, HTML, layout({ csrf: this.csrf, title: `Plots ${id}`, refreshMs: 0 }, plotsPage(id, plots)));
  }

  private async plotFile(id: string, kind: string, format: string, res: ServerResponse): Promise<void> {
    const body = await this.source.plotFile(id, kind, format as 'svg' | 'png');
    if (body === null) throw new HttpError(404, `no ${kind} plot for ${id} (see its plots page)`);
    send(res, 200, format === 'svg' ? 'image/svg+xml' : 'image/png', body, {
      'Content-Disposition': `attachment; filename="${id.replace(/[^A-Za-z0-9._-]/g, '_')}-${kind}.${format}"`,
    });
  }

  private async log(runId: string, attempt: number, res: ServerResponse): Promise<void> {
    const text = await this.source.log(runId, attempt);
    if (text === null) throw new HttpError(404, `no log of attempt ${attempt} of ${runId}`);
    send(res, 200, 'text/plain; charset=utf-8', text);
  }

  private async asset(name: string, res: ServerResponse): Promise<void> {
    const a = asset(name);
    if (!a) throw new HttpError(404, `no asset ${name}`);
    send(res, 200, a.type, a.body, { 'Cache-Control': 'max-age=300' });
  }

  private async action(id: string, action: string, req: IncomingMessage, res: ServerResponse): Promise<void> {
    if (!(SWEEP_ACTIONS as readonly string[]).includes(action)) throw new HttpError(404, `no action ${action}`);
    const form = new URLSearchParams(await readBody(req));
    if (!tokenMatches(form.get('csrf'), this.csrf))
      throw new HttpError(403, 'refused: missing or wrong CSRF token; reload the page');
    await this.source.act(id, action as SweepAction);
    const back = req.headers.referer ? safePath(req.headers.referer) : null;
    res.writeHead(303, { ...SECURITY_HEADERS, Location: back ?? `/sweeps/${encodeURIComponent(id)}` });
    res.end();
  }
}

/** The path and query of a same-origin address (the Origin check has passed), never another host. */
function safePath(url: string): string | null {
  try {
    const u = new URL(url);
    return u.pathname.startsWith('/') ? `${u.pathname}${u.search}` : null;
  } catch {
    return null;
  }
}

/** Starts the dashboard on `host:port` (port 0: a free one). */
export async function startUi(source: UiSource, opts: UiOptions): Promise<RunningUi> {
  const ui = new UiServer(source, { refreshMs: opts.refreshMs });
  const server = createServer(ui.handle);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, opts.host, () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  ui.bind(opts.host, port);
  const shown = opts.host.includes(':') ? `[${opts.host}]` : opts.host;
  return {
    url: `http://${shown}:${port}/`,
    server,
    csrf: ui.csrf,
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
      await source.close();
    },
  };
}
