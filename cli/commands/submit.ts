/** `rankflow submit recipe.yaml`: plan, store the sweep manifest, start the sweep, follow it, print the table. */
import { runTable } from './table.js';
import { UserError } from '../../core/errors.js';
import { defineCommand, intFlag } from '../args.js';
import { controlQueue, resolveConfig } from '../config.js';
import { startWorker } from '../worker.js';
import type { RunningWorker } from '../worker.js';
import { planRecipeFile } from '../recipe-io.js';
import { followSweep, formatCounts, startSweep, writeManifest } from '../sweeps.js';
import { connect, defaultConcurrency, defaultCpuSlots, openConfiguredStore } from '../connect.js';
import { ensureBackgroundWorker } from '../background.js';
import { sweepState } from './orchestrate.js';
import type { Client } from '@temporalio/client';
import type { Config } from '../config.js';
import type { PlannedRun } from '../../schemas/runspec.js';
import { servingWarnings, trainingQueues } from '../queues.js';
import { defaultStateDir, readServicesFile, temporalWebUi } from '../../services/embedded.js';

/**
 * Warnings for the training queues of these runs that no worker polls, after giving a worker that is just
 * starting (the background one) up to `graceMs` to appear.
 */
async function waitForPollers(client: Client, config: Config, runs: PlannedRun[], graceMs = 8_000): Promise<string[]> {
  const queues = trainingQueues(config.queues, runs);
  const deadline = Date.now() + graceMs;
  for (;;) {
    const warnings = await servingWarnings(client, config.namespace, controlQueue(config), queues);
    if (warnings.length === 0 || Date.now() >= deadline) return warnings;
    await new Promise((r) => setTimeout(r, 1000));
  }
}

export const submitCommand = defineCommand({
  name: 'submit',
  summary: 'plan a recipe and run its sweep (finished runs are never run again)',
  args: '<recipe.yaml>',
  description: `Plans the recipe (like \`rankflow plan\`), stores the sweep manifest, starts the sweep workflow and follows
its progress, then prints the comparison table. Runs whose result is already recorded are skipped, so
resubmitting a recipe after editing one axis runs only the new runs.

With no TEMPORAL_ADDRESS / config file, uses the embedded default: a local Temporal dev server and S3
server (started on first use, kept running; \`rankflow services stop\`) and a worker in this process.`,
  options: {
    detach: {
      type: 'boolean',
      help: 'return after starting the sweep (embedded default: starts a background worker)',
    },
    concurrency: {
      type: 'string',
      arg: 'N',
      help: 'runs in flight, training or queued for a slot (default: two per slot of the embedded worker, else 8)',
    },
    'max-attempts': {
      type: 'string',
      arg: 'N',
      help: 'attempts per run for retryable failures (default 5; config errors never retry)',
    },
    'heartbeat-timeout': {
      type: 'string',
      arg: 'S',
      help: 'seconds without a heartbeat before a run is declared lost and retried (default 60)',
    },
    'no-table': { type: 'boolean', help: 'do not print the table at the end' },
  },
  async run({ values, positionals }) {
    const file = positionals[0];
    if (!file || positionals.length > 1)
      throw new UserError('submit: expected one recipe file, e.g. `rankflow submit recipes/quickstart.yaml`');
    const plan = await planRecipeFile(file);
    for (const w of plan.warnings) console.error(w);
    const config = await resolveConfig();
    if (plan.recipe.queue) {
      for (const device of ['cpu', 'cuda', 'auto']) config.queues[device] = plan.recipe.queue;
    }
    const store = await openConfiguredStore(config);
    const slots = defaultCpuSlots();
    const opts = {
      sweepId: plan.sweepId,
      recipe: plan.path,
      runs: plan.runs,
      concurrency: intFlag('submit', 'concurrency', values.concurrency, defaultConcurrency(config)),
      policy: {
        max_attempts: intFlag('submit', 'max-attempts', values['max-attempts'], 5),
        heartbeat_timeout_s: intFlag('submit', 'heartbeat-timeout', values['heartbeat-timeout'], 60),
      },
    };
    await writeManifest(store, config, opts);
    const { client, close } = await connect(config);
    let worker: RunningWorker | null = null;
    try {
      if (config.embedded) {
        if (values.detach) console.error(`rankflow: ${await ensureBackgroundWorker(config, slots, plan.recipe.queue)}`);
        else worker = await startWorker(config, { slots: { cpu: slots } });
      }
      const fresh = await startSweep(client, config, opts);
      console.log(`${plan.sweepId}: ${plan.runs.length} runs (${fresh ? 'started' : 'already running; following it'})`);
      const ui = config.embedded ? temporalWebUi(readServicesFile(defaultStateDir())?.temporal, plan.sweepId) : null;
      if (ui) console.log(`watch it in the Temporal Web UI: ${ui}`);
      if (values.detach) {
        for (const w of await waitForPollers(client, config, plan.runs)) console.error(`rankflow: warning: ${w}`);
        console.log(`follow it with \`rankflow status ${plan.sweepId}\``);
        return 0;
      }
      const idle = setTimeout(() => {
        void waitForPollers(client, config, plan.runs, 0).then((ws) =>
          ws.forEach((w) => console.error(`rankflow: warning: ${w}`)),
        );
      }, 10_000);
      idle.unref();
      const stop = new AbortController();
      const onInt = (): void => {
        console.error(
          '\nrankflow: stopping; running runs checkpoint and continue with `rankflow resume ' + plan.sweepId + '`',
        );
        stop.abort();
      };
      process.once('SIGINT', onInt);
      const { status, closed } = await followSweep(client, plan.sweepId, { signal: stop.signal });
      process.removeListener('SIGINT', onInt);
      if (closed === 'DETACHED') return 130;
      console.log(`${plan.sweepId} ${sweepState(status, closed)}: ${formatCounts(status)}`);
      for (const f of status.failed)
        console.log(`  failed ${f.run_id}: ${f.message?.split('\n')[0] ?? ''} (see \`rankflow logs ${f.run_id}\`)`);
      if (!values['no-table'] && status.counts.succeeded + status.counts.skipped > 0) {
        console.log('');
        await runTable([plan.sweepId]);
      }
      return status.counts.failed + (status.counts.blocked ?? 0) > 0 ? 1 : 0;
    } finally {
      await close();
      await worker?.shutdown();
    }
  },
});
