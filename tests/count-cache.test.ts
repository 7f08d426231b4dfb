/**
 * The count cache (launcher/count-cache.ts): a re-plan answers parameter counts from `<state>/count-cache`
 * without starting the runtime and prints exactly what the first plan printed; damaged or foreign entries
 * are ignored and counted again; concurrent plans leave only whole entries; a refusal (a broken model) is
 * cached with its reason, and editing the model folder counts again. Real CLI, real runtime; the runtime's
 * starts are observed through a `RANKFLOW_PYTHON` wrapper that logs each start.
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, writeFileSync, chmodSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

const ROOT = join(import.meta.dirname, '..');
const PYTHON = join(ROOT, 'runtime-native', '.venv', 'bin', 'python');
const tmp = mkdtempSync(join(tmpdir(), 'rankflow-count-cache-'));
const STATE = join(tmp, 'state');
const CACHE = join(STATE, 'count-cache');
const STARTS = join(tmp, 'starts.log');
const WRAPPER = join(tmp, 'python.sh');
writeFileSync(WRAPPER, `#!/bin/sh\necho start >> '${STARTS}'\nexec '${PYTHON}' "$@"\n`);
chmodSync(WRAPPER, 0o755);

const env = {
  ...process.env,
  RANKFLOW_CONFIG: join(tmp, 'none.yaml'),
  RANKFLOW_STATE_DIR: STATE,
  RANKFLOW_PYTHON: WRAPPER,
};
const starts = (): number => (existsSync(STARTS) ? readFileSync(STARTS, 'utf8').split('\n').filter(Boolean).length : 0);
const plan = (file: string) =>
  spawnSync(process.execPath, [join(ROOT, 'cli', 'bin.mjs'), 'plan', file], {
    encoding: 'utf8',
    cwd: tmp,
    env,
    timeout: 300_000,
  });
const planAsync = (file: string): Promise<{ code: number | null; stdout: string }> =>
  new Promise((resolve) => {
    const c = spawn(process.execPath, [join(ROOT, 'cli', 'bin.mjs'), 'plan', file], { cwd: tmp, env });
    let stdout = '';
    c.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    c.on('close', (code) => resolve({ code, stdout }));
  });

// budget matching (counts needed to plan) plus params per run: both kinds of count go through the cache
writeFileSync(
  join(tmp, 'budget.yaml'),
  [
    'name: cache',
    'model: tiny-encoder',
    'datasets: [synthetic/seq-cls, synthetic/regression]',
    'methods:',
    '  - lora',
    '  - name: loldu',
    '    ranks: [2, 4, 8, 16]',
    '  - full',
    'budget: {match: lora, rank: 4}',
    'training: {max_steps: 2}',
    '',
  ].join('\n'),
);
const entries = (): string[] => (existsSync(CACHE) ? readdirSync(CACHE) : []);

describe('count cache', () => {
  it('a re-plan starts no runtime and prints the same plan; damaged and foreign entries are counted again', () => {
    const first = plan('budget.yaml');
    expect(first.status, first.stderr).toBe(0);
    expect(first.stdout).toMatch(/loldu/);
    const cold = starts();
    expect(cold).toBeGreaterThan(0);
    expect(cold).toBeLessThanOrEqual(2); // budget candidates, then the runs' counts: batched, not one per spec
    expect(entries().length).toBeGreaterThan(3);

    const second = plan('budget.yaml');
    expect(second.status, second.stderr).toBe(0);
    expect(starts()).toBe(cold);
    expect(second.stdout).toBe(first.stdout);

    // damage every entry: garbage, a foreign key, an invalid count (negative), a truncated file
    const files = entries();
    files.forEach((f, i) => {
      const p = join(CACHE, f);
      const good = JSON.parse(readFileSync(p, 'utf8')) as { key: string; count: { trainable: number } | null };
      const bad = [
        'not json',
        JSON.stringify({ ...good, key: 'someone-else' }),
        JSON.stringify({ ...good, count: { trainable: -1, total: 5 } }),
        readFileSync(p, 'utf8').slice(0, 10),
      ][i % 4]!;
      writeFileSync(p, bad);
    });
    const third = plan('budget.yaml');
    expect(third.status, third.stderr).toBe(0);
    expect(starts()).toBeGreaterThan(cold);
    expect(third.stdout).toBe(first.stdout);
    // the entries are whole again, and trusted again
    const after = starts();
    expect(plan('budget.yaml').stdout).toBe(first.stdout);
    expect(starts()).toBe(after);
  }, 600_000);

  it('concurrent plans on an empty cache agree and leave only whole entries', async () => {
    const dir = join(tmp, 'conc');
    mkdirSync(dir, { recursive: true });
    env.RANKFLOW_STATE_DIR = dir;
    try {
      const [a, b] = await Promise.all([planAsync('budget.yaml'), planAsync('budget.yaml')]);
      expect(a.code).toBe(0);
      expect(b.code).toBe(0);
      expect(a.stdout).toBe(b.stdout);
      const names = readdirSync(join(dir, 'count-cache'));
      expect(names.filter((n) => !n.endsWith('.json'))).toEqual([]);
      for (const n of names) expect(() => JSON.parse(readFileSync(join(dir, 'count-cache', n), 'utf8'))).not.toThrow();
    } finally {
      env.RANKFLOW_STATE_DIR = STATE;
    }
  }, 600_000);

  it('a cached count keeps what the runtime said of it: estimated (ranks from the weights) and the head share', () => {
    writeFileSync(
      join(tmp, 'estimated.yaml'),
      [
        'name: estimated',
        'model: tiny-encoder',
        'datasets: [synthetic/seq-cls]',
        'methods:',
        '  - {name: lora, ranks: [4]}',
        '  - {name: lord, ranks: [32], options: {rank_rule: energy, energy: 0.5}}',
        'training: {max_steps: 2}',
        '',
      ].join('\n'),
    );
    const json = (): { runs: { params: { estimated?: boolean; head?: number } }[] } => {
      const r = spawnSync(process.execPath, [join(ROOT, 'cli', 'bin.mjs'), 'plan', 'estimated.yaml', '--json'], {
        encoding: 'utf8',
        cwd: tmp,
        env,
        timeout: 300_000,
      });
      expect(r.status, r.stderr).toBe(0);
      return JSON.parse(r.stdout) as { runs: { params: { estimated?: boolean; head?: number } }[] };
    };
    const first = json();
    const once = starts();
    const again = json();
    expect(starts()).toBe(once); // answered from the cache
    expect(again).toEqual(first);
    expect(again.runs[1]!.params.estimated).toBe(true);
    expect(again.runs[0]!.params.estimated).toBeUndefined();
    expect(again.runs[0]!.params.head).toBeGreaterThan(0);
  }, 600_000);

  it('a refusal is cached with its reason; editing the model folder counts again', () => {
    const model = join(tmp, 'mymodel');
    mkdirSync(model, { recursive: true });
    writeFileSync(join(model, 'config.json'), JSON.stringify({ model_type: 'no-such-architecture', hidden_size: 8 }));
    writeFileSync(
      join(tmp, 'local.yaml'),
      [
        'name: local',
        'model:',
        '  name: ./mymodel',
        '  task: seq-cls',
        'datasets: [synthetic/seq-cls]',
        'methods: [lora]',
        'ranks: [4]',
        'training: {max_steps: 2}',
        '',
      ].join('\n'),
    );
    const before = starts();
    const r1 = plan('local.yaml');
    expect(r1.status).toBe(2);
    expect(r1.stderr).toMatch(/local\.yaml:3:\d+: model\.name: the runtime cannot build the model: /);
    const once = starts();
    expect(once).toBeGreaterThan(before);
    const r2 = plan('local.yaml');
    expect(r2.status).toBe(2);
    expect(r2.stderr).toBe(r1.stderr);
    expect(starts()).toBe(once);

    // a fixed config.json is a different model: counted, not answered from the cached refusal
    writeFileSync(
      join(model, 'config.json'),
      JSON.stringify({
        model_type: 'bert',
        hidden_size: 16,
        num_hidden_layers: 1,
        num_attention_heads: 2,
        intermediate_size: 32,
        vocab_size: 128,
        max_position_embeddings: 64,
      }),
    );
    const r3 = plan('local.yaml');
    expect(starts()).toBeGreaterThan(once);
    expect(r3.stderr).not.toMatch(/no-such-architecture/);
  }, 600_000);
});
