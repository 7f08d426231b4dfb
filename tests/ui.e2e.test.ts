/**
 * The dashboard in a real headless browser (Debian's Chromium driven by playwright-core) on the real services:
 * a sweep is followed live from the sweeps page to its end, a run's training-loss curve gains points while it
 * trains, the paper table is `rankflow table`'s and its downloads are the same text, the plots page draws the
 * plots and serves the PNG, a cancel clicked on the page cancels the sweep, and a 500-run sweep's page is timed
 * in the browser (printed, not asserted: the machine is shared). A screenshot of each page goes to
 * .state/test-reports/ui/. Without a Chromium on the machine the browser tests skip, saying why.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { existsSync, mkdirSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Client } from '@temporalio/client';
import type { Browser, Page } from 'playwright-core';
import { PROJECT_ROOT } from '../core/paths.js';
import type { Config } from '../cli/config.js';
import { startWorker, type RunningWorker } from '../cli/worker.js';
import { startSweep, sweepState, writeManifest, type SubmitOptions } from '../cli/sweeps.js';
import { readSelection } from '../cli/results-reader.js';
import { LiveSource } from '../cli/ui/source.js';
import { startUi, type RunningUi } from '../cli/ui/server.js';
import { buildTable } from '../tables/table.js';
import { render } from '../tables/render.js';
import { resultKey } from '../store/keys.js';
import { ResultRecord } from '../schemas/result.js';
import type { SweepStatus } from '../schemas/orchestration.js';
import type { PlannedRun } from '../schemas/runspec.js';
import type { S3Store } from '../store/store.js';
import { probeTemporal, startTemporal, stopProcessGroup } from '../services/embedded.js';
import { testClient, testConfig, testStore, uniqueId } from './helpers/cluster.js';
import { planned, tinySpec, waitFor } from './helpers/runs.js';

const CHROMIUM =
  process.env.RANKFLOW_CHROMIUM ??
  ['/usr/bin/chromium', '/usr/bin/chromium-browser', '/usr/bin/google-chrome'].find((p) => existsSync(p));
if (!CHROMIUM)
  console.warn(
    'tests/ui.e2e.test.ts: skipped: no Chromium on this machine (apt-get install chromium, as root: `npm run setup` does it when it can; or set RANKFLOW_CHROMIUM)',
  );
const REPORTS = join(PROJECT_ROOT, '.state', 'test-reports', 'ui');

let config: Config;
let store: S3Store;
let client: Client;
let closeClient: () => Promise<void>;
let worker: RunningWorker;
let ui: RunningUi;
let browser: Browser;
let page: Page;

function runs(n: number, steps: number): PlannedRun[] {
  return Array.from({ length: n }, (_, i) => {
    const spec = tinySpec({ rank: 2 + 2 * (i % 2), steps, checkpointEvery: Math.max(1, Math.floor(steps / 2)) });
    spec.training.eval_every = Math.max(1, Math.floor(steps / 4));
    return planned(spec);
  });
}

async function submit(rs: PlannedRun[], recipe: string): Promise<string> {
  const opts: SubmitOptions = { sweepId: uniqueId('sweep-ui'), recipe, runs: rs, concurrency: 2 };
  await writeManifest(store, config, opts);
  expect(await startSweep(client, config, opts)).toBe(true);
  return opts.sweepId;
}

async function shot(name: string): Promise<void> {
  await page.screenshot({ path: join(REPORTS, `${name}.png`), fullPage: true });
}

const url = (path: string): string => new URL(path, ui.url).toString();

describe.skipIf(!CHROMIUM)('rankflow ui in a real browser', () => {
  beforeAll(async () => {
    mkdirSync(REPORTS, { recursive: true });
    config = testConfig();
    store = testStore(config);
    await store.ensureBucket();
    ({ client, close: closeClient } = await testClient(config));
    worker = await startWorker(config, { slots: { cpu: 2 }, shutdownGraceS: 5 });
    ui = await startUi(new LiveSource(config), { host: '127.0.0.1', port: 0, refreshMs: 1000 });
    const { chromium } = await import('playwright-core');
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'],
    });
    page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    page.setDefaultTimeout(120_000);
  });

  afterAll(async () => {
    await browser?.close();
    await ui?.close();
    await worker?.shutdown();
    await closeClient?.();
  });

  it('follows a sweep live; a run curve gains points while it trains; table and plots as the CLI makes them', async () => {
    // 1500 steps: with a warm runtime 120 steps ended within a heartbeat or two, before the curve could grow
    const sweep = await submit(runs(2, 1500), 'recipes/ui-live.yaml');
    await page.goto(url('/'));
    await page.waitForSelector(`tr[data-sweep="${sweep}"]`);
    await shot('sweeps');
    // the sweep's page: its runs turn `running` without a reload
    await page.goto(url(`/sweeps/${sweep}`));
    const running = await page.waitForSelector('tr[data-state="running"]');
    const runId = await running.getAttribute('data-run');
    await shot('sweep');
    // the run's page: its curve gains points while it trains
    await page.goto(url(`/sweeps/${sweep}/runs/${runId}`));
    const points = async (): Promise<number> => Number(await page.getAttribute('#loss-chart', 'data-points'));
    await waitFor('a first point', async () => (await points()) > 0, 180_000);
    const first = await points();
    const stateThen = await page.getAttribute('#loss-chart', 'data-state');
    await waitFor('more points', async () => (await points()) > first, 180_000);
    console.log(`ui: run curve grew from ${first} to ${await points()} points while ${stateThen}`);
    expect(stateThen).toBe('running');
    await page.waitForSelector('#loss-chart canvas'); // uPlot drew it
    await shot('run-training');
    // the whole sweep to its end, watched on its page
    const status = (await client.workflow.getHandle(sweep).result()) as SweepStatus;
    expect(status.counts.succeeded).toBe(2);
    await page.waitForSelector('#run-state[data-state="succeeded"]');
    await page.waitForFunction(() => Number(document.querySelector('#eval-chart')?.getAttribute('data-points')) > 0);
    await shot('run');
    await page.goto(url(`/sweeps/${sweep}`));
    expect(await page.locator('tr[data-state="succeeded"]').count()).toBe(2);
    expect(await page.textContent('#live')).toContain('completed');
    // the paper table: `rankflow table`'s renderer, and its downloads are the same text
    await page.goto(url(`/sweeps/${sweep}/table`));
    await page.waitForSelector('.paper-table table');
    await shot('table');
    const sel = await readSelection(store, [sweep]);
    const md = await (await page.request.get(url(`/sweeps/${sweep}/table.md`))).text();
    expect(md).toBe(render(buildTable(sel.runs, {}), 'md'));
    // the plots, inline, with downloads
    await page.goto(url(`/sweeps/${sweep}/plots`));
    await page.waitForSelector('section[data-plot="loss"] svg');
    await shot('plots');
    const png = await (await page.request.get(url(`/sweeps/${sweep}/plots/loss.png`))).body();
    expect(png.subarray(1, 4).toString()).toBe('PNG');
  }, 900_000);

  it('cancels a sweep from its page', async () => {
    const sweep = await submit(runs(2, 2000), 'recipes/ui-cancel.yaml');
    await page.goto(url(`/sweeps/${sweep}`));
    await page.waitForSelector('tr[data-state="running"]');
    page.once('dialog', (d) => void d.accept());
    await page.click('button[data-action="cancel"]');
    const status = (await client.workflow.getHandle(sweep).result()) as SweepStatus;
    const d = await client.workflow.getHandle(sweep).describe();
    expect(sweepState(status, d.status.name)).toBe('cancelled');
    expect(status.counts.succeeded).toBe(0);
    await page.goto(url(`/sweeps/${sweep}`));
    expect(await page.textContent('#live')).toContain('cancelled');
    await shot('sweep-cancelled');
  }, 600_000);

  it('renders a 500-run sweep (timed in the browser)', async () => {
    const many = runs(500, 10);
    const sweepId = uniqueId('sweep-ui-500');
    await writeManifest(store, config, { sweepId, recipe: 'recipes/ui-500.yaml', runs: many, concurrency: 1 });
    // a recorded result for every other run (the records of a finished sweep, made up from one real one)
    const real = (await store.list('results/'))[0]!;
    const rec = ResultRecord.parse(JSON.parse((await store.get(real))!.toString()));
    await Promise.all(
      many
        .filter((_, i) => i % 2 === 0)
        .map((r, i) =>
          store.put(
            resultKey(r.id),
            JSON.stringify({
              ...rec,
              run_id: r.id,
              sweep_id: sweepId,
              spec: r.spec,
              labels: r.labels,
              metrics: { ...rec.metrics, accuracy: i / 250 },
            }),
          ),
        ),
    );
    const timings: string[] = [];
    const visit = async (base: string, pass: string): Promise<void> => {
      const t0 = Date.now();
      await page.goto(new URL(`/sweeps/${sweepId}`, base).toString(), { waitUntil: 'load' });
      const wall = Date.now() - t0;
      const nav = await page.evaluate(() => {
        const n = performance.getEntriesByType('navigation')[0] as PerformanceNavigationTiming;
        return {
          server: n.responseStart - n.requestStart,
          html: n.responseEnd,
          parsed: n.domInteractive,
          dom: n.domContentLoadedEventEnd,
          load: n.loadEventEnd,
          kb: n.decodedBodySize / 1024,
        };
      });
      expect(await page.locator('#runs tbody tr').count()).toBe(500);
      const r = (x: number): number => Math.round(x);
      timings.push(
        `${pass}: ${wall} ms to load: server answered in ${r(nav.server)} ms, ${r(nav.kb)} KiB of HTML in by ${r(nav.html)} ms, parsed (500 rows) by ${r(nav.parsed)} ms, DOM ready at ${r(nav.dom)} ms, load at ${r(nav.load)} ms`,
      );
    };
    // side by side: what `rankflow table` takes to read the same sweep's records from the store
    let t0 = Date.now();
    await readSelection(store, [sweepId]);
    timings.push(`reference: rankflow table's read of the sweep (readSelection): ${Date.now() - t0} ms`);
    await visit(ui.url, 'first visit, records read from the store');
    await visit(ui.url, 'second visit, records cached');
    // `rankflow ui` reads every result record when it starts (LiveSource.warm): a first visit after that
    const warmed = new LiveSource(config);
    t0 = Date.now();
    const cached = await warmed.warm();
    timings.push(`start-up warm-up of a new server: ${cached} records in ${Date.now() - t0} ms`);
    const fresh = await startUi(warmed, { host: '127.0.0.1', port: 0 });
    try {
      await visit(fresh.url, 'first visit after the warm-up');
    } finally {
      await fresh.close();
    }
    await shot('sweep-500');
    t0 = Date.now();
    await page.goto(url(`/sweeps/${sweepId}?state=succeeded&sort=metric&dir=desc`), { waitUntil: 'load' });
    timings.push(`filtered and sorted: ${Date.now() - t0} ms`);
    expect(await page.locator('#runs tbody tr').count()).toBe(250);
    console.log(`ui: 500-run sweep page in Chromium:\n  ${timings.join('\n  ')}`);
  }, 300_000);

  it('says when the Temporal server stops answering, and when it is back after a restart', async () => {
    // a Temporal dev server of this test's own (the shared one must not restart under the other tests)
    const stateDir = mkdtempSync(join(tmpdir(), 'rankflow-ui-temporal-'));
    let t = await startTemporal({ stateDir });
    const own = await startUi(new LiveSource({ ...config, temporalAddress: t.record.address }), {
      host: '127.0.0.1',
      port: 0,
      refreshMs: 1000,
    });
    try {
      await waitFor('the dev server', () => probeTemporal(t.record.address).then(() => true), 120_000);
      await page.goto(new URL('/', own.url).toString());
      await page.waitForSelector('body[data-temporal="ok"]');
      await stopProcessGroup(t.spawned.pid, 5_000, t.spawned.exitedPromise);
      await page.waitForSelector('#banner.down');
      expect(await page.textContent('#banner')).toContain(`The Temporal server at ${t.record.address} does not answer`);
      await shot('temporal-down');
      t = await startTemporal({ stateDir, ports: t.record.ports }); // the same ports: as the embedded services restart
      await page.waitForSelector('#banner.up');
      expect(await page.textContent('#banner')).toContain('Reconnected to the Temporal server');
      await page.goto(new URL('/', own.url).toString()); // the pages answer again
      await page.waitForSelector('body[data-temporal="ok"]');
    } finally {
      await own.close();
      await stopProcessGroup(t.spawned.pid, 5_000, t.spawned.exitedPromise);
    }
  }, 300_000);
});
