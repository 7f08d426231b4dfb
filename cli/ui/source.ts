/**
 * The dashboard's data, read exactly as the CLI reads it: sweep states from the sweep workflows (`sweepStatus`,
 * `sweepState` of `rankflow status`), per-run step and loss from the training heartbeats (`runProgress`), results
 * and failures from the store (`readResult`, `readSelection` of `rankflow table`), logs and checkpoints under the
 * store's keys, the table from `tables/render`, the plots from `tables/plots`. Result records are write-once, so
 * they are cached; everything else is read on each request. Training-loss and evaluation points seen in
 * heartbeats are kept per run while the server lives: the live curve of a run that has not finished.
 */
import type { Client } from '@temporalio/client';
import { type Config, controlQueue } from '../config.js';
import { connect, defaultConcurrency, defaultCpuSlots } from '../connect.js';
import { ensureBackgroundWorker } from '../background.js';
import {
  firstLine,
  parseManifest,
  runProgress,
  startSweep,
  sweepState,
  sweepStatus,
  SweepNotAnswering,
  type RunProgress,
} from '../sweeps.js';
import { notPolledLine, pollersAlive, queuePollers } from '../queues.js';
import { mapPool, readResult, readSelection } from '../results-reader.js';
import { plotSpec } from '../commands/plot.js';
import { cancelSignal, pauseSignal, resumeSignal } from '../../workflows/index.js';
import { openStore, type ArtifactStore } from '../../store/store.js';
import { listCheckpoints } from '../../store/checkpoints.js';
import {
  failureKey,
  logsPrefix,
  RESULTS_PREFIX,
  resultKey,
  SWEEPS_PREFIX,
  sweepIdOfKey,
  sweepKey,
} from '../../store/keys.js';
import { ResultRecord } from '../../schemas/result.js';
import type { SweepManifest, SweepStatus } from '../../schemas/orchestration.js';
import type { PlannedRun } from '../../schemas/runspec.js';
import { buildTable } from '../../tables/table.js';
import { FORMATS, render, type Format } from '../../tables/render.js';
import { PLOT_KINDS, specToSvg, svgToPng, type PlotKind } from '../../tables/plots.js';
import { TableInputError, UserError } from '../../core/errors.js';
import type {
  Health,
  PlotView,
  RunRowView,
  RunView,
  SweepAction,
  SweepSummary,
  SweepView,
  TableView,
  UiSource,
} from './model.js';

/** How long a connection replaced after a failure stays open for the calls still retrying on it. */
const RETIRE_MS = 120_000;

/** A sweep whose page was opened is sampled in the background this long (its runs' live curves keep growing). */
const WATCH_MS = 10 * 60_000;
const SAMPLE_MS = 2_000;

/** Bytes of each attempt's log shown on a run's page (the rest is a download). */
export const LOG_TAIL = 64 * 1024;

type Point = { step: number; loss: number };
type EvalPoint = { step: number; metrics: Record<string, number> };

/** Live points of one run, from the heartbeats this server saw (a resumed attempt rewinds them). */
export class CurveTracker {
  private readonly loss = new Map<string, Point[]>();
  private readonly evals = new Map<string, EvalPoint[]>();

  observe(p: RunProgress): void {
    if (p.step !== null && p.loss !== null && p.phase !== 'loading')
      add(this.loss, p.run_id, { step: p.step, loss: p.loss });
    if (p.eval) add(this.evals, p.run_id, { step: p.eval.step, metrics: p.eval.metrics });
  }

  curve(runId: string): Point[] {
    return this.loss.get(runId) ?? [];
  }

  evalPoints(runId: string): EvalPoint[] {
    return this.evals.get(runId) ?? [];
  }
}

function add<T extends { step: number }>(m: Map<string, T[]>, id: string, pt: T): void {
  const pts = m.get(id) ?? [];
  const last = pts.at(-1);
  if (last && last.step === pt.step) return;
  // A later attempt resumes from an earlier checkpoint: its steps replace the ones it repeats.
  const kept = last && pt.step < last.step ? pts.filter((x) => x.step < pt.step) : pts;
  kept.push(pt);
  m.set(id, kept);
}

function parseRecord(body: Buffer | null): ResultRecord | null {
  if (!body) return null;
  try {
    const r = ResultRecord.safeParse(JSON.parse(body.toString('utf8')));
    return r.success ? r.data : null;
  } catch {
    return null;
  }
}

/** A run's state in a sweep: its record, the sweep's running list and failed outcomes, else pending/missing. */
function runState(
  id: string,
  recorded: boolean,
  status: SweepStatus | null,
  failed: ResultRecord | null,
  closed: boolean,
): string {
  if (status?.running.includes(id)) return 'running';
  if (recorded) return 'succeeded';
  const outcome = status?.failed.find((f) => f.run_id === id);
  if (outcome) return outcome.state;
  if (failed) return 'failed';
  if (closed) return status?.cancelled ? 'cancelled' : 'missing';
  return 'pending';
}

/** A failed or blocked run's error line and hint: its failure record's, else the sweep's outcome message. */
function failureText(
  state: string,
  failed: ResultRecord | null,
  outcome: string | null,
): Pick<RunRowView, 'error' | 'hint'> {
  if (state !== 'failed' && state !== 'blocked') return { error: null, hint: null };
  const err = failed?.error ?? null;
  if (err) return { error: `${err.kind}: ${firstLine(err.message)}`, hint: err.hint };
  return { error: firstLine(outcome) || null, hint: null };
}

function rowView(
  run: PlannedRun,
  state: string,
  rec: ResultRecord | null,
  failed: ResultRecord | null,
  progress: RunProgress | undefined,
  outcome: string | null,
): RunRowView {
  const last = rec?.curve.at(-1);
  const metricName = run.spec.dataset.metric;
  return {
    run_id: run.id,
    labels: run.labels,
    state,
    step: progress?.step ?? last?.step ?? null,
    total_steps: progress?.total_steps ?? run.spec.training.max_steps ?? null,
    loss: progress?.loss ?? last?.loss ?? null,
    metric: rec ? (rec.metrics[metricName] ?? null) : null,
    metric_name: metricName,
    attempts: progress?.attempt ?? rec?.timings.attempts ?? failed?.timings.attempts ?? null,
    ...failureText(state, failed, outcome),
  };
}

export class LiveSource implements UiSource {
  private conn: { client: Client; close: () => Promise<void> } | null = null;
  private storeHandle: ArtifactStore | null = null;
  private readonly results = new Map<string, ResultRecord>();
  /** Parsed manifests with their bytes: a 500-run manifest takes 65-385 ms to validate, its bytes ~1 ms to compare. */
  private readonly manifestCache = new Map<string, { body: Buffer; manifest: SweepManifest }>();
  private down: { since: string; error: string } | null = null;
  private reconnectedAt: string | null = null;
  readonly tracker = new CurveTracker();
  /** Sweeps to sample in the background, until when (ms). */
  private readonly watched = new Map<string, number>();
  private sampler: NodeJS.Timeout | null = null;
  private sampling = false;

  constructor(readonly config: Config) {}

  /** The store, read only (never a bucket created): as `rankflow table` opens it. */
  private async store(): Promise<ArtifactStore> {
    this.storeHandle ??= openStore(this.config.store);
    return this.storeHandle;
  }

  private async client(): Promise<Client> {
    this.conn ??= await connect(this.config);
    return this.conn.client;
  }

  /**
   * Dials again after a failure (the server may have restarted; grpc's own reconnect backs off up to 2 min).
   * The old connection is closed only later: the client retries calls on timers, and a call retried on a
   * closed channel throws outside any promise (an uncaught "Channel has been shut down").
   */
  private reset(e: unknown): void {
    const c = this.conn;
    this.conn = null;
    if (c) setTimeout(() => void c.close().catch(() => undefined), RETIRE_MS).unref();
    this.down ??= { since: new Date().toISOString(), error: firstLine((e as Error).message) };
  }

  async health(): Promise<Health> {
    const base = { address: this.config.temporalAddress, store: (await this.store()).description };
    try {
      const client = await this.client();
      await client.connection.withDeadline(Date.now() + 3000, () => client.workflowService.getSystemInfo({}));
      if (this.down) this.reconnectedAt = new Date().toISOString();
      this.down = null;
      return { ...base, temporal: 'ok', since: null, error: null, reconnected_at: this.reconnectedAt };
    } catch (e) {
      this.reset(e);
      return { ...base, temporal: 'down', since: this.down!.since, error: this.down!.error, reconnected_at: null };
    }
  }

  private async manifest(id: string): Promise<SweepManifest | null> {
    const store = await this.store();
    const key = sweepKey(id);
    const body = await store.get(key);
    if (!body) return null;
    const hit = this.manifestCache.get(key);
    if (hit && hit.body.equals(body)) return hit.manifest;
    const manifest = parseManifest(body, key, store.description);
    this.manifestCache.set(key, { body, manifest });
    return manifest;
  }

  private async manifests(): Promise<SweepManifest[]> {
    const store = await this.store();
    const keys = (await store.list(SWEEPS_PREFIX)).filter((k) => sweepIdOfKey(k) !== null);
    const out: SweepManifest[] = [];
    for (const k of keys) {
      const m = await this.manifest(sweepIdOfKey(k)!).catch(() => null); // one bad manifest hides nothing else
      if (m) out.push(m);
    }
    return out.sort((a, b) => (a.created_at < b.created_at ? 1 : -1));
  }

  async sweeps(): Promise<SweepSummary[]> {
    const manifests = await this.manifests();
    const client = await this.client();
    const control = await queuePollers(client, this.config.namespace, controlQueue(this.config), 'workflow').catch(
      () => null,
    );
    let served = pollersAlive(control);
    const out: SweepSummary[] = [];
    for (const m of manifests) {
      const { summary, notAnswering } = await this.summary(client, m, served, control?.lastSeen ?? null);
      if (notAnswering) served = false; // its workers just died: do not wait 2 s per sweep
      out.push(summary);
    }
    return out;
  }

  private async summary(
    client: Client,
    m: SweepManifest,
    served: boolean,
    lastSeen: Date | null,
  ): Promise<{ summary: SweepSummary; status: SweepStatus | null; closed: string | null; notAnswering: boolean }> {
    const base: SweepSummary = {
      sweep_id: m.sweep_id,
      recipe: m.recipe,
      total: m.runs.length,
      created_at: m.created_at,
      started_at: null,
      finished_at: null,
      state: 'not started',
      counts: null,
      paused: false,
      note: null,
    };
    let d;
    try {
      d = await client.workflow.getHandle(m.sweep_id).describe();
    } catch {
      return { summary: base, status: null, closed: null, notAnswering: false };
    }
    base.started_at = d.startTime.toISOString();
    base.finished_at = d.closeTime?.toISOString() ?? null;
    const waiting = (): SweepSummary => ({
      ...base,
      state: d.historyLength <= 2 ? 'waiting' : 'running',
      note: notPolledLine(m.queues.control ?? controlQueue(this.config), lastSeen, true),
    });
    if (d.status.name === 'RUNNING' && !served)
      return { summary: waiting(), status: null, closed: null, notAnswering: true };
    try {
      const { status, closed } = await sweepStatus(client, m.sweep_id);
      const summary = { ...base, state: sweepState(status, closed), counts: status.counts, paused: status.paused };
      return { summary, status, closed, notAnswering: false };
    } catch (e) {
      if (e instanceof SweepNotAnswering) return { summary: waiting(), status: null, closed: null, notAnswering: true };
      return {
        summary: { ...base, state: d.status.name.toLowerCase() },
        status: null,
        closed: d.status.name,
        notAnswering: false,
      };
    }
  }

  /** Result records of these runs (cached: write-once) and their failure records (read again each time). */
  private async records(
    runs: PlannedRun[],
  ): Promise<{ rec: Map<string, ResultRecord>; failed: Map<string, ResultRecord> }> {
    const store = await this.store();
    const have = new Set(await store.list(RESULTS_PREFIX));
    const failedKeys = new Set(await store.list('failed/'));
    const failed = new Map<string, ResultRecord>();
    await mapPool(runs, 32, async (r) => {
      if (!this.results.has(r.id) && have.has(resultKey(r.id))) {
        const rec = await readResult(store, r.id).catch(() => null);
        if (rec) this.results.set(r.id, rec);
      }
      if (!this.results.has(r.id) && failedKeys.has(failureKey(r.id))) {
        const f = parseRecord(await store.get(failureKey(r.id)));
        if (f) failed.set(r.id, f);
      }
    });
    const rec = new Map(runs.flatMap((r) => (this.results.has(r.id) ? [[r.id, this.results.get(r.id)!]] : [])));
    return { rec, failed };
  }

  /** Reads every sweep's result records into the cache (the server starts it): a first visit is then fast. */
  async warm(): Promise<number> {
    const runs = (await this.manifests()).flatMap((m) => m.runs);
    await this.records(runs);
    return this.results.size;
  }

  /** Keeps sampling a sweep's running runs for a while, so their curves grow between page refreshes too. */
  private watch(sweepId: string): void {
    this.watched.set(sweepId, Date.now() + WATCH_MS);
    if (this.sampler) return;
    this.sampler = setInterval(() => void this.sample().catch(() => undefined), SAMPLE_MS);
    this.sampler.unref();
  }

  private async sample(): Promise<void> {
    const client = this.conn?.client; // never dials: a page request does
    if (this.sampling || !client) return;
    this.sampling = true;
    try {
      for (const [id, until] of [...this.watched]) {
        const st = until > Date.now() ? await sweepStatus(client, id).catch(() => null) : null;
        if (!st || st.closed) {
          if (until <= Date.now() || st?.closed) this.watched.delete(id);
          continue;
        }
        for (const p of await runProgress(client, st.status.running)) this.tracker.observe(p);
      }
    } finally {
      this.sampling = false;
    }
  }

  async sweep(id: string): Promise<SweepView | null> {
    const m = await this.manifest(id);
    if (!m) return null;
    const client = await this.client();
    const { summary, status, closed } = await this.summary(client, m, true, null);
    if (!closed && status) this.watch(id);
    const { rec, failed } = await this.records(m.runs);
    const progress = new Map<string, RunProgress>();
    for (const p of await runProgress(client, status?.running ?? [])) {
      this.tracker.observe(p);
      progress.set(p.run_id, p);
    }
    const runs = m.runs.map((r) => {
      const live = runState(r.id, rec.has(r.id), status, failed.get(r.id) ?? null, closed !== null);
      const state = live === 'running' && progress.get(r.id)?.queued ? 'queued' : live; // waits for a free slot
      const outcome = status?.failed.find((f) => f.run_id === r.id)?.message ?? null;
      return rowView(r, state, rec.get(r.id) ?? null, failed.get(r.id) ?? null, progress.get(r.id), outcome);
    });
    return { summary, runs };
  }

  async run(sweepId: string, runId: string): Promise<RunView | null> {
    const store = await this.store();
    const m = await this.manifest(sweepId);
    const planned = m?.runs.find((r) => r.id === runId);
    if (!m || !planned) return null;
    const { rec, failed } = await this.records([planned]);
    const result = rec.get(runId) ?? null;
    const failure = result ? null : (failed.get(runId) ?? null);
    const { state, progress } = await this.liveState(runId, result, failure);
    if (state === 'running') this.watch(sweepId);
    const recorded = result ?? failure;
    return {
      run_id: runId,
      sweep_id: sweepId,
      labels: planned.labels,
      spec: planned.spec,
      state,
      phase: progress?.queued ? 'queued for a free slot' : (progress?.phase ?? null),
      step: progress?.step ?? result?.curve.at(-1)?.step ?? null,
      total_steps: progress?.total_steps ?? planned.spec.training.max_steps ?? null,
      attempt: progress?.attempt ?? recorded?.timings.attempts ?? null,
      result,
      failure,
      checkpoints: await listCheckpoints(store, runId).catch(() => []),
      logs: await this.logs(store, runId),
      curve: result && result.curve.length > 0 ? result.curve : this.tracker.curve(runId),
      evals: this.evals(runId, result),
      export_command: `rankflow export ${runId} --out adapters/${runId}`,
    };
  }

  private evals(runId: string, result: ResultRecord | null): EvalPoint[] {
    const seen = this.tracker.evalPoints(runId);
    if (seen.length > 0 || !result || result.status !== 'succeeded') return seen;
    const last = result.curve.at(-1)?.step ?? result.spec.training.max_steps ?? 0;
    const pts: EvalPoint[] = [];
    if (result.best_step !== null && result.best_step !== last)
      pts.push({ step: result.best_step, metrics: result.best_metrics });
    pts.push({ step: last, metrics: result.metrics });
    return pts.sort((a, b) => a.step - b.step);
  }

  /** A run's state from its own workflow (running: with its heartbeat), else from its records. */
  private async liveState(
    runId: string,
    result: ResultRecord | null,
    failure: ResultRecord | null,
  ): Promise<{ state: string; progress: RunProgress | null }> {
    if (result) return { state: 'succeeded', progress: null };
    const client = await this.client();
    let d;
    try {
      d = await client.workflow.getHandle(runId).describe();
    } catch {
      return { state: failure ? 'failed' : 'pending', progress: null };
    }
    if (d.status.name === 'RUNNING') {
      const [p] = await runProgress(client, [runId]);
      if (p) this.tracker.observe(p);
      return { state: 'running', progress: p ?? null };
    }
    if (failure) return { state: 'failed', progress: null };
    return { state: d.status.name === 'CANCELLED' ? 'cancelled' : d.status.name.toLowerCase(), progress: null };
  }

  private async logs(store: ArtifactStore, runId: string): Promise<RunView['logs']> {
    const keys = await store.list(logsPrefix(runId));
    const attempt = (k: string): number => Number(/attempt-(\d+)\.log$/.exec(k)?.[1] ?? NaN);
    const logs = [];
    for (const key of keys.filter((k) => Number.isFinite(attempt(k))).sort((a, b) => attempt(a) - attempt(b))) {
      const body = (await store.get(key)) ?? Buffer.alloc(0);
      const truncated = body.length > LOG_TAIL;
      logs.push({
        attempt: attempt(key),
        key,
        text: body.subarray(Math.max(0, body.length - LOG_TAIL)).toString('utf8'),
        truncated,
      });
    }
    return logs;
  }

  async log(runId: string, attempt: number): Promise<string | null> {
    const body = await (await this.store()).get(`${logsPrefix(runId)}attempt-${attempt}.log`);
    return body ? body.toString('utf8') : null;
  }

  private async selection(sweepId: string) {
    return await readSelection(await this.store(), [sweepId]);
  }

  async table(sweepId: string, format: string): Promise<string> {
    if (!(FORMATS as readonly string[]).includes(format))
      throw new UserError(`format ${format}: use ${FORMATS.join(', ')}`);
    const sel = await this.selection(sweepId);
    return render(buildTable(sel.runs, {}), format as Format);
  }

  async tableView(sweepId: string): Promise<TableView> {
    const sel = await this.selection(sweepId);
    const html = render(buildTable(sel.runs, {}), 'html');
    const body = /<body>\n?([\s\S]*)<\/body>/.exec(html)?.[1] ?? '';
    return { html: body.replace(/<h1>[\s\S]*?<\/h1>\n?/, ''), notes: sel.notes };
  }

  async plots(sweepId: string): Promise<PlotView[]> {
    const sel = await this.selection(sweepId);
    const out: PlotView[] = [];
    for (const kind of PLOT_KINDS) {
      try {
        out.push({ kind, svg: await specToSvg(plotSpec(kind, sel.runs, null, 'final')), skipped: null });
      } catch (e) {
        if (!(e instanceof TableInputError)) throw e;
        out.push({ kind, svg: null, skipped: e.message });
      }
    }
    return out;
  }

  async plotFile(sweepId: string, kind: string, format: 'svg' | 'png'): Promise<Buffer | string | null> {
    if (!(PLOT_KINDS as readonly string[]).includes(kind)) return null;
    const sel = await this.selection(sweepId);
    let svg;
    try {
      svg = await specToSvg(plotSpec(kind as PlotKind, sel.runs, null, 'final'));
    } catch (e) {
      if (e instanceof TableInputError) return null;
      throw e;
    }
    return format === 'svg' ? svg : await svgToPng(svg);
  }

  /** What `rankflow pause|unpause|cancel|resume --detach` do. */
  async act(sweepId: string, action: SweepAction): Promise<string> {
    const client = await this.client();
    if (action === 'resume') return await this.resume(client, sweepId);
    const signal = { pause: pauseSignal, unpause: resumeSignal, cancel: cancelSignal }[action];
    await client.workflow.getHandle(sweepId).signal(signal);
    return {
      pause: 'paused',
      unpause: 'unpaused',
      cancel: 'cancel requested (running runs checkpoint, then stop)',
    }[action];
  }

  private async resume(client: Client, sweepId: string): Promise<string> {
    const m = await this.manifest(sweepId);
    if (!m) throw new UserError(`no sweep \`${sweepId}\``);
    let note = '';
    if (this.config.embedded) {
      const queue = m.queues.cpu !== this.config.queues.cpu ? m.queues.cpu : undefined;
      note = `; ${await ensureBackgroundWorker(this.config, defaultCpuSlots(), queue)}`;
    }
    const fresh = await startSweep(client, this.config, {
      sweepId,
      recipe: m.recipe,
      runs: m.runs,
      concurrency: defaultConcurrency(this.config),
    });
    return `${fresh ? 'resumed' : 'already running'}${note}`;
  }

  async close(): Promise<void> {
    if (this.sampler) clearInterval(this.sampler);
    this.sampler = null;
    await this.conn?.close().catch(() => undefined);
    this.conn = null;
  }
}
