/**
 * Recovery that must not strand a sweep, on the real parts: the store unreachable while a finished run's
 * uploads retry (the activity heartbeats on, so the run is not trained again), a cancel with the default
 * heartbeat timeout (it reaches the training within seconds: the run checkpoints and stops, the sweep is
 * listed as cancelled), two concurrent submits of one sweep (one starts it), a full store (the run fails at
 * once saying so, no temporary file left), and the scratch folders killed workers leave.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import { mkdtemp, readdir } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Client } from '@temporalio/client';
import { startWorker, removeStaleWorkDirs } from '../cli/worker.js';
import type { Config } from '../cli/config.js';
import { runProgress, startSweep, writeManifest } from '../cli/sweeps.js';
import type { SubmitOptions } from '../cli/sweeps.js';
import { cancelSignal } from '../workflows/index.js';
import type { SweepStatus } from '../schemas/orchestration.js';
import type { PlannedRun } from '../schemas/runspec.js';
import { listCheckpoints } from '../store/checkpoints.js';
import { failureKey } from '../store/keys.js';
import { LocalStore, S3Store, type ArtifactStore } from '../store/store.js';
import { rankflowCli, testClient, testConfig, uniqueId } from './helpers/cluster.js';
import { tcpProxy } from './helpers/proxy.js';
import { planned, readRecord, tinySpec, waitFor } from './helpers/runs.js';

const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!().catch(() => undefined);
});

async function submit(
  client: Client,
  config: Config,
  store: ArtifactStore,
  runs: PlannedRun[],
  policy: Partial<NonNullable<SubmitOptions['policy']>>,
): Promise<string> {
  const opts: SubmitOptions = { sweepId: uniqueId('sweep-recovery'), recipe: 'recovery', runs, concurrency: 1, policy };
  await writeManifest(store, config, opts);
  await startSweep(client, config, opts);
  return opts.sweepId;
}

describe('recovery', () => {
  it('a store outage while a run finishes: heartbeats go on, the run is not trained again', async () => {
    const base = testConfig();
    const s3 = base.store as Extract<Config['store'], { kind: 's3' }>;
    const p = await tcpProxy(s3.endpoint!);
    cleanups.push(p.cut);
    const config: Config = { ...base, store: { ...s3, endpoint: p.endpoint } };
    const store = new S3Store(config.store as typeof s3);
    await store.ensureBucket();
    const direct = new S3Store(s3);
    const { client, close } = await testClient(config);
    cleanups.push(close);
    const worker = await startWorker(config, { slots: { cpu: 1 }, shutdownGraceS: 5 });
    cleanups.push(() => worker.shutdown());
    // Only a final checkpoint: the store is cut while the run trains, so the runtime exits while it is
    // unreachable and the upload (and the log) retry with nobody training. The heartbeats that report the last
    // step arrive during the outage (a finished run's heartbeats are the point); waiting for the last step before
    // cutting raced the end of a short run (the activity could return between two throttled heartbeats).
    // Long enough that a throttled heartbeat reports training before the run ends (400 steps could finish
    // between two heartbeats once the runtime starts warm).
    const steps = 3000;
    const run = planned(tinySpec({ steps, checkpointEvery: 100_000 }));
    const sweepId = await submit(client, config, store, [run], { heartbeat_timeout_s: 5, max_attempts: 3 });
    const step = async (): Promise<number> => (await runProgress(client, [run.id]))[0]?.step ?? 0;
    await waitFor('training progress', async () => (await step()) >= 2, 300_000);
    await p.cut();
    await waitFor('the last step, reported while the store is cut', async () => (await step()) >= steps, 300_000);
    await new Promise((r) => setTimeout(r, 25_000)); // five heartbeat timeouts with the runtime gone
    await p.restore();
    const status = (await client.workflow.getHandle(sweepId).result()) as SweepStatus;
    expect(status.counts.succeeded, JSON.stringify(status.failed)).toBe(1);
    const rec = (await readRecord(direct, run.id))!;
    expect(rec.timings.attempts).toBe(1); // never declared lost
    expect((await listCheckpoints(direct, run.id)).map((c) => c.reason)).toEqual(['final']);
  }, 480_000);

  it('cancel with the default heartbeat timeout: the run checkpoints and stops; ls and status say cancelled', async () => {
    const config = testConfig();
    const store = new S3Store(config.store as Extract<Config['store'], { kind: 's3' }>);
    await store.ensureBucket();
    const { client, close } = await testClient(config);
    cleanups.push(close);
    const worker = await startWorker(config, { slots: { cpu: 1 }, shutdownGraceS: 5 });
    cleanups.push(() => worker.shutdown());
    // Long enough that the cancel always lands mid-training (400 steps could finish first on a loaded machine).
    const steps = 5000;
    const run = planned(tinySpec({ steps, checkpointEvery: 100_000 })); // the preempt checkpoint is the only one
    const sweepId = await submit(client, config, store, [run], { heartbeat_timeout_s: 60 });
    await waitFor('training progress', async () => ((await runProgress(client, [run.id]))[0]?.step ?? 0) >= 2, 240_000);
    await client.workflow.getHandle(sweepId).signal(cancelSignal);
    const status = (await client.workflow.getHandle(sweepId).result()) as SweepStatus;
    expect(status.counts.cancelled).toBe(1);
    const cks = await listCheckpoints(store, run.id);
    expect(cks.map((c) => c.reason)).toEqual(['preempt']);
    expect(cks[0]!.step).toBeLessThan(steps);
    expect(await readRecord(store, run.id)).toBeNull();
    const ls = await rankflowCli(config, 'ls', '--json');
    expect(ls.code, ls.stderr).toBe(0);
    const row = (JSON.parse(ls.stdout) as { sweep_id: string; state: string }[]).find((r) => r.sweep_id === sweepId);
    expect(row?.state).toBe('cancelled');
    const st = await rankflowCli(config, 'status', sweepId);
    expect(st.stdout).toMatch(new RegExp(`^${sweepId} \\(cancelled\\)`));
  }, 480_000);

  it('two concurrent submits of one sweep: one starts it, the other says it is already running', async () => {
    const config = testConfig();
    const store = new S3Store(config.store as Extract<Config['store'], { kind: 's3' }>);
    await store.ensureBucket();
    const { client, close } = await testClient(config);
    cleanups.push(close);
    const opts: SubmitOptions = {
      sweepId: uniqueId('sweep-twice'),
      recipe: 'twice',
      runs: [planned(tinySpec())],
      concurrency: 1,
    };
    await writeManifest(store, config, opts);
    const fresh = await Promise.all([startSweep(client, config, opts), startSweep(client, config, opts)]);
    cleanups.push(() => client.workflow.getHandle(opts.sweepId).terminate('test over'));
    expect(fresh.sort()).toEqual([false, true]);
    expect(await startSweep(client, config, opts)).toBe(false);
  });

  it('a full store: the run fails at once saying so, and no temporary file is left', async (ctx) => {
    const mnt = await mkdtemp(join(tmpdir(), 'rankflow-full-'));
    try {
      execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=600k', 'tmpfs', mnt], { stdio: 'pipe' });
    } catch (e) {
      console.log(
        `[recovery] skipped the full-store case: cannot mount a small tmpfs here (${(e as Error).message.split('\n')[0]})`,
      );
      ctx.skip();
    }
    cleanups.push(async () => execFileSync('umount', [mnt]));
    const config: Config = { ...testConfig(), store: { kind: 'local', root: mnt } };
    const store = new LocalStore(mnt);
    const { client, close } = await testClient(config);
    cleanups.push(close);
    const worker = await startWorker(config, { slots: { cpu: 1 }, shutdownGraceS: 5 });
    cleanups.push(() => worker.shutdown());
    // Full fine-tuning checkpoints (~400 KB each, every step) fill 600 KB at the second one.
    const run = planned(tinySpec({ method: 'full', rank: null, steps: 40, checkpointEvery: 1 }));
    const sweepId = await submit(client, config, store, [run], { heartbeat_timeout_s: 20, max_attempts: 5 });
    const status = (await client.workflow.getHandle(sweepId).result()) as SweepStatus;
    expect(status.counts.failed).toBe(1);
    // The run's own failure comes first, even when the full store refused its failure record too.
    expect(status.failed[0]!.message).toMatch(/^no space left storing a checkpoint .*free space on the artifact store/);
    const recorded = await store.exists(failureKey(run.id));
    expect(recorded || (status.failed[0]!.message ?? '').includes('its failure record was not written either')).toBe(
      true,
    );
    const walk = (d: string): string[] =>
      fs.readdirSync(d, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? walk(join(d, e.name)) : [e.name]));
    expect(walk(mnt).filter((n) => n.includes('.tmp-'))).toEqual([]);
  }, 480_000);

  it("scratch folders of killed workers on this host are removed; live and other hosts' are kept", async () => {
    const root = await mkdtemp(join(tmpdir(), 'rankflow-work-'));
    const dead = spawn(process.execPath, ['-e', '0']);
    await new Promise((r) => dead.on('exit', r));
    const names = [
      `${hostname()}-${dead.pid}`,
      `${hostname()}-${process.pid}`,
      `other-host-${dead.pid}`,
      `${hostname()}-1`,
    ];
    for (const n of names) fs.mkdirSync(join(root, n, 'run-x', 'attempt-1'), { recursive: true });
    expect(removeStaleWorkDirs(root)).toEqual([`${hostname()}-${dead.pid}`]);
    expect((await readdir(root)).sort()).toEqual(names.slice(1).sort());
  });
});
