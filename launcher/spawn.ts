/**
 * The runtime launcher: the one way rankflow starts the native runtime (`python -m rankflow_runtime ...`),
 * used by the training activity and by `count`, `describe` and `export`.
 *
 * - Python: `$RANKFLOW_PYTHON`, else the project venv `runtime-native/.venv/bin/python`.
 * - Working folder: **the working folder of the rankflow process that starts the runtime** (the `rankflow`
 *   command, or the worker; the embedded default's worker runs inside `rankflow submit`, and `--detach`
 *   starts it in the same folder). So a relative `dataset.data_root`, `$RANKFLOW_DATA` or local model
 *   path means the same to `plan` (which counts parameters through the runtime) and to training. Workers
 *   on other hosts resolve relative paths against their own working folder: use absolute paths there.
 * - Environment: the caller's, plus `PYTHONUNBUFFERED=1`, the runtime package first on `PYTHONPATH`, plus
 *   what the caller adds (a slot's `CUDA_VISIBLE_DEVICES`, the run id).
 * - Process: an argument array (never a shell), its own process group (DataLoader workers and other
 *   grandchildren die with it), and SIGTERM when the parent dies (Linux PR_SET_PDEATHSIG), so a worker
 *   killed with SIGKILL leaves no orphaned training process behind.
 *
 * `spawnRuntime` parses stdout as JSON-lines events validated by the zod schema (stderr goes to a log
 * file); `runRuntime` collects stdout and stderr of a short command (`describe`, `count`).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, createWriteStream, existsSync, mkdtempSync, openSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { createInterface } from 'node:readline';
import { join } from 'node:path';
import { RunnerEvent } from '../schemas/events.js';
import { RUNTIME_DIR } from '../core/paths.js';
import { UserError } from '../core/errors.js';

/** The Python interpreter of the runtime: `$RANKFLOW_PYTHON`, else the project venv. */
export function runtimePython(): string {
  return process.env.RANKFLOW_PYTHON || join(RUNTIME_DIR, '.venv', 'bin', 'python');
}

/** True when the interpreter exists (a configured `RANKFLOW_PYTHON` is trusted as given). */
export function runtimeAvailable(): boolean {
  return Boolean(process.env.RANKFLOW_PYTHON) || existsSync(runtimePython());
}

/** The runtime's working folder: that of the process starting it (see the rule above). */
export function runtimeCwd(): string {
  return process.cwd();
}

/** The runtime's environment: the caller's, unbuffered output, the package on PYTHONPATH, then `extra`. */
export function runtimeEnv(extra: Record<string, string | undefined> = {}): NodeJS.ProcessEnv {
  const pythonPath = [RUNTIME_DIR, extra.PYTHONPATH ?? process.env.PYTHONPATH].filter(Boolean).join(':');
  return { ...process.env, PYTHONUNBUFFERED: '1', ...extra, PYTHONPATH: pythonPath };
}

/**
 * Runs `rankflow_runtime` (or `$RANKFLOW_RUNTIME_MODULE`, which the orchestration benchmark points at a
 * no-op runtime) after asking Linux for SIGTERM when the parent dies.
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

/**
 * How a training run (`spawnRuntime`) starts: `warm` (default) through the warm runtime, a fork server
 * that imported torch once (`rankflow_runtime/forkserver.py`), or `process`, one fresh Python per run.
 * `RANKFLOW_RUNTIME_MODE=process` (or `rankflow worker --runtime process`) asks for the latter.
 */
export function runtimeMode(): 'warm' | 'process' {
  return process.env.RANKFLOW_RUNTIME_MODE === 'process' ? 'process' : 'warm';
}

interface ForkServer {
  key: string;
  socket: string;
  pid: number;
}
let forkServer: ForkServer | null = null;

/** The pid of this process's warm runtime, if one is running (for tests and benchmarks). */
export function forkServerPid(): number | null {
  return forkServer?.pid ?? null;
}

/**
 * Starts this process's warm runtime now (a worker calls it when it starts), so that its first runs do not wait
 * for the imports (2-4 s on a CPU); a no-op in `process` mode or without the runtime installed.
 */
export function startForkServer(): void {
  if (runtimeMode() === 'warm' && runtimeAvailable()) forkServerSocket(runtimePython());
}

/** Stops this process's warm runtime (its running children finish on their own SIGTERM). */
export function stopForkServer(): void {
  if (forkServer) signalGroup(forkServer.pid, 'SIGTERM');
  forkServer = null;
}

/** The socket of this process's warm runtime, started on first use (again when the runtime changed or died). */
function forkServerSocket(python: string): string {
  const key = [python, process.env.RANKFLOW_RUNTIME_MODULE ?? '', process.env.PYTHONPATH ?? ''].join('\0');
  if (forkServer?.key === key) return forkServer.socket;
  stopForkServer();
  const dir = mkdtempSync(join(tmpdir(), 'rankflow-warm-'));
  const socket = join(dir, 'socket');
  const log = openSync(join(dir, 'forkserver.log'), 'a');
  const boot = BOOT.replace(
    'os.environ.get("RANKFLOW_RUNTIME_MODULE") or "rankflow_runtime"',
    '"rankflow_runtime.forkserver"',
  );
  const child = spawn(python, ['-c', boot, '--socket', socket], {
    cwd: runtimeCwd(),
    env: runtimeEnv(),
    stdio: ['ignore', 'ignore', log],
    detached: true,
  });
  closeSync(log);
  child.unref();
  child.once('error', () => undefined); // the client says the server does not answer
  if (child.pid === undefined) throw cannotStart('spawn failed');
  const server: ForkServer = { key, socket, pid: child.pid };
  child.once('exit', () => {
    if (forkServer === server) forkServer = null;
    rmSync(dir, { recursive: true, force: true });
  });
  forkServer = server;
  return socket;
}

process.once('exit', stopForkServer);

function launch(args: string[], env: Record<string, string | undefined> | undefined, warm = false): ChildProcess {
  const python = runtimePython();
  if (!runtimeAvailable()) {
    throw new UserError(
      `the Python runtime is not installed (${python} is missing); run \`bash scripts/setup.sh\` or set RANKFLOW_PYTHON`,
    );
  }
  const argv = warm
    ? ['-S', join(RUNTIME_DIR, 'rankflow_runtime', 'forkclient.py'), forkServerSocket(python), ...args]
    : ['-c', BOOT, ...args];
  return spawn(python, argv, {
    cwd: runtimeCwd(),
    env: runtimeEnv(env),
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true, // own process group: we signal -pid
  });
}

const cannotStart = (why: string): UserError =>
  new UserError(
    `cannot start the runtime interpreter \`${runtimePython()}\`: ${why}; run \`bash scripts/setup-python.sh\` or set RANKFLOW_PYTHON`,
  );

function signalGroup(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(-pid, sig);
  } catch {
    /* already gone */
  }
}

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
  /** Added to the runtime's environment (see `runtimeEnv`). */
  env?: Record<string, string | undefined>;
  /** stderr of the runtime is appended here. */
  logFile: string;
  onEvent: (event: RunnerEvent) => void;
}

/** Starts a runtime command whose stdout is JSON-lines events (`run`, `smoke`, `export`). */
export function spawnRuntime(opts: SpawnOptions): RunnerProcess {
  const child = launch(opts.args, opts.env, runtimeMode() === 'warm');
  const pid = child.pid;
  if (pid === undefined) {
    child.once('error', () => undefined); // reported here instead
    throw cannotStart('spawn failed');
  }
  const log = createWriteStream(opts.logFile, { flags: 'a' });
  child.stderr!.pipe(log);
  const badLines: string[] = [];
  const rl = createInterface({ input: child.stdout! });
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
  let exited = false;
  void exit.then(
    () => (exited = true),
    () => (exited = true),
  );
  return {
    pid,
    exit,
    kill: () => signalGroup(pid, 'SIGKILL'),
    async terminate(graceMs: number): Promise<RunnerExit> {
      if (!exited) signalGroup(pid, 'SIGTERM');
      const timer = setTimeout(() => signalGroup(pid, 'SIGKILL'), graceMs);
      try {
        return await exit;
      } finally {
        clearTimeout(timer);
        signalGroup(pid, 'SIGKILL'); // reap grandchildren that ignored SIGTERM
      }
    },
  };
}

export interface Completed {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs a short runtime command and collects its output; killed (the whole group) after `timeoutMs`. */
export function runRuntime(args: string[], timeoutMs: number): Promise<Completed> {
  return new Promise((resolve, reject) => {
    let child: ChildProcess;
    try {
      child = launch(args, undefined);
    } catch (e) {
      reject(e as Error);
      return;
    }
    let stdout = '';
    let stderr = '';
    child.stdout!.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const timer = setTimeout(
      () => (child.pid === undefined ? undefined : signalGroup(child.pid, 'SIGKILL')),
      timeoutMs,
    );
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(cannotStart(err.message));
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}
