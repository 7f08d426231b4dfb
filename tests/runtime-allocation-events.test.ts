/**
 * The runtime's `allocation` events (methods that move rank during training) against the zod contract:
 * a real runtime process trains a tiny model with a test-only growing method and every stdout line must
 * parse as a RunnerEvent.
 */
import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { describe, expect, it } from 'vitest';
import { type AllocationEvent, RunnerEvent } from '../schemas/events.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const PY = process.env.RANKFLOW_PYTHON ?? join(ROOT, 'runtime-native', '.venv', 'bin', 'python');

const SCRIPT = `
import json, sys
sys.path.insert(0, "tests")
import test_step_hooks as t
from rankflow_runtime.methods.base import register
from rankflow_runtime.spec import parse_spec
from rankflow_runtime.train import run_training
register(t.Grow)
spec = t.grow_spec(**{"training.max_steps": 7})
sys.exit(run_training(parse_spec(json.loads(json.dumps(spec))), sys.argv[1]))
`;

describe('runtime allocation events', () => {
  it('every line of a growing run parses, and the final event carries the history', () => {
    const out = mkdtempSync(join(tmpdir(), 'rankflow-alloc-'));
    const r = spawnSync(PY, ['-c', SCRIPT, out], {
      cwd: join(ROOT, 'runtime-native'),
      encoding: 'utf8',
      env: { ...process.env, OMP_NUM_THREADS: '1' },
      timeout: 120_000,
    });
    expect(r.status, r.stderr.slice(-2000)).toBe(0);
    const lines = r.stdout.split('\n').filter((l) => l.trim());
    const events = lines.map((l) => RunnerEvent.parse(JSON.parse(l)));
    const allocs = events.filter((e): e is AllocationEvent => e.event === 'allocation');
    expect(allocs.map((a) => a.step)).toEqual([0, 3, 6, 7]);
    const final = allocs[allocs.length - 1]!;
    expect(final.final).toBe(true);
    expect(final.history?.map((h) => h.step)).toEqual([0, 3, 6]);
    expect(new Set(Object.values(final.ranks))).toEqual(new Set([3]));
    expect(allocs[0]!.history).toBeNull();
  }, 150_000);
});
