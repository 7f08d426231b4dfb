/**
 * `sweepWorkflow`: a sliding window of run workflows with a concurrency limit; pages through the sweep manifest;
 * `status` query; `pause`/`resume`/`cancel` signals; continue-as-new keeps the history small.
 * Stages: a run that reads another run's artifacts waits (outside the window) until that run succeeded, and is
 * recorded as `blocked` when it failed; `rankflow resume` re-runs the failed one, then it.
 * Children are abandoned-on-close and report back by signal, so they survive the parent rolling over.
 *
 * The bookkeeping is `SweepBook` (pure); this file does the Temporal part: handlers, starting children,
 * activities, waiting, rolling over.
 */
import {
  CancellationScope,
  ChildWorkflowCancellationType,
  ParentClosePolicy,
  WorkflowIdReusePolicy,
  condition,
  continueAsNew,
  getExternalWorkflowHandle,
  isCancellation,
  setHandler,
  startChild,
  workflowInfo,
} from '@temporalio/workflow';
import { WorkflowExecutionAlreadyStartedError } from '@temporalio/common';
import type { RunInput, SweepInput, SweepStatus } from '../schemas/orchestration.js';
import { light } from './light.js';
import { failureInfo, runWorkflow } from './run.js';
import { cancelSignal, pauseSignal, resumeSignal, runFinished, statusQuery } from './signals.js';
import { type Entry, SweepBook } from './sweep-book.js';

function installHandlers(book: SweepBook): void {
  setHandler(runFinished, (o) => book.finish(o));
  setHandler(pauseSignal, () => void (book.paused = true));
  setHandler(resumeSignal, () => void (book.paused = false));
  setHandler(cancelSignal, () => void (book.cancelled = true));
  setHandler(statusQuery, () => book.status());
}

function runInputOf(book: SweepBook, entry: Entry): RunInput {
  return { ...entry.input, parent: workflowInfo().workflowId, policy: book.input.policy };
}

/** Starts one run as a child workflow, or waits for it when another sweep already runs it. */
async function launch(book: SweepBook, entry: Entry): Promise<void> {
  const runInput = runInputOf(book, entry);
  book.running.add(runInput.run_id);
  try {
    const child = await startChild(runWorkflow, {
      workflowId: runInput.run_id,
      args: [runInput],
      parentClosePolicy: ParentClosePolicy.ABANDON,
      cancellationType: ChildWorkflowCancellationType.ABANDON,
      workflowIdReusePolicy: WorkflowIdReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY,
    });
    // The child reports by signal (which survives continue-as-new); its close event is a second path
    // within this run, for a child that closed without reporting.
    void child.result().then(
      (o) => book.finish(o),
      (e: unknown) =>
        book.finish({
          run_id: runInput.run_id,
          state: isCancellation(e) ? 'cancelled' : 'failed',
          metric: null,
          message: failureInfo(e).message,
        }),
    );
  } catch (err) {
    if (!(err instanceof WorkflowExecutionAlreadyStartedError)) throw err;
    // Another sweep runs (or has completed) this very run: wait for it instead of training twice.
    book.externalWaits++;
    void light
      .awaitExternalRun(runInput.run_id)
      .then((o) => book.finish(o))
      .finally(() => book.externalWaits--);
  }
}

/** A run whose upstream run failed: recorded as blocked (tables and `status` show it), never started. */
async function block(book: SweepBook, entry: Entry, dep: string): Promise<void> {
  const message = `blocked: upstream run ${dep} failed; \`rankflow resume\` runs it again, then this one`;
  await light.recordBlocked(runInputOf(book, entry), dep, message);
  book.blocked(entry);
}

/** A waiting run's manifest entry: held since it was read, or read again after continue-as-new. */
async function waitingEntry(book: SweepBook, index: number, held: Entry | null): Promise<Entry> {
  return held ?? (await light.loadSweepPage(book.input.sweep_id, index, 1))[0]!;
}

/** Waiting runs whose upstream runs are settled: start the ready ones (within `room`), block the others. */
async function releaseWaiting(book: SweepBook, room: number): Promise<Entry[]> {
  const ready: Entry[] = [];
  for (const [index, held] of [...book.waiting]) {
    const entry = await waitingEntry(book, index, held);
    book.waiting.set(index, entry);
    const r = book.readinessOf(entry);
    if (r.state === 'blocked') {
      book.waiting.delete(index);
      await block(book, entry, r.dep);
    } else if (r.state === 'ready' && ready.length < room) {
      book.waiting.delete(index);
      ready.push(entry);
    }
  }
  return ready;
}

/** The stuck waiting runs (`SweepBook.stuck`): blocked rather than waited for forever. */
async function blockStuck(book: SweepBook): Promise<void> {
  for (const [index, held] of [...book.waiting]) {
    book.waiting.delete(index);
    const entry = await waitingEntry(book, index, held);
    await block(book, entry, book.unsettledDep(entry));
  }
}

/** The next entry of the manifest, a page read at a time (undefined past its end). */
async function nextEntry(book: SweepBook): Promise<Entry | undefined> {
  if (book.buffer.length === 0)
    book.buffer = await light.loadSweepPage(book.input.sweep_id, book.nextIndex, book.input.page_size);
  return book.buffer.shift();
}

/** Fills the free slots; the children of one batch start together (one workflow task, not one each). */
async function fillSlots(book: SweepBook): Promise<void> {
  const { concurrency } = book.input;
  const batch: Entry[] =
    book.waiting.size && !book.paused ? await releaseWaiting(book, concurrency - book.running.size) : [];
  while (book.mayRead(batch.length)) {
    const entry = await nextEntry(book);
    if (!entry) break;
    const r = book.admit(entry);
    if (r.state === 'ready') batch.push(entry);
    else if (r.state === 'blocked') await block(book, entry, r.dep);
  }
  await Promise.all(batch.map((e) => launch(book, e)));
}

/** Cancel: every running child is cancelled, and the sweep ends once they have reported (or after 10 min). */
async function cancelAll(book: SweepBook): Promise<SweepStatus> {
  await CancellationScope.nonCancellable(async () => {
    for (const id of book.running)
      await getExternalWorkflowHandle(id)
        .cancel()
        .catch(() => undefined);
  });
  await condition(() => book.running.size === 0, '10 minutes');
  return book.status();
}

/** Time to continue as new. workflowInfo() is read afresh each time: its history length grows with every activation. */
function rollOverDue(book: SweepBook): boolean {
  const info = workflowInfo();
  return (
    book.externalWaits === 0 && (info.historyLength > book.input.max_history_events || info.continueAsNewSuggested)
  );
}

export async function sweepWorkflow(input: SweepInput): Promise<SweepStatus> {
  const book = new SweepBook(input);
  installHandlers(book);
  for (;;) {
    if (book.cancelled) return await cancelAll(book);
    if (book.allDone()) return book.status();
    if (book.stuck()) {
      await blockStuck(book);
      continue;
    }
    if (rollOverDue(book)) await continueAsNew<typeof sweepWorkflow>({ ...input, state: book.carried() });
    await fillSlots(book);
    await condition(() => book.awake() || rollOverDue(book));
  }
}
