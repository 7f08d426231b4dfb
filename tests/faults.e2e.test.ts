/**
 * Fault tests on the real parts (no mocks): a worker process killed mid-run, the Temporal server
 * restarted mid-sweep, the S3 server unreachable for a while, and a sweep cancelled mid-run and resumed.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { startWorker } from '../cli/worker.js';
import type { RunningWorker } from '../cli/worker.js';
import type { Config } from '../cli/config.js';
import { startSweep, writeManifest, runProgress } from '../cli/sweeps.js';
import type { SubmitOptions } from '../cli/sweeps.js';
import { cancelSignal } from '../workflows/index.js';
import type { SweepStatus } from '../schemas/orchestration.js';
import { listCheckpoints, checkpointPrefix, sha256File } from '../store/checkpoints.js';
import { S3Store } from '../store/store.js';
import { freePort, probeTemporal, startTemporal, stopProcessGroup } from '../services/embedded.js';
import type { PlannedRun } from '../schemas/runspec.js';
import { testClient, testConfig, uniqueId, workerProcess } from './helpers/cluster.js';
import { tcpProxy } from './helpers/proxy.js';
import { planned, readRecord, tinySpec, uninterrupted, waitFor } from './helpers/runs.js';

const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!().catch(() => undefined);
});

async function submit(
  client: Client,
  config: Config,
  store: S3Store,
  runs: PlannedRun[],
  extra: Partial<SubmitOptions> = {},
): Promise<string> {
  const opts: SubmitOptions = {
    sweepId: uniqueId('sweep-fault'),
    recipe: 'faults',
    runs,
    concurrency: 1,
    policy: { heartbeat_timeout_s: 8, max_attempts: 6, terminate_grace_s: 30 },
    ...extra,
  };
  await writeManifest(store, config, opts);
  await startSweep(client, config, opts);
  return opts.sweepId;
}

/** Every checkpoint that has its `stored.json` marker must have all its files, with the right bytes. */
async function assertStoredCheckpointsComplete(store: S3Store, runId: string): Promise<number> {
  const dir = await mkdtemp(join(tmpdir(), 'rankflow-ck-'));
  const all = await listCheckpoints(store, runId);
  for (const ck of all) {
    for (const f of ck.files) {
      const local = join(dir, String(ck.step), f.name);
      expect(await store.getFile(checkpointPrefix(runId, ck.step) + f.name, local)).toBe(true);
      expect(await sha256File(local)).toBe(f.sha256);
    }
  }
  return all.length;
}

describe('fault tolerance on the real parts', () => {
  it('a worker process killed with SIGKILL: a new worker resumes the run from its checkpoint', async () => {
    const config = testConfig();
    const store = new S3Store(config.store as Extract<Config['store'], { kind: 's3' }>);
    await store.ensureBucket();
    const { client, close } = await testClient(config);
    cleanups.push(close);
    const spec = tinySpec({ steps: 24, checkpointEvery: 3 });
    const run = planned(spec);
    const reference = uninterrupted(spec);
    const first = workerProcess(config);
    cleanups.push(async () => first.kill('SIGKILL'));
    const sweepId = await submit(client, config, store, [run]);
    await waitFor('a stored checkpoint', async () => (await listCheckpoints(store, run.id)).length > 0, 240_000);
    first.kill('SIGKILL');
    const second = workerProcess(config);
    cleanups.push(async () => second.kill('SIGTERM'));
    const status = (await client.workflow.getHandle(sweepId).result()) as SweepStatus;
    expect(status.counts.succeeded).toBe(1);
    const rec = (await readRecord(store, run.id))!;
    expect(rec.timings.attempts).toBeGreaterThanOrEqual(2);
    expect(rec.metrics).toEqual((await reference).metrics);
  }, 480_000);

  it('the Temporal server restarted mid-sweep (SQLite state): the sweep completes', async () => {
    const stateDir = await mkdtemp(join(tmpdir(), 'rankflow-temporal-'));
    const port = await freePort();
    const up = async () => {
      const t = await startTemporal({ stateDir, port });
      await waitFor(
        'Temporal to answer',
        async () => (await probeTemporal(t.record.address, 'default', 2_000), true),
        90_000,
      );
      return t;
    };
    let temporal = await up();
    cleanups.push(async () => stopProcessGroup(temporal.spawned.pid, 3_000, temporal.spawned.exitedPromise));
    const config: Config = { ...testConfig(), temporalAddress: temporal.record.address };
    const store = new S3Store(config.store as Extract<Config['store'], { kind: 's3' }>);
    await store.ensureBucket();
    const worker: RunningWorker = await startWorker(config, { slots: { cpu: 1 }, shutdownGraceS: 5 });
    cleanups.push(() => worker.shutdown());
    const connection = await Connection.connect({ address: config.temporalAddress });
    const client = new Client({ connection });
    const runs = [
      planned(tinySpec({ steps: 12, checkpointEvery: 3 })),
      planned(tinySpec({ steps: 12, checkpointEvery: 3 })),
    ];
    const sweepId = await submit(client, config, store, runs);
    await waitFor(
      'the first run to train',
      async () => (await listCheckpoints(store, runs[0]!.id)).length > 0,
      240_000,
    );
    await stopProcessGroup(temporal.spawned.pid, 10_000, temporal.spawned.exitedPromise);
    await new Promise((r) => setTimeout(r, 2_000));
    temporal = await up();
    const status = (await client.workflow.getHandle(sweepId).result()) as SweepStatus;
    await connection.close();
    expect(status.counts.succeeded).toBe(2);
    for (const r of runs) expect((await readRecord(store, r.id))?.status).toBe('succeeded');
  }, 480_000);

  it('S3 unreachable for a while: uploads retry and no stored checkpoint is incomplete', async () => {
    const base = testConfig();
    const s3 = base.store as Extract<Config['store'], { kind: 's3' }>;
    const p = await tcpProxy(s3.endpoint!);
    cleanups.push(p.cut);
    const config: Config = { ...base, store: { ...s3, endpoint: p.endpoint } };
    const store = new S3Store(config.store as typeof s3);
    await store.ensureBucket();
    const direct = new S3Store(s3); // the same bucket and prefix, not through the proxy
    const { client, close } = await testClient(config);
    cleanups.push(close);
    const worker = await startWorker(config, { slots: { cpu: 1 }, shutdownGraceS: 5 });
    cleanups.push(() => worker.shutdown());
    const run = planned(tinySpec({ steps: 30, checkpointEvery: 2 }));
    const sweepId = await submit(client, config, store, [run], {
      policy: { heartbeat_timeout_s: 60, max_attempts: 6 },
    });
    await waitFor('a stored checkpoint', async () => (await listCheckpoints(direct, run.id)).length > 0, 240_000);
    await p.cut();
    await new Promise((r) => setTimeout(r, 6_000));
    await p.restore();
    const status = (await client.workflow.getHandle(sweepId).result()) as SweepStatus;
    expect(status.counts.succeeded).toBe(1);
    expect(await assertStoredCheckpointsComplete(direct, run.id)).toBeGreaterThan(0);
    expect((await readRecord(direct, run.id))?.status).toBe('succeeded');
  }, 480_000);

  it('cancel: the runner checkpoints on SIGTERM, the run is cancelled, and resume finishes it from there', async () => {
    const config = testConfig();
    const store = new S3Store(config.store as Extract<Config['store'], { kind: 's3' }>);
    await store.ensureBucket();
    const { client, close } = await testClient(config);
    cleanups.push(close);
    const worker = await startWorker(config, { slots: { cpu: 1 }, shutdownGraceS: 5 });
    cleanups.push(() => worker.shutdown());
    // No interval checkpoints: the only checkpoint is the one written on SIGTERM.
    const spec = tinySpec({ steps: 400, checkpointEvery: 1000 });
    const run = planned(spec);
    const reference = uninterrupted(spec);
    const opts = { sweepId: uniqueId('sweep-cancel') };
    const sweepId = await submit(client, config, store, [run], opts);
    await waitFor(
      'training progress',
      async () => {
        const p = (await runProgress(client, [run.id]))[0];
        if (process.env.RANKFLOW_TEST_DEBUG) console.error('progress', p);
        return (p?.step ?? 0) >= 2;
      },
      240_000,
    );
    if (process.env.RANKFLOW_TEST_DEBUG) console.error('cancelling');
    await client.workflow.getHandle(sweepId).signal(cancelSignal);
    const status = (await client.workflow.getHandle(sweepId).result()) as SweepStatus;
    if (process.env.RANKFLOW_TEST_DEBUG) console.error('cancelled', JSON.stringify(status.counts));
    expect(status.counts.cancelled).toBe(1);
    const cks = await listCheckpoints(store, run.id);
    expect(cks.length).toBe(1);
    expect(cks[0]!.reason).toBe('preempt');
    expect(cks[0]!.step).toBeGreaterThanOrEqual(2);
    expect(cks[0]!.step).toBeLessThan(400);
    expect(await readRecord(store, run.id)).toBeNull();

    // Resume: the same sweep id again; the run continues from the preemption checkpoint.
    await startSweep(client, config, { sweepId, recipe: 'faults', runs: [run], concurrency: 1 });
    const resumed = (await client.workflow.getHandle(sweepId).result()) as SweepStatus;
    if (process.env.RANKFLOW_TEST_DEBUG) console.error('resumed', JSON.stringify(resumed.counts));
    expect(resumed.counts.succeeded).toBe(1);
    const rec = (await readRecord(store, run.id))!;
    expect(rec.metrics).toEqual((await reference).metrics);
    const logs = await store.list(`logs/${run.id}/`);
    const last = (await store.get(logs.at(-1)!))!.toString('utf8');
    expect(last).toMatch(new RegExp(`resumed from .* at step ${cks[0]!.step}`));
  }, 480_000);
});
