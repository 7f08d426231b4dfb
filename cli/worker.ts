/**
 * A rankflow worker: one process that serves the control queue (workflows and light activities) and one
 * hardware queue (training activities, one per device slot).
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { cpus, hostname } from 'node:os';
import { join } from 'node:path';
import { DefaultLogger, NativeConnection, Runtime, Worker, bundleWorkflowCode } from '@temporalio/worker';
import type { WorkflowBundleWithSourceMap } from '@temporalio/worker';
import { createActivities } from '../activities/index.js';
import { openReadyStore } from '../store/store.js';
import { SlotPool } from '../launcher/slots.js';
import { startForkServer } from '../launcher/spawn.js';
import { PROJECT_ROOT } from '../core/paths.js';
import { pidAlive } from '../services/embedded.js';
import { controlQueue } from './config.js';
import type { Config } from './config.js';

export interface WorkerOptions {
  /** GPU ids (`['0','1']`) or a number of CPU slots. */
  slots: { gpus: string[]; runsPerGpu?: number } | { cpu: number };
  /** Training task queue; default from the config's queue for the device class. */
  queue?: string;
  /** Also serve the control queue (workflows); true for all but pure GPU-slot workers. */
  control?: boolean;
  /** Seconds the runtime gets to checkpoint when the worker shuts down. */
  shutdownGraceS?: number;
  workDir?: string;
}

export function rankflowVersions(): { rankflow: string; git: string | null } {
  const pkg = JSON.parse(readFileSync(join(PROJECT_ROOT, 'package.json'), 'utf8')) as { version: string };
  let git: string | null;
  try {
    git = execFileSync('git', ['rev-parse', '--short=12', 'HEAD'], {
      cwd: PROJECT_ROOT,
      stdio: ['ignore', 'pipe', 'ignore'],
    })
      .toString()
      .trim();
    const dirty = execFileSync('git', ['status', '--porcelain', '--untracked-files=no'], {
      cwd: PROJECT_ROOT,
      stdio: ['ignore', 'pipe', 'ignore'],
    })
      .toString()
      .trim();
    if (dirty) git += '-dirty';
  } catch {
    git = null;
  }
  return { rankflow: pkg.version, git };
}

let bundle: Promise<WorkflowBundleWithSourceMap> | null = null;
/** The workflow code bundle, built once per process. */
export function workflowBundle(): Promise<WorkflowBundleWithSourceMap> {
  bundle ??= bundleWorkflowCode({ workflowsPath: join(PROJECT_ROOT, 'workflows', 'index.ts'), logger: quietLogger });
  return bundle;
}

const quietLogger = {
  log: () => undefined,
  trace: () => undefined,
  debug: () => undefined,
  info: () => undefined,
  warn: (m: string) => process.stderr.write(`[bundler] ${m}\n`),
  error: (m: string) => process.stderr.write(`[bundler] ${m}\n`),
};

/**
 * What the worker (and `submit`'s embedded worker) prints for an SDK log entry: '' to drop it, one line for a
 * failed attempt or run, null to print the entry as the SDK would. A failed attempt is the sweep's to report
 * (one line per run in `submit` / `status`, the traceback in `rankflow logs`): never the SDK's error object
 * with its 30-line stack, retryable or not (DEBUG/TRACE levels keep everything).
 */
export function workerLogLine(entry: { message: string; meta?: unknown }, level: string): string | null {
  // A training-only worker registers no workflows on purpose.
  if (entry.message.startsWith('No workflows registered')) return '';
  const failed = /^(Activity|Workflow) (task )?failed/.test(entry.message);
  if (!failed || ['DEBUG', 'TRACE'].includes(level)) return null;
  const err = (entry.meta as { error?: { message?: string } } | undefined)?.error;
  const first = (err?.message ?? '').split('\n')[0];
  return `rankflow worker: ${entry.message.startsWith('Workflow') ? 'a run failed' : 'an attempt failed'}: ${first}`;
}

let runtimeInstalled = false;
/** Worker logs at WARN (or $RANKFLOW_WORKER_LOG_LEVEL): state changes of every worker are noise for users. */
function installRuntime(): void {
  if (runtimeInstalled) return;
  runtimeInstalled = true;
  const level = (process.env.RANKFLOW_WORKER_LOG_LEVEL ?? 'WARN').toUpperCase() as 'WARN';
  try {
    const plain = new DefaultLogger(level);
    Runtime.install({
      logger: new DefaultLogger(level, (entry) => {
        const line = workerLogLine(entry, level);
        if (line === null) plain.log(entry.level, entry.message, entry.meta);
        else if (line) process.stderr.write(line + '\n');
      }),
    });
  } catch {
    /* already installed by the embedding process */
  }
}

/**
 * Removes the scratch folders (`<host>-<pid>`) that workers of this host left behind when they were killed
 * (SIGKILL, a crash): their runs resume from the store, nothing in them is used again.
 */
export function removeStaleWorkDirs(root: string, host = hostname()): string[] {
  let entries: string[];
  try {
    entries = readdirSync(root);
  } catch {
    return [];
  }
  const removed: string[] = [];
  for (const name of entries) {
    const m = /^(.*)-(\d+)$/.exec(name);
    if (!m || m[1] !== host || Number(m[2]) === process.pid || pidAlive(Number(m[2]))) continue;
    rmSync(join(root, name), { recursive: true, force: true });
    removed.push(name);
  }
  return removed;
}

export interface RunningWorker {
  /** Resolves when the worker stops; rejects if it crashed. */
  done: Promise<void>;
  shutdown(): Promise<void>;
}

export async function startWorker(config: Config, opts: WorkerOptions): Promise<RunningWorker> {
  installRuntime();
  startForkServer(); // imports torch while the worker connects: the first runs do not wait for it
  const store = await openReadyStore(config.store);
  const slots =
    'gpus' in opts.slots
      ? SlotPool.gpus(opts.slots.gpus, opts.slots.runsPerGpu ?? 1)
      : SlotPool.cpu(opts.slots.cpu, Math.max(1, Math.floor(cpus().length / opts.slots.cpu)));
  const device = 'gpus' in opts.slots ? 'cuda' : 'cpu';
  const queue = opts.queue ?? config.queues[device] ?? `rankflow-${device}`;
  const workRoot = join(PROJECT_ROOT, '.state', 'work');
  const workDir = opts.workDir ?? join(workRoot, `${hostname()}-${process.pid}`);
  removeStaleWorkDirs(workRoot);
  mkdirSync(workDir, { recursive: true, mode: 0o700 });
  const activities = createActivities({ store, workDir, slots, versions: rankflowVersions() });
  const connection = await NativeConnection.connect({ address: config.temporalAddress });
  const grace = `${opts.shutdownGraceS ?? 60} seconds` as const;
  // Heartbeats reach the server at least every 2 s (the SDK's default throttle is 80% of the heartbeat
  // timeout, up to 60 s): a cancel is delivered to a training activity within seconds, so a cancelled run
  // checkpoints and stops instead of training on to its end.
  const heartbeats = {
    maxHeartbeatThrottleInterval: '2 seconds',
    defaultHeartbeatThrottleInterval: '2 seconds',
  } as const;
  const workers: Worker[] = [];
  if (opts.control ?? true) {
    workers.push(
      await Worker.create({
        connection,
        namespace: config.namespace,
        taskQueue: controlQueue(config),
        workflowBundle: await workflowBundle(),
        activities,
        shutdownGraceTime: grace,
        ...heartbeats,
      }),
    );
  }
  workers.push(
    await Worker.create({
      connection,
      namespace: config.namespace,
      taskQueue: queue,
      activities,
      maxConcurrentActivityTaskExecutions: slots.size,
      shutdownGraceTime: grace,
      ...heartbeats,
    }),
  );
  const done = Promise.all(workers.map((w) => w.run())).then(async () => {
    await connection.close();
  });
  return {
    done,
    async shutdown() {
      for (const w of workers) if (w.getState() === 'RUNNING') w.shutdown();
      await done;
    },
  };
}
