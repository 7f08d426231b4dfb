/**
 * The dashboard's server without a browser or services: a stand-in source (pure data) behind the real HTTP
 * server. State-changing requests from another origin, without an origin, or without the CSRF token are refused
 * (and do nothing); a Host that is not this server is refused (DNS rebinding); user strings are escaped
 * everywhere; pages carry no inline script and a strict Content-Security-Policy; filters and sorting work; and
 * the live source never puts the store's keys into a page, even when nothing answers.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { request } from 'node:http';
import { spawn, spawnSync } from 'node:child_process';
import { PROJECT_ROOT } from '../core/paths.js';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startUi, type RunningUi } from '../cli/ui/server.js';
import { filterSortRuns, parseSweepQuery } from '../cli/ui/pages.js';
import { LiveSource, CurveTracker } from '../cli/ui/source.js';
import type { Health, RunRowView, RunView, SweepAction, SweepSummary, SweepView, UiSource } from '../cli/ui/model.js';
import type { Config } from '../cli/config.js';
import { tinySpec } from './helpers/runs.js';

const EVIL = '<script>alert("x")</script>';

function row(i: number, over: Partial<RunRowView> = {}): RunRowView {
  return {
    run_id: `run-${String(i).padStart(4, '0')}`,
    labels: {
      model: 'm',
      method: i % 2 ? 'lora' : 'dora',
      rank: 2 ** (i % 4),
      dataset: `glue/${EVIL}`,
      seed: i,
      setting: '',
      tags: [],
    },
    state: 'succeeded',
    step: 10,
    total_steps: 10,
    loss: 1 / (i + 1),
    metric: i / 100,
    metric_name: 'accuracy',
    attempts: 1,
    error: null,
    hint: null,
    ...over,
  };
}

const summary: SweepSummary = {
  sweep_id: 'sweep-abc',
  recipe: `recipes/${EVIL}.yaml`,
  total: 4,
  created_at: '2026-01-01T00:00:00.000Z',
  started_at: '2026-01-01T00:00:01.000Z',
  finished_at: null,
  state: 'running',
  counts: { pending: 1, running: 1, succeeded: 1, failed: 1 },
  paused: false,
  note: null,
};

const runs = [
  row(0),
  row(1, { state: 'failed', error: `data error: ${EVIL}`, hint: `fix <b>${EVIL}</b>` }),
  row(2, { state: 'running', metric: null }),
  row(3, { state: 'pending', step: null, loss: null, metric: null }),
];

class FakeSource implements UiSource {
  acts: [string, SweepAction][] = [];
  async health(): Promise<Health> {
    return {
      temporal: 'ok',
      address: '127.0.0.1:7233',
      store: 's3://b/p',
      since: null,
      error: null,
      reconnected_at: null,
    };
  }
  async sweeps(): Promise<SweepSummary[]> {
    return [summary];
  }
  async sweep(id: string): Promise<SweepView | null> {
    return id === summary.sweep_id ? { summary, runs } : null;
  }
  async run(_s: string, runId: string): Promise<RunView | null> {
    const r = runs.find((x) => x.run_id === runId);
    if (!r) return null;
    return {
      run_id: r.run_id,
      sweep_id: summary.sweep_id,
      labels: r.labels,
      spec: { ...tinySpec(), model: { ...tinySpec().model, name: EVIL } },
      state: r.state,
      phase: 'training',
      step: 3,
      total_steps: 10,
      attempt: 1,
      result: null,
      failure: null,
      checkpoints: [],
      logs: [{ attempt: 1, key: 'logs/x/attempt-1.log', text: `line ${EVIL}`, truncated: false }],
      curve: [{ step: 1, loss: 2 }],
      evals: [],
      export_command: `rankflow export ${r.run_id} --out adapters/${r.run_id}`,
    };
  }
  async log(): Promise<string | null> {
    return null;
  }
  async table(): Promise<string> {
    return '';
  }
  async tableView() {
    return { html: '<table></table>', notes: [EVIL] };
  }
  async plots() {
    return [{ kind: 'loss', svg: null, skipped: EVIL }];
  }
  async plotFile() {
    return null;
  }
  async act(id: string, action: SweepAction): Promise<string> {
    this.acts.push([id, action]);
    return 'ok';
  }
  async close(): Promise<void> {}
}

interface Reply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

function call(
  ui: RunningUi,
  path: string,
  opts: { method?: string; headers?: Record<string, string>; body?: string } = {},
): Promise<Reply> {
  const u = new URL(ui.url);
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: u.hostname,
        port: u.port,
        path,
        method: opts.method ?? 'GET',
        headers: { host: u.host, ...opts.headers },
      },
      (res) => {
        let body = '';
        res.on('data', (d) => (body += d));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
      },
    );
    req.on('error', reject);
    req.end(opts.body);
  });
}

let fake: FakeSource;
let ui: RunningUi;
let origin: string;
const form = (token: string): string => new URLSearchParams({ csrf: token }).toString();
const FORM = { 'content-type': 'application/x-www-form-urlencoded' };

beforeAll(async () => {
  fake = new FakeSource();
  ui = await startUi(fake, { host: '127.0.0.1', port: 0 });
  origin = ui.url.replace(/\/$/, '');
});
afterAll(async () => {
  await ui?.close();
});

describe('rankflow ui: requests that change state', () => {
  it('refuses a POST from another origin, one without an origin, and one without the token; does nothing then', async () => {
    const path = '/sweeps/sweep-abc/cancel';
    const other = await call(ui, path, {
      method: 'POST',
      headers: { ...FORM, origin: 'http://evil.example' },
      body: form(ui.csrf),
    });
    expect(other.status).toBe(403);
    expect(other.body).toContain('Origin http://evil.example is not');
    const none = await call(ui, path, { method: 'POST', headers: FORM, body: form(ui.csrf) });
    expect(none.status).toBe(403);
    const noToken = await call(ui, path, { method: 'POST', headers: { ...FORM, origin }, body: '' });
    expect(noToken.status).toBe(403);
    expect(noToken.body).toContain('CSRF token');
    const wrong = await call(ui, path, {
      method: 'POST',
      headers: { ...FORM, origin },
      body: form('x'.repeat(ui.csrf.length)),
    });
    expect(wrong.status).toBe(403);
    expect(fake.acts).toEqual([]);
    const get = await call(ui, path); // a GET never acts
    expect(get.status).toBe(405);
    expect(fake.acts).toEqual([]);
  });

  it('acts on a same-origin POST with the token, then sends the browser back', async () => {
    const r = await call(ui, '/sweeps/sweep-abc/pause', {
      method: 'POST',
      headers: { ...FORM, origin, referer: `${origin}/sweeps/sweep-abc?state=failed` },
      body: form(ui.csrf),
    });
    expect(r.status).toBe(303);
    expect(r.headers.location).toBe('/sweeps/sweep-abc?state=failed');
    expect(fake.acts).toEqual([['sweep-abc', 'pause']]);
    fake.acts = [];
  });

  it('refuses a Host that is not this server (DNS rebinding), even for a GET', async () => {
    const r = await call(ui, '/', { headers: { host: 'attacker.example:80' } });
    expect(r.status).toBe(403);
    expect(r.body).not.toContain('sweep-abc');
  });
});

describe('rankflow ui: pages', () => {
  it('escapes user strings on every page and carries no inline script', async () => {
    const pages = [
      '/',
      '/sweeps/sweep-abc',
      '/sweeps/sweep-abc/runs/run-0001',
      '/sweeps/sweep-abc/table',
      '/sweeps/sweep-abc/plots',
    ];
    for (const p of pages) {
      const r = await call(ui, p);
      expect(r.status, p).toBe(200);
      expect(r.body, p).not.toContain(EVIL);
      expect(r.body, p).toContain('&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;');
      expect(r.body.match(/<script(?![^>]*\bsrc=)[^>]*>/g), p).toBeNull(); // every script is a served file
      expect(String(r.headers['content-security-policy']), p).toContain("script-src 'self'");
    }
  });

  it('shows failed runs with their error and hint, the export command, and the buttons with the token', async () => {
    const sweep = await call(ui, '/sweeps/sweep-abc');
    expect(sweep.body).toMatch(/id="failed">.*data error: &lt;script/s);
    expect(sweep.body).toContain('hint: fix &lt;b&gt;');
    expect(sweep.body).toContain(`name="csrf" value="${ui.csrf}"`);
    expect(sweep.body).toContain('data-action="cancel"');
    const run = await call(ui, '/sweeps/sweep-abc/runs/run-0001');
    expect(run.body).toContain('rankflow export run-0001 --out adapters/run-0001');
    const frag = await call(ui, '/sweeps/sweep-abc?fragment=1');
    expect(frag.body).not.toContain('<html');
    expect(frag.body).toContain('id="runs"');
    expect((await call(ui, '/sweeps/nope')).status).toBe(404);
  });

  it('filters and sorts runs from the query', async () => {
    const failed = await call(ui, '/sweeps/sweep-abc?state=failed');
    expect(failed.body.match(/<tr data-run=/g)).toHaveLength(1);
    expect(failed.body).toContain('data-run="run-0001"');
    const q = parseSweepQuery(new URLSearchParams('sort=loss&dir=desc'));
    const sorted = filterSortRuns(runs, q).map((r) => r.loss);
    expect(sorted).toEqual([1, 0.5, 1 / 3, null]); // empty cells last
    expect(
      filterSortRuns(runs, parseSweepQuery(new URLSearchParams('method=lora&rank=2'))).map((r) => r.run_id),
    ).toEqual(['run-0001']);
  });

  it('a live curve keeps one point per step and rewinds when a later attempt resumes from a checkpoint', () => {
    const t = new CurveTracker();
    const p = (step: number, loss: number) => ({
      run_id: 'r',
      step,
      loss,
      total_steps: 10,
      attempt: 1,
      phase: 'training' as const,
    });
    for (const [s, l] of [
      [1, 3],
      [2, 2.5],
      [2, 2.5],
      [4, 2],
      [3, 2.2],
      [5, 1.9],
    ] as const)
      t.observe(p(s, l));
    expect(t.curve('r').map((x) => x.step)).toEqual([1, 2, 3, 5]);
  });
});

describe('rankflow ui: the live source without services', () => {
  it('says the Temporal server does not answer, and never shows the store keys', async () => {
    const secret = 'SECRET-never-in-a-page-1234';
    const config: Config = {
      temporalAddress: '127.0.0.1:1',
      namespace: 'default',
      store: {
        kind: 's3',
        endpoint: 'http://127.0.0.1:1',
        bucket: 'b',
        region: 'us-east-1',
        accessKeyId: 'AKIA-KEY-ID-5678',
        secretAccessKey: secret,
      },
      queues: { control: 'c', cpu: 'cpu' },
      embedded: false,
      source: 'test',
    };
    const live = await startUi(new LiveSource(config), { host: '127.0.0.1', port: 0 });
    try {
      const h = JSON.parse((await call(live, '/api/health')).body) as Health;
      expect(h.temporal).toBe('down');
      expect(h.error).toBeTruthy();
      for (const p of ['/api/health', '/', '/sweeps/x', '/sweeps/x/runs/y', '/sweeps/x/table']) {
        const r = await call(live, p);
        expect(r.body, p).not.toContain(secret);
        expect(r.body, p).not.toContain('AKIA-KEY-ID-5678');
      }
      const page = await call(live, '/');
      expect(page.status).toBe(503);
      expect(page.body).toContain('does not answer');
    } finally {
      await live.close();
    }
  }, 60_000);

  it('reads sweeps from a local store folder', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'rankflow-ui-'));
    const config: Config = {
      temporalAddress: '127.0.0.1:1',
      namespace: 'default',
      store: { kind: 'local', root: dir },
      queues: { control: 'c' },
      embedded: false,
      source: 'test',
    };
    const live = await startUi(new LiveSource(config), { host: '127.0.0.1', port: 0 });
    try {
      const h = JSON.parse((await call(live, '/api/health')).body) as Health;
      expect(h.store).toBe(`file://${dir}`);
    } finally {
      await live.close();
    }
  }, 60_000);
});

describe('rankflow ui: the command', () => {
  const bin = join(PROJECT_ROOT, 'cli', 'bin.mjs');
  const env = (dir: string) => ({
    ...process.env,
    RANKFLOW_CONFIG: '',
    RANKFLOW_TEMPORAL_ADDRESS: '127.0.0.1:1',
    RANKFLOW_STORE: `file:${dir}`,
  });

  it('refuses a bad --port in one line', () => {
    const r = spawnSync(process.execPath, [bin, 'ui', '--port', 'eighty'], { encoding: 'utf8', env: env(tmpdir()) });
    expect(r.status).toBe(2);
    expect(r.stderr.trim()).toBe('rankflow: ui: --port must be an integer >= 0, got `eighty`');
  }, 60_000);

  it('warns when it binds beyond loopback, prints its address, and stops on SIGTERM', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'rankflow-ui-cmd-'));
    const p = spawn(process.execPath, [bin, 'ui', '--host', '0.0.0.0', '--port', '0'], { env: env(dir) });
    let err = '';
    p.stderr.on('data', (d) => (err += d));
    const exited = new Promise<number | null>((res) => p.on('close', (code) => res(code)));
    const deadline = Date.now() + 50_000;
    while (!/rankflow ui: http:\/\//.test(err) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    p.kill('SIGTERM');
    expect(await exited).toBe(0);
    expect(err).toMatch(
      /warning: listening on 0\.0\.0\.0, not loopback: anyone who can reach port \d+ can see every sweep/,
    );
    expect(err).toMatch(/rankflow ui: http:\/\/0\.0\.0\.0:\d+\/ {2}\(127\.0\.0\.1:1, environment\)/);
  }, 60_000);
});
