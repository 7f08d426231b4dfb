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

/** Whether any worker has polled `queue` for activities recently (true when the server cannot tell). */
export async function queueHasPollers(client: Client, namespace: string, queue: string): Promise<boolean> {
  try {
    const r = await client.workflowService.describeTaskQueue({
      namespace,
      taskQueue: { name: queue, kind: TASK_QUEUE_KIND_NORMAL },
      taskQueueType: TASK_QUEUE_TYPE_ACTIVITY,
    });
    return (r.pollers?.length ?? 0) > 0;
  } catch {
    return true;
  }
}

/** One line per queue that no worker polls, saying how to start one. */
export async function unpolledQueueWarnings(
  client: Client,
  namespace: string,
  queues: readonly string[],
): Promise<string[]> {
  const idle = [];
  for (const q of queues) if (!(await queueHasPollers(client, namespace, q))) idle.push(q);
  return idle.map((q) => `no worker polls queue \`${q}\`: start \`rankflow worker --queue ${q}\``);
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
  if (await queueHasPollers(client, namespace, control)) return [];
  return [`no worker serves the sweeps (control queue \`${control}\`): start \`rankflow worker\``];
}
