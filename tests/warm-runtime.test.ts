/**
 * The warm runtime (launcher/spawn.ts `runtimeMode`, rankflow_runtime/forkserver.py) through the real
 * launcher and the real Python runtime: runs forked from one server are what one process per run gave —
 * events on stdout, SIGTERM checkpoints (exit 4, `preempted`), a SIGKILL of the run's process kills the
 * forked run too, one failing run (exit 2) leaves the server serving the next, and a run after a kill gets
 * the same server. `RANKFLOW_RUNTIME_MODE=process` starts no server.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { forkServerPid, spawnRuntime, stopForkServer, type RunnerExit } from '../launcher/spawn.js';
import type { RunnerEvent } from '../schemas/events.js';

const tmp = mkdtempSync(join(tmpdir(), 'rankflow-warm-'));
const spec = (steps: number, seed: number): string => {
  const file = join(tmp, `spec-${steps}-${seed}.json`);
  writeFileSync(
    file,
    JSON.stringify({
      schema: 'rankflow.run/v1',
      model: { name: 'tiny-encoder', source: 'builtin', task: 'seq-cls', config: {}, random_init: true },
      dataset: {
        name: 'synthetic/seq-cls',
        data_root: null,
        max_length: 16,
        train_size: 64,
        eval_size: 16,
        eval_split: 'validation',
        metric: 'accuracy',
        options: {},
      },
      method: { name: 'lora', rank: 2, options: {}, targets: [] },
      training: {
        optimizer: 'adamw',
        lr: 1e-3,
        lr_groups: {},
        weight_decay: 0,
        schedule: 'constant',
        warmup_ratio: 0,
        max_steps: steps,
        epochs: null,
        batch_size: 4,
        eval_batch_size: 8,
        grad_accum: 1,
        max_grad_norm: null,
        precision: 'fp32',
        eval_every: null,
        checkpoint_every: null,
        log_every: 1,
        train_head: true,
      },
      seed,
      device: 'cpu',
    }),
  );
  return file;
};

function start(args: string[], onEvent: (e: RunnerEvent) => void = () => undefined) {
  const events: RunnerEvent[] = [];
  const proc = spawnRuntime({
    args,
    logFile: join(tmp, 'runtime.log'),
    env: { OMP_NUM_THREADS: '1', RANKFLOW_NUM_THREADS: '1' },
    onEvent: (e) => {
      events.push(e);
      onEvent(e);
    },
  });
  return { proc, events };
}

const alive = (pid: number): boolean => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

afterAll(() => stopForkServer());

describe('warm runtime', () => {
  it('runs, SIGTERM checkpoints, SIGKILL kills the forked run, a failure leaves the server serving', async () => {
    delete process.env.RANKFLOW_RUNTIME_MODE;
    const a = start(['run', '--spec', spec(3, 0), '--out', join(tmp, 'a')]);
    const ea = await a.proc.exit;
    expect(ea.code).toBe(0);
    expect(a.events.map((e) => e.event)).toContain('done');
    const server = forkServerPid();
    expect(server).not.toBeNull();
    const started = a.events.find((e) => e.event === 'started') as Extract<RunnerEvent, { event: 'started' }>;
    expect(started.pid).not.toBe(a.proc.pid); // the run is the server's fork, not the launched client

    // SIGTERM mid-run: the runtime checkpoints at the end of the step and exits 4
    let term: Promise<RunnerExit> | null = null;
    const b = start(['run', '--spec', spec(100000, 1), '--out', join(tmp, 'b')], (e) => {
      if (e.event === 'progress' && term === null) term = b.proc.terminate(120_000);
    });
    const eb = await b.proc.exit;
    expect(eb.code).toBe(4);
    expect(b.events.map((e) => e.event)).toContain('preempted');
    expect(b.events.some((e) => e.event === 'checkpoint')).toBe(true);

    // SIGKILL of the launched process mid-run: the forked run dies with it
    let runPid = 0;
    const c = start(['run', '--spec', spec(100000, 2), '--out', join(tmp, 'c')], (e) => {
      if (e.event === 'started') runPid = e.pid;
      if (e.event === 'progress' && runPid && alive(runPid)) c.proc.kill();
    });
    const ec = await c.proc.exit;
    expect(ec.signal).toBe('SIGKILL');
    expect(runPid).toBeGreaterThan(0);
    for (let i = 0; i < 100 && alive(runPid); i++) await new Promise((r) => setTimeout(r, 100));
    expect(alive(runPid)).toBe(false);

    // a run the runtime refuses (no such spec file): exit 2; the next run is served by the same server
    const d = start(['run', '--spec', join(tmp, 'missing.json'), '--out', join(tmp, 'd')]);
    expect((await d.proc.exit).code).toBe(2);
    const e = start(['run', '--spec', spec(2, 3), '--out', join(tmp, 'e')]);
    expect((await e.proc.exit).code).toBe(0);
    expect(forkServerPid()).toBe(server);
    expect(alive(server!)).toBe(true);
  }, 600_000);

  it('RANKFLOW_RUNTIME_MODE=process: one Python per run, no server', async () => {
    stopForkServer();
    process.env.RANKFLOW_RUNTIME_MODE = 'process';
    try {
      const a = start(['run', '--spec', spec(2, 4), '--out', join(tmp, 'p')]);
      expect((await a.proc.exit).code).toBe(0);
      const started = a.events.find((e) => e.event === 'started') as Extract<RunnerEvent, { event: 'started' }>;
      expect(started.pid).toBe(a.proc.pid);
      expect(forkServerPid()).toBeNull();
    } finally {
      delete process.env.RANKFLOW_RUNTIME_MODE;
    }
  }, 300_000);
});
