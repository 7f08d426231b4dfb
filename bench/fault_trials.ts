/**
 * Randomised fault trials on the real services (issue 20): per trial, a sweep of tiny real runs (the real
 * Python runtime on the CPU, a real `rankflow worker` process, a real Temporal dev server, real SeaweedFS
 * behind a TCP proxy) and one or two faults drawn from a seeded generator while it trains:
 *
 *   kill-runtime      SIGKILL to a training runtime process (the worker's activity retries it)
 *   kill-worker       SIGKILL to the worker process; a new worker is started
 *   restart-temporal  the Temporal dev server stopped and started again on its state (SQLite) and ports
 *   cut-store         the store unreachable for 6 s (connections dropped, port closed), then restored
 *   cancel-resume     the sweep cancelled mid-run, then submitted again under the same id (resume)
 *
 * Checks per trial: every planned run has exactly one result record and it is `succeeded` (none lost, none
 * duplicated, no record of a run that was not planned, no failure record), each run's metrics equal those
 * of the same spec trained uninterrupted by the runtime alone (bit for bit: resume is exact), and the sweep's
 * final status counts every run as succeeded. Prints one line per trial, the per-fault table and the totals.
 *
 *   npx tsx bench/fault_trials.ts [--trials 3] [--seed 1] [--runs 2]
 *
 * The same seed draws the same faults, run specs and fault times (the machine's timing still varies: a fault
 * lands at a different training step under another load).
 */
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { Client, Connection } from '@temporalio/client';
import { PROJECT_ROOT } from '../core/paths.js';
import { DEFAULT_QUEUES, type Config } from '../cli/config.js';
import { startSweep, writeManifest, type SubmitOptions } from '../cli/sweeps.js';
import { cancelSignal } from '../workflows/index.js';
import type { SweepStatus } from '../schemas/orchestration.js';
import { listCheckpoints } from '../store/checkpoints.js';
import { S3Store } from '../store/store.js';
import { FAILED_PREFIX, RESULTS_PREFIX } from '../store/keys.js';
import { s3Config } from './lib/services.js';
import { freePort, probeTemporal, startServices, startTemporal, stopProcessGroup } from '../services/embedded.js';
import type { PlannedRun } from '../schemas/runspec.js';
import { tcpProxy, type TcpProxy } from '../tests/helpers/proxy.js';
import { planned, readRecord, tinySpec, uninterrupted, waitFor } from '../tests/helpers/runs.js';

const FAULTS = ['kill-runtime', 'kill-worker', 'restart-temporal', 'cut-store', 'cancel-resume'] as const;
type Fault = (typeof FAULTS)[number];

/** mulberry32: a small seeded generator (the same seed, the same trials). */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Env {
  temporalStateDir: string;
  temporalPort: number;
  temporal: Awaited<ReturnType<typeof startTemporal>>;
  s3: Extract<Config['store'], { kind: 's3' }>;
  proxy: TcpProxy;
}

function configFor(env: Env, trial: number): Config {
  const suffix = `ft${process.pid}-${trial}`;
  return {
    temporalAddress: env.temporal.record.address,
    namespace: 'default',
    store: { ...env.s3, endpoint: env.proxy.endpoint, prefix: `fault-trials-${suffix}` },
    queues: Object.fromEntries(Object.entries(DEFAULT_QUEUES).map(([k, v]) => [k, `${v}-${suffix}`])),
    embedded: false,
    source: 'fault-trials',
  };
}

/** A `rankflow worker` process with one CPU slot on the config (through the store proxy). */
function worker(config: Config): ChildProcess {
  const s = config.store as Extract<Config['store'], { kind: 's3' }>;
  return spawn(process.execPath, [join(PROJECT_ROOT, 'cli', 'bin.mjs'), 'worker', '--cpu-slots', '1'], {
    env: {
      ...process.env,
      RANKFLOW_CONFIG: '',
      RANKFLOW_TEMPORAL_ADDRESS: config.temporalAddress,
      RANKFLOW_S3_ENDPOINT: s.endpoint,
      RANKFLOW_S3_BUCKET: s.bucket,
      RANKFLOW_S3_PREFIX: s.prefix,
      AWS_ACCESS_KEY_ID: s.accessKeyId,
      AWS_SECRET_ACCESS_KEY: s.secretAccessKey,
      AWS_REGION: s.region,
      RANKFLOW_QUEUE_CONTROL: config.queues.control,
      RANKFLOW_QUEUE_CPU: config.queues.cpu,
    },
    stdio: ['ignore', 'ignore', 'ignore'],
  });
}

/** Pids of the runtime processes (the launcher starts `python -c <boot> run --spec …`) below a worker process. */
function runtimePids(workerPid: number): number[] {
  const rows = execFileSync('ps', ['-eo', 'pid=,ppid=,args='], { encoding: 'utf8' })
    .split('\n')
    .map((l) => /^\s*(\d+)\s+(\d+)\s+(.*)$/.exec(l))
    .filter((m): m is RegExpExecArray => m !== null)
    .map((m) => ({ pid: Number(m[1]), ppid: Number(m[2]), args: m[3]! }));
  const below = new Set([workerPid]);
  for (let grew = true; grew;) {
    grew = false;
    for (const r of rows)
      if (below.has(r.ppid) && !below.has(r.pid)) {
        below.add(r.pid);
        grew = true;
      }
  }
  return rows.filter((r) => below.has(r.pid) && / run --spec /.test(r.args)).map((r) => r.pid);
}

async function upTemporal(env: Env): Promise<void> {
  env.temporal = await startTemporal({ stateDir: env.temporalStateDir, port: env.temporalPort });
  await waitFor(
    'Temporal',
    async () => (await probeTemporal(env.temporal.record.address, 'default', 2_000), true),
    120_000,
  );
}

interface TrialOutcome {
  faults: Fault[];
  runs: number;
  lost: number;
  duplicated: number;
  mismatched: number;
  statusWrong: boolean;
  error: string | null;
}

/** Injects one fault; returns when the system was given back (the sweep may still be running). */
async function inject(
  fault: Fault,
  ctx: {
    env: Env;
    w: { p: ChildProcess };
    config: Config;
    client: Client;
    submit: () => Promise<void>;
    sweepId: string;
  },
): Promise<void> {
  switch (fault) {
    case 'kill-runtime': {
      const pids = await waitFor(
        'a training runtime',
        async () => runtimePids(ctx.w.p.pid!).length > 0 && runtimePids(ctx.w.p.pid!),
        120_000,
      );
      process.kill(pids[0]!, 'SIGKILL');
      return;
    }
    case 'kill-worker':
      ctx.w.p.kill('SIGKILL');
      await sleep(1_000);
      ctx.w.p = worker(ctx.config);
      return;
    case 'restart-temporal':
      await stopProcessGroup(ctx.env.temporal.spawned.pid, 10_000, ctx.env.temporal.spawned.exitedPromise);
      await sleep(2_000);
      await upTemporal(ctx.env);
      return;
    case 'cut-store':
      await ctx.env.proxy.cut();
      try {
        await sleep(6_000);
      } finally {
        await ctx.env.proxy.restore();
      }
      return;
    case 'cancel-resume': {
      const h = ctx.client.workflow.getHandle(ctx.sweepId);
      await h.signal(cancelSignal);
      await h.result().catch(() => undefined);
      await ctx.submit();
      return;
    }
  }
}

async function trial(env: Env, n: number, rand: () => number, runsPerTrial: number): Promise<TrialOutcome> {
  const config = configFor(env, n);
  const store = new S3Store(config.store as Extract<Config['store'], { kind: 's3' }>);
  const direct = new S3Store({
    ...(config.store as Extract<Config['store'], { kind: 's3' }>),
    endpoint: env.s3.endpoint,
  });
  await direct.ensureBucket();
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)]!;
  const faults: Fault[] = [pick(FAULTS)];
  if (rand() < 0.5) faults.push(pick(FAULTS.filter((f) => f !== faults[0])));
  const runs: PlannedRun[] = Array.from({ length: runsPerTrial }, () =>
    planned(
      tinySpec({ steps: 40 + 10 * Math.floor(rand() * 4), checkpointEvery: 5, seed: 1 + Math.floor(rand() * 2 ** 30) }),
    ),
  );
  const references = Promise.all(runs.map((r) => uninterrupted(r.spec)));
  const out: TrialOutcome = {
    faults,
    runs: runs.length,
    lost: 0,
    duplicated: 0,
    mismatched: 0,
    statusWrong: false,
    error: null,
  };
  const w = { p: worker(config) };
  const connection = await Connection.connect({ address: config.temporalAddress });
  const client = new Client({ connection });
  const opts: SubmitOptions = {
    sweepId: `sweep-ft-${process.pid}-${n}`,
    recipe: 'fault-trials',
    runs,
    concurrency: 1,
    policy: { heartbeat_timeout_s: 10, max_attempts: 8, terminate_grace_s: 20 },
  };
  const submit = async () => {
    await writeManifest(store, config, opts);
    await startSweep(client, config, opts);
  };
  try {
    await submit();
    for (const fault of faults) {
      await waitFor(
        'a stored checkpoint',
        async () => (await listCheckpoints(direct, runs[0]!.id)).length > 0,
        300_000,
      );
      await sleep(Math.floor(rand() * 3_000));
      await inject(fault, { env, w, config, client, submit, sweepId: opts.sweepId });
    }
    const status = (await waitFor(
      'the sweep to finish',
      async () => (await client.workflow.getHandle(opts.sweepId).result()) as SweepStatus,
      900_000,
    )) as SweepStatus;
    out.statusWrong = status.counts.succeeded !== runs.length;
    const keys = await direct.list(RESULTS_PREFIX);
    const failures = await direct.list(FAILED_PREFIX).catch(() => [] as string[]);
    const refs = await references;
    for (const [i, r] of runs.entries()) {
      const mine = keys.filter((k) => k.includes(r.id));
      const rec = await readRecord(direct, r.id);
      if (!rec || rec.status !== 'succeeded') out.lost++;
      if (mine.length > 1 || failures.some((k) => k.includes(r.id))) out.duplicated++;
      if (rec && JSON.stringify(rec.metrics) !== JSON.stringify(refs[i]!.metrics)) out.mismatched++;
    }
    out.duplicated += keys.filter((k) => !runs.some((r) => k.includes(r.id))).length;
  } catch (e) {
    out.error = (e as Error).message.split('\n')[0]!;
  } finally {
    w.p.kill('SIGTERM');
    await connection.close().catch(() => undefined);
  }
  return out;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      trials: { type: 'string', default: '3' },
      seed: { type: 'string', default: '1' },
      runs: { type: 'string', default: '2' },
    },
  });
  const trials = Number(values.trials);
  const seed = Number(values.seed);
  const runsPerTrial = Number(values.runs);
  const root = mkdtempSync(join(tmpdir(), 'rankflow-fault-trials-'));
  const services = await startServices({ stateDir: join(root, 'services'), temporal: false });
  const s3 = s3Config(services, 'fault-trials');
  const env = {
    temporalStateDir: join(root, 'temporal'),
    temporalPort: await freePort(),
    s3,
    proxy: await tcpProxy(s3.endpoint!),
  } as Env;
  await upTemporal(env);
  // Interrupted (Ctrl-C): stop what this script started before leaving.
  for (const sig of ['SIGINT', 'SIGTERM'] as const)
    process.once(sig, () => {
      void (async () => {
        await stopProcessGroup(env.temporal.spawned.pid, 3_000, env.temporal.spawned.exitedPromise).catch(() => 0);
        await services.stop().catch(() => 0);
        process.exit(130);
      })();
    });
  const outcomes: TrialOutcome[] = [];
  try {
    for (let n = 0; n < trials; n++) {
      const rand = rng(seed * 1000 + n);
      const o = await trial(env, n, rand, runsPerTrial);
      outcomes.push(o);
      const ok = !o.error && !o.lost && !o.duplicated && !o.mismatched && !o.statusWrong;
      console.log(
        `trial ${n} (seed ${seed}): ${o.faults.join(' + ')}: ${ok ? 'passed' : 'FAILED'} — ${o.runs} runs, lost ${o.lost}, duplicated ${o.duplicated}, mismatched ${o.mismatched}, status ${o.statusWrong ? 'wrong' : 'right'}${o.error ? `, error: ${o.error}` : ''}`,
      );
    }
  } finally {
    await stopProcessGroup(env.temporal.spawned.pid, 5_000, env.temporal.spawned.exitedPromise).catch(() => undefined);
    await env.proxy.cut();
    await services.stop();
    rmSync(root, { recursive: true, force: true });
  }
  const passed = (o: TrialOutcome) => !o.error && !o.lost && !o.duplicated && !o.mismatched && !o.statusWrong;
  console.log(`\nfault          tried  passed`);
  for (const f of FAULTS) {
    const with_ = outcomes.filter((o) => o.faults.includes(f));
    console.log(
      `${f.padEnd(16)} ${String(with_.length).padStart(4)} ${String(with_.filter(passed).length).padStart(7)}`,
    );
  }
  const sum = (k: 'runs' | 'lost' | 'duplicated' | 'mismatched') => outcomes.reduce((n, o) => n + o[k], 0);
  console.log(
    `\ntrials ${outcomes.length} tried, ${outcomes.filter(passed).length} passed; faults ${outcomes.reduce((n, o) => n + o.faults.length, 0)}; runs ${sum('runs')}; lost ${sum('lost')}; duplicated ${sum('duplicated')}; mismatched metrics ${sum('mismatched')}; status wrong ${outcomes.filter((o) => o.statusWrong).length}; errors ${outcomes.filter((o) => o.error).length}`,
  );
  process.exitCode = outcomes.every(passed) ? 0 : 1;
}

void main();
