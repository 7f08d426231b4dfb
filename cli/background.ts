/**
 * Background workers of the embedded default (`submit --detach`, `resume --detach`): one per training queue,
 * each recorded in `<state>/workers/<queue>.json` with what identifies its process (the pid and the process's
 * start time from /proc) and the Temporal address it serves. A record is trusted only while that very process
 * runs (a recycled pid has another start time) and serves the current address: a worker left behind on the
 * ports of services that were started afresh is stopped and replaced. `rankflow services stop` stops them all
 * (SIGTERM first: running runs checkpoint and resume later).
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import { join } from 'node:path';
import { z } from 'zod';
import { PROJECT_ROOT } from '../core/paths.js';
import { defaultStateDir, pidAlive } from '../services/embedded.js';
import type { Config } from './config.js';

const WorkerRecord = z.object({
  pid: z.number().int().positive(),
  /** The process's start time (clock ticks after boot, /proc/<pid>/stat field 22); null where there is no /proc. */
  start: z.string().nullable(),
  temporal: z.string(),
  queue: z.string().nullable(),
  log: z.string(),
  started_at: z.string(),
});
type WorkerRecord = z.infer<typeof WorkerRecord>;

const workersDir = (): string => join(defaultStateDir(), 'workers');
const tagOf = (queue: string | undefined): string => (queue ? queue.replace(/[^A-Za-z0-9._-]/g, '_') : 'default');

/** The start time of process `pid` (field 22 of /proc/<pid>/stat), or null when it cannot be read. */
export function processStart(pid: number): string | null {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19] ?? null;
  } catch {
    return null;
  }
}

/** True when the recorded process is the one that runs under its pid now. */
export function isRecordedProcess(rec: { pid: number; start: string | null }): boolean {
  if (!pidAlive(rec.pid)) return false;
  return rec.start === null || processStart(rec.pid) === rec.start;
}

function readRecord(file: string): WorkerRecord | null {
  try {
    const r = WorkerRecord.safeParse(JSON.parse(fs.readFileSync(file, 'utf8')));
    return r.success ? r.data : null;
  } catch {
    return null;
  }
}

async function waitGone(rec: WorkerRecord, ms: number): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (!isRecordedProcess(rec)) return true;
    await new Promise((r) => setTimeout(r, 200));
  }
  return !isRecordedProcess(rec);
}

/** SIGTERM (the worker shuts down; its runs checkpoint), SIGKILL to its process group after `graceMs`. */
async function stopWorker(rec: WorkerRecord, graceMs: number): Promise<'terminated' | 'killed' | 'not running'> {
  if (!isRecordedProcess(rec)) return 'not running';
  try {
    process.kill(rec.pid, 'SIGTERM');
  } catch {
    return 'not running';
  }
  if (await waitGone(rec, graceMs)) return 'terminated';
  try {
    process.kill(-rec.pid, 'SIGKILL');
  } catch {
    /* gone meanwhile */
  }
  await waitGone(rec, 5_000);
  return 'killed';
}

/**
 * The background worker serving `queue` (default: the device class queues) for `config`: the recorded one if
 * it is still that process and serves this Temporal address, else a new one. Returns a line saying which.
 */
export async function ensureBackgroundWorker(
  config: Config,
  slots: number,
  queue: string | undefined,
): Promise<string> {
  const dir = workersDir();
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  const tag = tagOf(queue);
  const file = join(dir, `${tag}.json`);
  const serving = queue ? ` serving queue \`${queue}\`` : '';
  const rec = readRecord(file);
  if (rec && isRecordedProcess(rec)) {
    if (rec.temporal === config.temporalAddress)
      return `a background worker${serving} (pid ${rec.pid}) is already running`;
    await stopWorker(rec, 70_000); // it serves services that are gone
  }
  const log = join(dir, `${tag}.log`);
  const fd = fs.openSync(log, 'a', 0o600);
  const args = ['worker', '--cpu-slots', String(slots), ...(queue ? ['--queue', queue] : [])];
  // In the caller's working folder: relative data paths mean to the worker what they mean to `plan`.
  const child = spawn(process.execPath, [join(PROJECT_ROOT, 'cli', 'bin.mjs'), ...args], {
    detached: true,
    stdio: ['ignore', fd, fd],
    env: process.env,
  });
  fs.closeSync(fd);
  child.unref();
  const record: WorkerRecord = {
    pid: child.pid!,
    start: processStart(child.pid!),
    temporal: config.temporalAddress,
    queue: queue ?? null,
    log,
    started_at: new Date().toISOString(),
  };
  fs.writeFileSync(file, JSON.stringify(record, null, 1) + '\n', { mode: 0o600 });
  return `started a background worker${serving} (pid ${child.pid}, log ${log}; \`rankflow services stop\` stops it)`;
}

/** Stops every recorded background worker; returns one line per worker. */
export async function stopBackgroundWorkers(graceMs = 70_000): Promise<string[]> {
  const dir = workersDir();
  let files: string[];
  try {
    files = fs.readdirSync(dir).filter((f) => f.endsWith('.json'));
  } catch {
    return [];
  }
  return await Promise.all(
    files.map(async (f) => {
      const rec = readRecord(join(dir, f));
      fs.rmSync(join(dir, f), { force: true });
      if (!rec) return `worker record ${f}: unreadable (removed)`;
      return `worker pid ${rec.pid}${rec.queue ? ` (queue ${rec.queue})` : ''}: ${await stopWorker(rec, graceMs)}`;
    }),
  );
}
