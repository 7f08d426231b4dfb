/**
 * `rankflow status` and `ls` when no worker serves a sweep, and `ls` with a broken manifest in the store, on the
 * real servers through the real command: one clear line instead of a hang, a stack trace or a wrong state.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import type { Config } from '../cli/config.js';
import { startSweep, writeManifest } from '../cli/sweeps.js';
import type { SubmitOptions } from '../cli/sweeps.js';
import { runProgress } from '../cli/sweeps.js';
import { PROJECT_ROOT } from '../core/paths.js';
import { cliEnv, rankflowCli, testClient, testConfig, testStore, uniqueId } from './helpers/cluster.js';
import { planned, tinySpec, waitFor } from './helpers/runs.js';

const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!().catch(() => undefined);
});

async function sweepWithoutWorker(config: Config, steps = 400): Promise<SubmitOptions> {
  const store = testStore(config);
  await store.ensureBucket();
  const opts: SubmitOptions = {
    sweepId: uniqueId('sweep-unserved'),
    recipe: 'unserved',
    runs: [planned(tinySpec({ steps, checkpointEvery: 1000 }))],
    concurrency: 1,
  };
  await writeManifest(store, config, opts);
  const { client, close } = await testClient(config);
  await startSweep(client, config, opts);
  cleanups.push(async () => {
    await client.workflow
      .getHandle(opts.sweepId)
      .terminate('test over')
      .catch(() => undefined);
    await close();
  });
  return opts;
}

describe('a sweep nobody serves', () => {
  it('status says which queue no worker polls, ls calls it waiting (never "not started")', async () => {
    const config = testConfig();
    const { sweepId } = await sweepWithoutWorker(config);
    const st = await rankflowCli(config, 'status', sweepId);
    expect(st.code, st.stderr).toBe(0);
    expect(st.stderr).not.toMatch(/\s+at |ServiceError|Error:/);
    expect(st.stdout).toMatch(new RegExp(`^${sweepId} \\(waiting\\)`));
    expect(st.stdout).toMatch(new RegExp(`no worker is polling queue \`${config.queues.cpu}\` \\(`));
    const ls = await rankflowCli(config, 'ls', '--json');
    expect(ls.code, ls.stderr).toBe(0);
    const row = (JSON.parse(ls.stdout) as { sweep_id: string; state: string }[]).find((r) => r.sweep_id === sweepId);
    expect(row?.state).toBe('waiting');
  }, 240_000);

  it('its worker killed a moment ago: status answers at once, naming the queue and when a worker was last seen', async () => {
    const config = testConfig();
    const worker = spawn(process.execPath, [join(PROJECT_ROOT, 'cli', 'bin.mjs'), 'worker', '--cpu-slots', '1'], {
      env: cliEnv(config),
      stdio: 'ignore',
    });
    cleanups.push(async () => worker.kill('SIGKILL'));
    const { sweepId, runs } = await sweepWithoutWorker(config);
    const { client, close } = await testClient(config);
    cleanups.push(close);
    await waitFor(
      'training progress',
      async () => ((await runProgress(client, [runs[0]!.id]))[0]?.step ?? 0) >= 1,
      240_000,
    );
    worker.kill('SIGKILL');
    await new Promise((r) => worker.on('exit', r));
    const st = await rankflowCli(config, 'status', sweepId);
    expect(st.code, st.stderr).toBe(0);
    expect(st.stdout).toMatch(new RegExp(`^${sweepId} \\(running\\): 0/1 results recorded; the sweep does not answer`));
    expect(st.stdout).toMatch(/no worker is polling queue `[^`]+` \(last seen \d+ s ago\): start `rankflow worker`/);
    const ls = await rankflowCli(config, 'ls');
    expect(ls.stdout).toMatch(new RegExp(`${sweepId}\\s+running\\s`));
  }, 300_000);
});

describe('ls with a broken sweep manifest', () => {
  it('skips it, says which, and lists the others', async () => {
    const config = testConfig();
    const store = testStore(config);
    await store.ensureBucket();
    const good: SubmitOptions = {
      sweepId: uniqueId('sweep-good'),
      recipe: 'good',
      runs: [planned(tinySpec())],
      concurrency: 1,
    };
    await writeManifest(store, config, good);
    await store.put('sweeps/broken.json', JSON.stringify({ schema: 'rankflow.sweep/v1', runs: 'not a list' }));
    await store.put('sweeps/garbage.json', '{not json');
    const ls = await rankflowCli(config, 'ls', '--json');
    expect(ls.code, ls.stderr).toBe(0);
    expect(JSON.parse(ls.stdout).map((r: { sweep_id: string }) => r.sweep_id)).toEqual([good.sweepId]);
    const lines = ls.stderr.trim().split('\n');
    expect(lines).toHaveLength(2);
    expect(lines[0]).toMatch(/^rankflow: skipping sweeps\/broken\.json in .* is not a sweep manifest/);
    expect(lines[1]).toMatch(/^rankflow: skipping sweeps\/garbage\.json in .* is not valid JSON/);
  }, 120_000);
});
