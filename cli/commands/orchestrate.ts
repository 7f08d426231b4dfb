/**
 * Orchestration commands: worker, status, ls, logs, cancel, pause, unpause, resume, services.
 * (`submit` lives in submit.ts.)
 */
import { type Client, WorkflowNotFoundError } from '@temporalio/client';
import type { SignalDefinition } from '@temporalio/common';
import type { Command } from '../command.js';
import { UserError } from '../../core/errors.js';
import { defineCommand, intFlag, runIdArg } from '../args.js';
import { controlQueue, resolveConfig } from '../config.js';
import type { Config } from '../config.js';
import { startWorker } from '../worker.js';
import { cancelSignal, pauseSignal, resumeSignal } from '../../workflows/index.js';
import {
  followSweep,
  formatCounts,
  formatRunProgress,
  readManifest,
  runLabel,
  runProgress,
  startSweep,
  sweepStatus,
  SweepNotAnswering,
  sweepState,
  firstLine,
} from '../sweeps.js';
import {
  notPolledLine,
  pollersAlive,
  queueHasPollers,
  queuePollers,
  servingWarnings,
  trainingQueues,
  unpolledQueueWarnings,
} from '../queues.js';
import { ResultRecord } from '../../schemas/result.js';
import {
  checkServices,
  defaultStateDir,
  readServicesFile,
  stopServices,
  temporalWebUi,
} from '../../services/embedded.js';
import { connect, defaultConcurrency, defaultCpuSlots, openConfiguredStore } from '../connect.js';
import { ensureBackgroundWorker, stopBackgroundWorkers } from '../background.js';
import { failureKey, logsPrefix, RESULTS_PREFIX, resultKey, SWEEPS_PREFIX, sweepIdOfKey } from '../../store/keys.js';

/** Kept here too: where `submit` and the tests have always imported them from. */
export { firstLine, sweepState };

function sweepArg(cmd: string, positionals: string[]): string {
  const id = positionals[0];
  if (!id || positionals.length > 1) throw new UserError(`${cmd}: expected one sweep id (see \`rankflow ls\`)`);
  return id;
}

async function withSweep<T>(cmd: string, id: string, fn: (client: Client, config: Config) => Promise<T>): Promise<T> {
  const config = await resolveConfig({ start: false });
  const { client, close } = await connect(config);
  try {
    return await fn(client, config);
  } catch (e) {
    if (e instanceof WorkflowNotFoundError)
      throw new UserError(`${cmd}: no sweep \`${id}\` on ${config.temporalAddress}; see \`rankflow ls\``);
    throw e;
  } finally {
    await close();
  }
}

/** Runs a worker in this process until SIGINT/SIGTERM. */
export const workerCommand = defineCommand({
  name: 'worker',
  summary: 'run a worker: serves sweeps and trains runs on its CPU or GPU slots',
  description: 'Starts a worker against the configured Temporal server and artifact store (or the embedded default).',
  maxArgs: 0,
  options: {
    'cpu-slots': { type: 'string', arg: 'N', help: 'train N runs at once on the CPU (default: 1)' },
    gpus: {
      type: 'string',
      arg: 'LIST',
      help: 'one slot per GPU id; each run sees only its GPU via CUDA_VISIBLE_DEVICES',
    },
    'runs-per-gpu': {
      type: 'string',
      arg: 'N',
      help: 'with --gpus: N runs at once on each GPU (small PEFT runs; see README "Several runs per GPU")',
    },
    queue: {
      type: 'string',
      arg: 'NAME',
      help: 'training task queue (default: the queue of the device class, rankflow-cpu / rankflow-gpu)',
    },
    'no-control': {
      type: 'boolean',
      help: 'do not serve the control queue (sweep and run workflows); for extra GPU hosts',
    },
    runtime: {
      type: 'string',
      arg: 'MODE',
      help: 'warm (default: runs forked from a runtime that imported torch once) or process (a fresh Python per run)',
    },
  },
  async run({ values }) {
    if (values.runtime !== undefined) {
      if (values.runtime !== 'warm' && values.runtime !== 'process')
        throw new UserError(`worker: --runtime is warm or process, got \`${values.runtime}\``);
      process.env.RANKFLOW_RUNTIME_MODE = values.runtime;
    }
    if (values.gpus && values['cpu-slots']) throw new UserError('worker: give either --gpus or --cpu-slots, not both');
    const gpus = values.gpus
      ?.split(',')
      .map((s) => s.trim())
      .filter(Boolean);
    if (gpus && gpus.some((g) => !/^\d+$/.test(g)))
      throw new UserError(`worker: --gpus expects ids like 0,1,2, got \`${values.gpus}\``);
    if (values['runs-per-gpu'] && !gpus) throw new UserError('worker: --runs-per-gpu needs --gpus');
    const slots: { gpus: string[]; runsPerGpu?: number } | { cpu: number } = gpus
      ? { gpus, runsPerGpu: intFlag('worker', 'runs-per-gpu', values['runs-per-gpu'], 1) }
      : { cpu: intFlag('worker', 'cpu-slots', values['cpu-slots'], 1) };
    const config = await resolveConfig();
    const w = await startWorker(config, { slots, queue: values.queue, control: !values['no-control'] });
    const desc =
      'gpus' in slots
        ? `GPUs ${slots.gpus.join(',')}${slots.runsPerGpu && slots.runsPerGpu > 1 ? `, ${slots.runsPerGpu} runs per GPU` : ''}`
        : `${slots.cpu} CPU slot(s)`;
    console.error(`rankflow worker: ${desc} on ${config.temporalAddress} (${config.source}); Ctrl-C stops it`);
    const stop = (): void => void w.shutdown();
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
    await w.done;
    return 0;
  },
});

/**
 * A running sweep that no worker serves: its workflow waits on the control queue (so it cannot even be queried)
 * or its runs on a training queue nobody polls. Null when the sweep is served (or closed, or unknown).
 */
async function notServed(
  client: Client,
  config: Config,
  id: string,
): Promise<{ runs: number; warnings: string[] } | null> {
  const d = await client.workflow.getHandle(id).describe();
  if (d.status.name !== 'RUNNING') return null;
  const manifest = await readManifest(await openConfiguredStore(config), id).catch(() => null);
  const control = manifest?.queues.control ?? controlQueue(config);
  if (await queueHasPollers(client, config.namespace, control, 'workflow')) return null;
  const training = manifest ? trainingQueues(manifest.queues, manifest.runs) : [];
  return {
    runs: manifest?.runs.length ?? 0,
    warnings: await servingWarnings(client, config.namespace, control, training),
  };
}

/** A running sweep whose workflow does not answer (its workers died a moment ago): say so, and what is recorded. */
async function printNotAnswering(client: Client, config: Config, e: SweepNotAnswering, json: boolean): Promise<number> {
  const p = await queuePollers(client, config.namespace, e.queue, 'workflow');
  const line = notPolledLine(e.queue, p?.lastSeen ?? null, true);
  const store = await openConfiguredStore(config);
  const manifest = await readManifest(store, e.sweepId).catch(() => null);
  let recorded: number | null = null;
  if (manifest) {
    const done = new Set(await store.list(RESULTS_PREFIX));
    recorded = manifest.runs.filter((r) => done.has(resultKey(r.id))).length;
  }
  if (json) console.log(JSON.stringify({ sweep_id: e.sweepId, state: 'running', recorded, warnings: [line] }, null, 2));
  else {
    const counts = manifest ? `${recorded}/${manifest.runs.length} results recorded; ` : '';
    console.log(`${e.sweepId} (running): ${counts}the sweep does not answer`);
    console.log(`  warning: ${line}`);
  }
  return 0;
}

export const statusCommand = defineCommand({
  name: 'status',
  summary: "show a sweep's progress (counts by state, running runs with step and loss)",
  args: '[sweep-id]',
  description: 'Without a sweep id, lists sweeps like `rankflow ls`.',
  options: { json: { type: 'boolean', help: 'print the status as JSON' } },
  async run({ values, positionals }) {
    if (positionals.length === 0) return await lsCommand.run(values.json ? ['--json'] : []);
    const id = sweepArg('status', positionals);
    return await withSweep('status', id, async (client, config) => {
      const waiting = await notServed(client, config, id);
      if (waiting) {
        if (values.json)
          console.log(JSON.stringify({ sweep_id: id, state: 'waiting', warnings: waiting.warnings }, null, 2));
        else {
          console.log(`${id} (waiting): 0/${waiting.runs} done; no worker has picked the sweep up`);
          for (const w of waiting.warnings) console.log(`  warning: ${w}`);
        }
        return 0;
      }
      let st;
      try {
        st = await sweepStatus(client, id);
      } catch (e) {
        if (!(e instanceof SweepNotAnswering)) throw e;
        return await printNotAnswering(client, config, e, Boolean(values.json));
      }
      const { status, closed } = st;
      const progress = await runProgress(client, status.running);
      const manifest = await readManifest(await openConfiguredStore(config), id).catch(() => null);
      const labels = new Map((manifest?.runs ?? []).map((r) => [r.id, runLabel(r.labels)]));
      const idle =
        !closed && manifest && status.counts.pending + status.counts.running > 0
          ? await unpolledQueueWarnings(client, config.namespace, trainingQueues(manifest.queues, manifest.runs))
          : [];
      if (values.json) {
        console.log(
          JSON.stringify({ ...status, closed, state: sweepState(status, closed), progress, warnings: idle }, null, 2),
        );
        return 0;
      }
      console.log(
        `${id} (${sweepState(status, closed)}): ${formatCounts(status, progress.filter((p) => p.queued).length)}`,
      );
      for (const w of idle) console.log(`  warning: ${w}`);
      for (const p of progress)
        console.log(`  ${p.queued ? 'queued ' : 'running'} ${formatRunProgress(p, labels.get(p.run_id) ?? '')}`);
      for (const f of status.failed) {
        const who = labels.get(f.run_id);
        console.log(`  failed  ${who ? `${who}  (${f.run_id})` : f.run_id}  ${firstLine(f.message)}`);
      }
      return 0;
    });
  },
});

/** A sweep's state in a listing: from its workflow's description, its counts only when a worker answers. */
async function sweepRow(
  client: Client,
  id: string,
  served: boolean,
): Promise<{ state: string; counts: string; notAnswering: boolean }> {
  let described;
  try {
    described = await client.workflow.getHandle(id).describe();
  } catch {
    return { state: 'not started', counts: '', notAnswering: false }; // no workflow (yet, or beyond retention)
  }
  if (described.status.name === 'RUNNING' && !served) {
    // Never picked up (only its start is in the history) is `waiting`, as `status` says; else `running`.
    return { state: described.historyLength <= 2 ? 'waiting' : 'running', counts: '', notAnswering: true };
  }
  try {
    const { status, closed } = await sweepStatus(client, id);
    return { state: sweepState(status, closed), counts: formatCounts(status), notAnswering: false };
  } catch (e) {
    if (e instanceof SweepNotAnswering) return { state: 'running', counts: '', notAnswering: true };
    return { state: described.status.name.toLowerCase(), counts: '', notAnswering: false };
  }
}

export const lsCommand = defineCommand({
  name: 'ls',
  summary: 'list sweeps and their states',
  maxArgs: 0,
  options: { json: { type: 'boolean', help: 'print the list as JSON' } },
  async run({ values }) {
    const config = await resolveConfig({ start: false });
    const store = await openConfiguredStore(config);
    const { client, close } = await connect(config);
    try {
      const keys = (await store.list(SWEEPS_PREFIX)).filter((k) => sweepIdOfKey(k) !== null);
      const rows = [];
      // One look at the control queue: when no worker polls it, running sweeps cannot answer a query.
      const control = await queuePollers(client, config.namespace, controlQueue(config), 'workflow');
      let served = pollersAlive(control);
      for (const key of keys) {
        const id = sweepIdOfKey(key)!;
        let m;
        try {
          m = await readManifest(store, id);
        } catch (e) {
          if (!(e instanceof UserError)) throw e;
          console.error(`rankflow: skipping ${e.message}`); // one bad manifest must not hide the others
          continue;
        }
        const row = await sweepRow(client, id, served);
        if (row.notAnswering) served = false; // its workers just died: do not wait 2 s per sweep
        const note = row.notAnswering ? notPolledLine(controlQueue(config), control?.lastSeen ?? null, true) : '';
        rows.push({
          sweep_id: id,
          recipe: m?.recipe ?? null,
          runs: m?.runs.length ?? 0,
          created_at: m?.created_at ?? null,
          state: row.state,
          counts: row.counts || note,
        });
      }
      if (values.json) console.log(JSON.stringify(rows, null, 2));
      else if (rows.length === 0) console.log('no sweeps yet; submit one with `rankflow submit <recipe.yaml>`');
      else
        for (const r of rows)
          console.log(
            `${r.sweep_id}  ${r.state.padEnd(11)} ${String(r.runs).padStart(5)} runs  ${r.recipe ?? ''}  ${r.counts}`,
          );
      return 0;
    } finally {
      await close();
    }
  },
});

export const logsCommand = defineCommand({
  name: 'logs',
  summary: 'print the runtime logs of a run (every attempt)',
  args: '<run-id>',
  options: { attempt: { type: 'string', arg: 'N', help: 'only the log of attempt N' } },
  async run({ values, positionals }) {
    const id = runIdArg('logs', positionals);
    const config = await resolveConfig({ start: false });
    const store = await openConfiguredStore(config);
    let keys = await store.list(logsPrefix(id));
    if (values.attempt) keys = keys.filter((k) => k.endsWith(`/attempt-${values.attempt}.log`));
    if (keys.length === 0)
      throw new UserError(
        `logs: no logs for \`${id}\` in ${store.description} (a run's log is stored when an attempt ends)`,
      );
    keys.sort((a, b) => Number(/attempt-(\d+)/.exec(a)?.[1]) - Number(/attempt-(\d+)/.exec(b)?.[1]));
    for (const k of keys) {
      process.stdout.write(`==> ${k} <==\n`);
      process.stdout.write((await store.get(k)) ?? '');
    }
    const failed = await store.get(failureKey(id));
    if (failed) {
      const rec = ResultRecord.parse(JSON.parse(failed.toString('utf8')));
      process.stdout.write(
        `==> failure <==\n${rec.error?.kind}: ${rec.error?.message}${rec.error?.hint ? `\nhint: ${rec.error.hint}` : ''}\n`,
      );
    }
    return 0;
  },
});

function signalCommand(name: string, summary: string, signal: SignalDefinition<[], string>, done: string): Command {
  return defineCommand({
    name,
    summary,
    args: '<sweep-id>',
    options: {},
    async run({ positionals }) {
      const id = sweepArg(name, positionals);
      return await withSweep(name, id, async (client) => {
        await client.workflow.getHandle(id).signal(signal);
        console.log(`${id}: ${done}`);
        return 0;
      });
    },
  });
}

export const cancelCommand = signalCommand(
  'cancel',
  'cancel a sweep: running runs checkpoint and stop; `rankflow resume` continues later',
  cancelSignal,
  'cancel requested (running runs checkpoint, then stop)',
);
export const pauseCommand = signalCommand(
  'pause',
  'stop starting new runs of a sweep (running ones finish)',
  pauseSignal,
  'paused',
);
export const unpauseCommand = signalCommand(
  'unpause',
  'start new runs of a paused sweep again',
  resumeSignal,
  'unpaused',
);

export const resumeCommand = defineCommand({
  name: 'resume',
  summary: 're-run only the failed or unfinished runs of a sweep, each from its last checkpoint',
  args: '<sweep-id>',
  description: `Finished runs (with a recorded result) are skipped; failed, cancelled and interrupted runs start again
from their latest stored checkpoint.`,
  options: {
    concurrency: {
      type: 'string',
      arg: 'N',
      help: 'runs in flight, training or queued for a slot (default: two per slot of the embedded worker, else 8)',
    },
    detach: { type: 'boolean', help: 'return after starting the sweep' },
  },
  async run({ values, positionals }) {
    const id = sweepArg('resume', positionals);
    const config = await resolveConfig();
    const store = await openConfiguredStore(config);
    const manifest = await readManifest(store, id);
    if (!manifest) throw new UserError(`resume: no sweep \`${id}\` in ${store.description}; see \`rankflow ls\``);
    const { client, close } = await connect(config);
    let worker = null;
    try {
      if (config.embedded && values.detach) {
        // The sweep's runs wait on the queue its manifest names (a recipe's `queue:`, else the default).
        const queue = manifest.queues.cpu !== config.queues.cpu ? manifest.queues.cpu : undefined;
        console.error(`rankflow: ${await ensureBackgroundWorker(config, defaultCpuSlots(), queue)}`);
      } else if (config.embedded) worker = await startWorker(config, { slots: { cpu: defaultCpuSlots() } });
      const fresh = await startSweep(client, config, {
        sweepId: id,
        recipe: manifest.recipe,
        runs: manifest.runs,
        concurrency: intFlag('resume', 'concurrency', values.concurrency, defaultConcurrency(config)),
      });
      console.log(`${id}: ${fresh ? 'resumed' : 'already running; following it'}`);
      if (values.detach) return 0;
      const { status } = await followSweep(client, id);
      return status.counts.failed + (status.counts.blocked ?? 0) > 0 ? 1 : 0;
    } finally {
      await close();
      await worker?.shutdown();
    }
  },
});

export const servicesCommand = defineCommand({
  name: 'services',
  summary: 'status or stop of the embedded local services (Temporal dev server, S3 server)',
  args: 'status|stop',
  options: {},
  async run({ positionals }) {
    const sub = positionals[0];
    const stateDir = defaultStateDir();
    if (sub === 'stop') {
      // Background workers first: their running runs checkpoint while the store still answers.
      for (const line of await stopBackgroundWorkers()) console.log(line);
      const r = await stopServices(stateDir);
      console.log(r ? `stopped: ${JSON.stringify(r)}` : `no services recorded in ${stateDir}`);
      return 0;
    }
    if (sub === 'status') {
      const file = readServicesFile(stateDir);
      if (!file) {
        console.log(`no services recorded in ${stateDir} (they start with the first \`rankflow submit\`)`);
        return 0;
      }
      const health = await checkServices(file);
      for (const h of health)
        console.log(`${h.name.padEnd(8)} pid ${h.pid}  ${h.address}  ${h.ok ? 'ok' : `NOT OK: ${h.error}`}`);
      const ui = temporalWebUi(file.temporal);
      if (ui) console.log(`web ui   ${ui}  (Temporal Web UI: every sweep and run workflow)`);
      return health.every((h) => h.ok) ? 0 : 1;
    }
    throw new UserError('services: expected `status` or `stop`');
  },
});
