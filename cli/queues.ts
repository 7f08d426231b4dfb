/**
 * Which task queues a sweep's runs wait on, and whether any worker polls them (Temporal's DescribeTaskQueue
 * lists the pollers seen in the last minutes), so `submit` and `status` can say "no worker polls queue `x`"
 * instead of sitting silently at 0/N.
 */
import type { Client } from '@temporalio/client';
import type { PlannedRun } from '../schemas/runspec.js';

/** The training queues of a sweep's runs (the queue of each run's device class, as the sweep schedules them). */
export function trainingQueues(queues: Record<string, string>, runs: readonly Pick<PlannedRun, 'spec'>[]): string[] {
  const out = new Set<string>();
  for (const r of runs) out.add(queues[r.spec.device] ?? queues['cpu'] ?? 'rankflow-cpu');
  return [...out].sort();
}

// temporal.api.enums.v1 TaskQueueKind.NORMAL and TaskQueueType.ACTIVITY (the proto's stable numbers)
const TASK_QUEUE_KIND_NORMAL = 1;
const TASK_QUEUE_TYPE_ACTIVITY = 2;

const TASK_QUEUE_TYPE_WORKFLOW = 1;

/** A poller counts as alive when it polled within this long (a live worker re-polls at least every ~70 s). */
export const POLLER_ALIVE_MS = 90_000;

export interface Pollers {
  /** Pollers Temporal remembers (it keeps them for minutes after a worker dies). */
  count: number;
  /** The most recent poll, or null when none is remembered. */
  lastSeen: Date | null;
}

/** Who polled `queue` (workflow or activity tasks) and when last; null when the server cannot tell. */
export async function queuePollers(
  client: Client,
  namespace: string,
  queue: string,
  type: 'workflow' | 'activity' = 'activity',
): Promise<Pollers | null> {
  try {
    const r = await client.connection.withDeadline(Date.now() + 3_000, () =>
      client.workflowService.describeTaskQueue({
        namespace,
        taskQueue: { name: queue, kind: TASK_QUEUE_KIND_NORMAL },
        taskQueueType: type === 'workflow' ? TASK_QUEUE_TYPE_WORKFLOW : TASK_QUEUE_TYPE_ACTIVITY,
      }),
    );
    let last = 0;
    for (const p of r.pollers ?? []) {
      const t = p.lastAccessTime;
      if (t) last = Math.max(last, Number(t.seconds ?? 0) * 1000 + Math.floor((t.nanos ?? 0) / 1e6));
    }
    return { count: r.pollers?.length ?? 0, lastSeen: last ? new Date(last) : null };
  } catch {
    return null;
  }
}

/** `last seen 3 min ago`, `last seen 12 s ago`, `never seen`. */
export function lastSeenText(lastSeen: Date | null, now = Date.now()): string {
  if (!lastSeen) return 'no worker seen for minutes';
  const s = Math.max(0, Math.round((now - lastSeen.getTime()) / 1000));
  return `last seen ${s < 120 ? `${s} s` : s < 7200 ? `${Math.round(s / 60)} min` : `${Math.round(s / 3600)} h`} ago`;
}

/** "no worker is polling queue `q` (last seen …)" with how to start one. */
export function notPolledLine(queue: string, lastSeen: Date | null, control: boolean): string {
  const start = control ? '`rankflow worker`' : `\`rankflow worker --queue ${queue}\``;
  return `no worker is polling queue \`${queue}\` (${lastSeenText(lastSeen)}): start ${start}`;
}

/**
 * Whether a worker polls `queue` now: one polled within POLLER_ALIVE_MS (true when the server cannot tell).
 * Temporal remembers a dead worker's pollers for minutes, so a worker that died in the last ~90 s still
 * counts: callers that must know for sure ask it something with a short deadline (`sweepStatus`).
 */
export async function queueHasPollers(
  client: Client,
  namespace: string,
  queue: string,
  type: 'workflow' | 'activity' = 'activity',
): Promise<boolean> {
  return pollersAlive(await queuePollers(client, namespace, queue, type));
}

export function pollersAlive(p: Pollers | null, now = Date.now()): boolean {
  return p === null || (p.lastSeen !== null && now - p.lastSeen.getTime() < POLLER_ALIVE_MS);
}

/** One line per queue that no worker polls (with when one was last seen), saying how to start one. */
export async function unpolledQueueWarnings(
  client: Client,
  namespace: string,
  queues: readonly string[],
): Promise<string[]> {
  const lines = [];
  for (const q of queues) {
    const p = await queuePollers(client, namespace, q);
    if (!pollersAlive(p)) lines.push(notPolledLine(q, p?.lastSeen ?? null, false));
  }
  return lines;
}

/**
 * What to tell a person when nobody serves a sweep: one line per training queue no worker polls (its
 * `rankflow worker --queue` also serves the control queue), else one line when only the control queue
 * (the sweep workflows) has no worker.
 */
export async function servingWarnings(
  client: Client,
  namespace: string,
  control: string,
  training: readonly string[],
): Promise<string[]> {
  const idle = await unpolledQueueWarnings(
    client,
    namespace,
    training.filter((q) => q !== control),
  );
  if (idle.length > 0) return idle;
  const p = await queuePollers(client, namespace, control, 'workflow');
  return pollersAlive(p) ? [] : [notPolledLine(control, p?.lastSeen ?? null, true)];
}
