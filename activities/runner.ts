/**
 * Spawning the native runtime: an argument array (never a shell), its own process group (so DataLoader
 * workers and other grandchildren die with it), stdout parsed as JSON-lines events validated by the zod
 * schema, stderr appended to a log file.
 */
import { spawn } from 'node:child_process';
import { createWriteStream, existsSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { RunnerEvent } from '../schemas/events.js';

export const PROJECT_ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');

/** The Python interpreter of the runtime: `$RANKFLOW_PYTHON`, else the project venv. */
export function runtimePython(): string {
  const fromEnv = process.env.RANKFLOW_PYTHON;
  if (fromEnv) return fromEnv;
  const venv = join(PROJECT_ROOT, 'runtime-native', '.venv', 'bin', 'python');
  if (!existsSync(venv)) {
    throw new Error(
      `the Python runtime is not installed (${venv} is missing); run \`bash scripts/setup.sh\` or set RANKFLOW_PYTHON`,
    );
  }
  return venv;
}

/**
 * Starts `python -m rankflow_runtime` (or `$RANKFLOW_RUNTIME_MODULE`, which the orchestration benchmark
 * points at a no-op runtime) so that the runtime gets SIGTERM when the worker process dies
 * (Linux PR_SET_PDEATHSIG): a worker killed with SIGKILL leaves no orphaned training process behind.
 */
const BOOT = [
  'import ctypes, ctypes.util, signal, sys, runpy',
  'try:',
  '    ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True).prctl(1, signal.SIGTERM)',
  'except Exception:',
  '    pass',
  'import os',
  'runpy.run_module(os.environ.get("RANKFLOW_RUNTIME_MODULE") or "rankflow_runtime", run_name="__main__", alter_sys=True)',
].join('\n');

export interface RunnerExit {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** Lines on stdout that were not valid events (a protocol error if non-empty). */
  badLines: string[];
}

export interface RunnerProcess {
  pid: number;
  exit: Promise<RunnerExit>;
  /** SIGTERM to the whole process group, SIGKILL after `graceMs` if it is still alive. */
  terminate(graceMs: number): Promise<RunnerExit>;
  /** SIGKILL to the whole process group. */
  kill(): void;
}

export interface SpawnOptions {
  args: string[];
  env?: Record<string, string | undefined>;
  cwd?: string;
  /** stderr of the runtime is appended here. */
  logFile: string;
  onEvent: (event: RunnerEvent) => void;
}

export function spawnRuntime(opts: SpawnOptions): RunnerProcess {
  const python = runtimePython();
  const child = spawn(python, ['-c', BOOT, ...opts.args], {
    cwd: opts.cwd ?? join(PROJECT_ROOT, 'runtime-native'),
    env: { ...process.env, PYTHONUNBUFFERED: '1', ...opts.env },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true, // own process group: we signal -pid
  });
  const log = createWriteStream(opts.logFile, { flags: 'a' });
  child.stderr.pipe(log);
  const badLines: string[] = [];
  const rl = createInterface({ input: child.stdout });
  rl.on('line', (line) => {
    if (line.trim() === '') return;
    let parsed: unknown;
    try {
      parsed = JSON.parse(line);
    } catch {
      badLines.push(line);
      log.write(`[rankflow] not a JSON event on stdout: ${line}\n`);
      return;
    }
    const r = RunnerEvent.safeParse(parsed);
    if (!r.success) {
      badLines.push(line);
      log.write(`[rankflow] invalid event on stdout: ${line}\n  ${r.error.message}\n`);
      return;
    }
    opts.onEvent(r.data);
  });
  const stdoutClosed = new Promise<void>((resolve) => rl.once('close', () => resolve()));
  const exit = new Promise<RunnerExit>((resolve, reject) => {
    child.once('error', reject);
    child.once('close', (code, signal) => {
      void stdoutClosed.then(() => log.end(() => resolve({ code, signal, badLines })));
    });
  });
  const pid = child.pid;
  if (pid === undefined) throw new Error(`could not start ${python}`);
  const signalGroup = (sig: NodeJS.Signals): void => {
    try {
      process.kill(-pid, sig);
    } catch {
      /* already gone */
    }
  };
  let exited = false;
  void exit.then(
    () => (exited = true),
    () => (exited = true),
  );
  return {
    pid,
    exit,
    kill: () => signalGroup('SIGKILL'),
    async terminate(graceMs: number): Promise<RunnerExit> {
      if (!exited) signalGroup('SIGTERM');
      const timer = setTimeout(() => signalGroup('SIGKILL'), graceMs);
      try {
        return await exit;
      } finally {
        clearTimeout(timer);
        signalGroup('SIGKILL'); // reap grandchildren that ignored SIGTERM
      }
    },
  };
}
