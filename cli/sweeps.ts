/**
 * Submitting and following sweeps: the manifest goes to the artifact store first, then the sweep
 * workflow starts (or, if that sweep is already running, rankflow attaches to it).
 */
import { type Client, WorkflowExecutionAlreadyStartedError, WorkflowNotFoundError } from '@temporalio/client';
import { WorkflowIdConflictPolicy, WorkflowIdReusePolicy, defaultPayloadConverter } from '@temporalio/common';
import proto from '@temporalio/proto';
import type { ArtifactStore } from '../store/store.js';
import { UserError } from '../core/errors.js';
import { jsonBuffer } from '../core/json-chunks.js';
import { sweepKey } from '../store/keys.js';
import { sweepWorkflow, statusQuery } from '../workflows/index.js';
import type { PlannedRun } from '../schemas/runspec.js';
import { SweepManifest } from '../schemas/orchestration.js';
import type { RunInput, SweepInput, SweepStatus } from '../schemas/orchestration.js';
import { TrainHeartbeat } from '../schemas/orchestration.js';
import { controlQueue } from './config.js';
import type { Config } from './config.js';

export type RunPolicy = RunInput['policy'];

export const DEFAULT_POLICY: RunPolicy = {
  max_attempts: 5,
  heartbeat_timeout_s: 60,
  run_timeout_s: 7 * 24 * 3600,
  keep_checkpoints: 2,
  terminate_grace_s: 60,
};

export interface SubmitOptions {
  sweepId: string;
  recipe: string | null;
  runs: PlannedRun[];
  concurrency: number;
  policy?: Partial<RunPolicy>;
  pageSize?: number;
  maxHistoryEvents?: number;
}

export async function writeManifest(store: ArtifactStore, config: Config, o: SubmitOptions): Promise<SweepManifest> {
  const manifest: SweepManifest = {
    schema: 'rankflow.sweep/v1',
    sweep_id: o.sweepId,
    recipe: o.recipe,
    created_at: new Date().toISOString(),
    queues: config.queues,
    runs: o.runs,
  };
  await store.put(sweepKey(o.sweepId), jsonBuffer(SweepManifest.parse(manifest)));
  return manifest;
}

/** The sweep manifest, or null when there is none; a manifest that is not one is a one-line UserError. */
export async function readManifest(store: ArtifactStore, sweepId: string): Promise<SweepManifest | null> {
  const body = await store.get(sweepKey(sweepId));
  return body ? parseManifest(body, sweepKey(sweepId), store.description) : null;
}

/** A manifest's stored bytes as a manifest (`key` and `where` name it in the one-line UserError). */
export function parseManifest(body: Buffer, key: string, where: string): SweepManifest {
  let raw: unknown;
  try {
    raw = JSON.parse(body.toString('utf8'));
  } catch (e) {
    throw new UserError(`${key} in ${where} is not valid JSON (${(e as Error).message})`);
  }
  const r = SweepManifest.safeParse(raw);
  if (!r.success) {
    const i = r.error.issues[0];
    throw new UserError(
      `${key} in ${where} is not a sweep manifest (${i?.path.join('.') || 'manifest'}: ${i?.message})`,
    );
  }
  return r.data;
}

/** Starts the sweep workflow; returns false when an execution with that id was already running (attached). */
export async function startSweep(client: Client, config: Config, o: SubmitOptions): Promise<boolean> {
  const input: SweepInput = {
    sweep_id: o.sweepId,
    total: o.runs.length,
    concurrency: o.concurrency,
    page_size: o.pageSize ?? 50,
    max_history_events: o.maxHistoryEvents ?? 8000,
    policy: { ...DEFAULT_POLICY, ...o.policy },
    state: null,
  };
  try {
    // A running sweep with this id makes the start fail (conflict policy FAIL) rather than attach silently: of
    // two concurrent submits of one recipe, exactly one starts it and the other says it is already running.
    await client.workflow.start(sweepWorkflow, {
      taskQueue: controlQueue(config),
      workflowId: o.sweepId,
      args: [input],
      workflowIdReusePolicy: WorkflowIdReusePolicy.ALLOW_DUPLICATE,
      workflowIdConflictPolicy: WorkflowIdConflictPolicy.FAIL,
    });
    return true;
  } catch (e) {
    if (e instanceof WorkflowExecutionAlreadyStartedError) return false;
    throw e;
  }
}

export interface RunProgress {
  run_id: string;
  step: number | null;
  total_steps: number | null;
  loss: number | null;
  attempt: number | null;
  phase?: 'loading' | 'training' | 'evaluating' | null;
  eval_done?: number | null;
  eval_total?: number | null;
  /** The latest evaluation of the attempt (step and metrics), when the runtime reported one. */
  eval?: { step: number; metrics: Record<string, number> } | null;
  /** Its training waits in the task queue for a free slot (a sweep starts runs ahead of its slots). */
  queued?: boolean;
}

/** A run as a person names it: `lora r=8 glue/sst2 seed 0` (from the sweep manifest's labels). */
export function runLabel(
  labels: { method: string; rank: number | null; dataset: string; seed: number; setting?: string } | undefined,
): string {
  if (!labels) return '';
  return `${labels.method}${labels.rank !== null ? ` r=${labels.rank}` : ''} ${labels.dataset} seed ${labels.seed}${labels.setting ? ` ${labels.setting}` : ''}`;
}

/** One line of a running run: who it is, then step/total and loss, or what it is doing before the first step. */
export function formatRunProgress(p: RunProgress, label: string): string {
  const who = label ? `${label}  (${p.run_id})` : p.run_id;
  const attempt = p.attempt && p.attempt > 1 ? `  attempt ${p.attempt}` : '';
  if (p.queued) return `${who}  waiting for a free slot${attempt}`;
  if (p.phase === 'evaluating' && p.eval_total) {
    return `${who}  step ${p.step ?? 0}/${p.total_steps ?? '?'}  evaluating ${p.eval_done ?? 0}/${p.eval_total}${attempt}`;
  }
  if (p.step === null || (p.phase === 'loading' && !p.loss)) return `${who}  loading model and data${attempt}`;
  const loss = p.loss === null ? '' : `  loss ${p.loss.toFixed(4)}`;
  return `${who}  step ${p.step}/${p.total_steps ?? '?'}${loss}${attempt}`;
}

function progressOf(id: string, hb: TrainHeartbeat | null, attempt: number | null): RunProgress {
  return {
    run_id: id,
    step: hb?.step ?? null,
    total_steps: hb?.total_steps ?? null,
    loss: hb?.loss ?? null,
    attempt,
    phase: hb?.phase ?? null,
    eval_done: hb?.eval_done ?? null,
    eval_total: hb?.eval_total ?? null,
    eval: hb?.eval ?? null,
  };
}

/** Per-run step and loss of the running runs, from the heartbeats of their training activities. */
export async function runProgress(client: Client, runIds: string[]): Promise<RunProgress[]> {
  return await Promise.all(
    runIds.map(async (id) => {
      try {
        const d = await client.workflow.getHandle(id).describe();
        const act = d.raw.pendingActivities?.[0];
        const payload = act?.heartbeatDetails?.payloads?.[0];
        const hb = payload ? TrainHeartbeat.safeParse(defaultPayloadConverter.fromPayload(payload)) : null;
        const queued =
          act?.activityType?.name === 'train' &&
          act.state === proto.temporal.api.enums.v1.PendingActivityState.PENDING_ACTIVITY_STATE_SCHEDULED;
        return { ...progressOf(id, hb?.success ? hb.data : null, act?.attempt ?? null), ...(queued ? { queued } : {}) };
      } catch {
        return { run_id: id, step: null, total_steps: null, loss: null, attempt: null };
      }
    }),
  );
}

/** A running sweep whose workflow did not answer a status query in time: no worker serves its queue. */
export class SweepNotAnswering extends Error {
  constructor(
    readonly sweepId: string,
    readonly queue: string,
  ) {
    super(`sweep ${sweepId} did not answer: no worker serves queue ${queue}`);
    this.name = 'SweepNotAnswering';
  }
}

/**
 * The sweep's status: its result when it has closed, else the answer of its `status` query, which a worker
 * must serve: a query not answered within `queryTimeoutMs` (default 2 s) throws SweepNotAnswering instead
 * of hanging for the server's 30 s.
 */
export async function sweepStatus(
  client: Client,
  sweepId: string,
  opts: { queryTimeoutMs?: number } = {},
): Promise<{ status: SweepStatus; closed: string | null }> {
  const handle = client.workflow.getHandle(sweepId);
  const d = await handle.describe();
  const closed = d.status.name === 'RUNNING' ? null : d.status.name;
  if (closed === 'COMPLETED') return { status: (await handle.result()) as SweepStatus, closed };
  try {
    const deadline = Date.now() + (opts.queryTimeoutMs ?? 2_000);
    return { status: await client.connection.withDeadline(deadline, () => handle.query(statusQuery)), closed };
  } catch (e) {
    if (e instanceof WorkflowNotFoundError) throw e;
    throw new SweepNotAnswering(sweepId, d.taskQueue);
  }
}

/** A sweep's counts in one line; `queued`: how many of its running runs wait for a free slot (`runProgress`). */
export function formatCounts(s: SweepStatus, queued = 0): string {
  const c = s.counts;
  const waiting = Math.min(queued, c.running);
  const blocked = c.blocked ?? 0;
  const done = c.succeeded + c.skipped + c.failed + c.cancelled + blocked;
  return (
    `${done}/${s.total} done: ${c.succeeded} succeeded, ${c.skipped} skipped, ${c.failed} failed` +
    (c.cancelled ? `, ${c.cancelled} cancelled` : '') +
    (blocked ? `, ${blocked} blocked (an upstream run failed; \`rankflow resume\` retries it, then them)` : '') +
    `; ${c.running - waiting} running${waiting ? `, ${waiting} queued for a slot` : ''}, ${c.pending} pending${s.paused ? ' (paused)' : ''}${s.cancelled ? ' (cancelling)' : ''}`
  );
}

/** Follows a sweep until its workflow closes, printing progress; returns the final status. */
export async function followSweep(
  client: Client,
  sweepId: string,
  opts: { intervalMs?: number; out?: NodeJS.WriteStream; signal?: AbortSignal; labels?: Map<string, string> } = {},
): Promise<{ status: SweepStatus; closed: string }> {
  const out = opts.out ?? process.stderr;
  const tty = Boolean(out.isTTY);
  let last = '';
  for (;;) {
    let st;
    try {
      st = await sweepStatus(client, sweepId);
    } catch (e) {
      if (e instanceof WorkflowNotFoundError) throw e;
      await new Promise((r) => setTimeout(r, opts.intervalMs ?? 1000));
      continue;
    }
    const progress = await runProgress(client, st.status.running.slice(0, 32));
    const queued = progress.filter((p) => p.queued).length;
    const runs = progress
      .filter((p) => !p.queued)
      .slice(0, 8)
      .map((p) => `  ${formatRunProgress(p, opts.labels?.get(p.run_id) ?? '')}`)
      .join('\n');
    const text = `${sweepId}: ${formatCounts(st.status, queued)}${runs ? '\n' + runs : ''}`;
    if (tty) {
      out.write(`\x1b[J${text}\n\x1b[${text.split('\n').length}A`);
    } else if (text.split('\n')[0] !== last) {
      out.write(text.split('\n')[0] + '\n');
      last = text.split('\n')[0]!;
    }
    if (st.closed) {
      if (tty) out.write(`\x1b[J${sweepId}: ${formatCounts(st.status)}\n`);
      return { status: st.status, closed: st.closed };
    }
    if (opts.signal?.aborted) return { status: st.status, closed: 'DETACHED' };
    await new Promise((r) => setTimeout(r, opts.intervalMs ?? 1000));
  }
}

/**
 * A sweep's state in one word: `running`, `cancelling` (a cancel is in progress), `failed` (closed with
 * every run failed), else the workflow's own close status (`completed`, `cancelled`, `terminated`, ...).
 */
export function sweepState(s: SweepStatus, closed: string | null): string {
  if (!closed) return s.cancelled ? 'cancelling' : 'running';
  const c = s.counts;
  // A cancelled sweep's workflow completes (it returns its counts): it is `cancelled`, not `completed`.
  if (closed === 'COMPLETED' && s.cancelled) return 'cancelled';
  if (closed === 'COMPLETED' && s.total > 0 && c.failed === s.total) return 'failed';
  return closed.toLowerCase();
}

/** The first line of a failure message: never a Python or Temporal stack trace. */
export function firstLine(message: string | null | undefined): string {
  const line =
    (message ?? '').split('\n').find((l) => l.trim() !== '' && !/^Traceback|^\s+at |^\s+File "/.test(l)) ?? '';
  return line.trim();
}
