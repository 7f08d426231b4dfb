/**
 * Recipes that would exhaust memory or the stack (issue 20, items 1 and 2): a training grid of 10^9
 * combinations, an alias bomb, a 10 MB file, nesting deeper than the parser's stack, and (item 4) strings of a
 * megabyte copied into every run. Each is refused with the
 * usual one-line message naming the file (and line:col where there is one), exit 2, no stack trace.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { PROJECT_ROOT } from '../core/paths.js';
import { MAX_ALIAS_COUNT, MAX_RECIPE_BYTES, MAX_RECIPE_DEPTH, planRecipeFile } from '../cli/recipe-io.js';
import { runtimeAvailable } from '../launcher/spawn.js';
import { CHUNK_CHARS, jsonBuffer, jsonChunks } from '../core/json-chunks.js';
import { planRecipe } from '../planning/planner.js';
import { MAX_FIELD_CHARS } from '../schemas/recipe.js';
import { validateRecipe } from '../planning/validate.js';
import { MethodsSnapshot } from '../schemas/describe.js';
import snapshotJson from '../schemas/methods.generated.json' with { type: 'json' };

const SNAP = MethodsSnapshot.parse(snapshotJson);
const HEAD = 'name: t\nmodel: tiny-encoder\ndatasets: [synthetic/seq-cls]\nmethods: [lora]\nranks: [4]\n';
const dir = mkdtempSync(join(tmpdir(), 'rankflow-limits-'));

function validate(name: string, text: string): { code: number | null; stderr: string; file: string } {
  const file = join(dir, name);
  writeFileSync(file, text);
  const r = spawnSync(process.execPath, [join(PROJECT_ROOT, 'cli', 'bin.mjs'), 'validate', file], {
    cwd: PROJECT_ROOT,
    encoding: 'utf8',
    timeout: 60_000,
  });
  return { code: r.status, stderr: r.stderr, file };
}

function expectOneLine(r: ReturnType<typeof validate>, pattern: RegExp): void {
  expect(r.stderr).toMatch(pattern);
  expect(r.code).toBe(2);
  expect(r.stderr).not.toMatch(/\n\s+at /);
  expect(r.stderr.trim().split('\n')).toHaveLength(1);
  expect(r.stderr).toContain(r.file);
}

const values = (n: number, f: (i: number) => number): number[] => Array.from({ length: n }, (_, i) => f(i));

describe('max_runs is checked before the grid is built', () => {
  const raw = (n: number, extra: Record<string, unknown> = {}) => ({
    name: 't',
    model: 'tiny-encoder',
    datasets: ['synthetic/seq-cls'],
    methods: ['lora'],
    ranks: [4],
    training: {
      lr: values(n, (i) => 1e-4 + i * 1e-6),
      max_steps: values(n, (i) => 10 + i),
      batch_size: values(n, (i) => 1 + i),
    },
    ...extra,
  });
  const plan = (r: Record<string, unknown>) => {
    const v = validateRecipe(r);
    expect(v.issues).toEqual([]);
    return planRecipe(v.recipe!, { methods: SNAP.methods, datasets: SNAP.datasets });
  };

  it('three training lists of 1,000 values (10^9 combinations): the max_runs error, no run built', () => {
    const r = plan(raw(1000));
    expect(r.runs).toEqual([]);
    expect(r.issues.map((i) => i.message)).toEqual([
      'the recipe expands to more than max_runs=2000 runs (1000000000 grid combinations before exclude rules and deduplication)',
    ]);
  });

  it('a grid under the limit is expanded only up to max_runs (100^3 combinations)', () => {
    const r = plan(raw(100, { max_runs: 50 }));
    expect(r.issues[0]!.message).toMatch(/more than max_runs=50 runs \(1000000 grid combinations/);
  });

  it('exclude rules still bring a large grid under max_runs (the grid is not refused by its size alone)', () => {
    const r = plan(raw(20, { exclude: [{ training: { batch_size: values(19, (i) => 2 + i) } }], max_runs: 400 }));
    expect(r.issues).toEqual([]);
    expect(r.runs).toHaveLength(20 * 20);
    expect(r.gridSize).toBe(20 ** 3);
  });

  it('validate on the 20 KB recipe file answers with the one-line error', () => {
    const list = (n: number, f: (i: number) => number) => `[${values(n, f).join(', ')}]`;
    const text =
      HEAD +
      `training:\n  lr: ${list(1000, (i) => 1e-4 + i * 1e-6)}\n  max_steps: ${list(1000, (i) => 10 + i)}\n` +
      `  batch_size: ${list(1000, (i) => 1 + i)}\n`;
    expectOneLine(validate('grid.yaml', text), /more than max_runs=2000 runs \(1000000000 grid combinations/);
  });
});

describe('YAML that exhausts the parser', () => {
  it('an alias bomb: one line with the alias position, not a ReferenceError stack', () => {
    const lines = ['a0: &a0 [x, x, x, x, x, x, x, x, x, x]'];
    for (let i = 1; i < 9; i++)
      lines.push(
        `a${i}: &a${i} [${Array(10)
          .fill(`*a${i - 1}`)
          .join(', ')}]`,
      );
    const r = validate('alias.yaml', HEAD + lines.join('\n') + '\n');
    expectOneLine(
      r,
      new RegExp(`alias\\.yaml:7:10: YAML: aliases expand to too many nodes \\(more than ${MAX_ALIAS_COUNT}`),
    );
  });

  it('a recipe over the size cap is refused before parsing, saying the cap', () => {
    const tags = Array.from({ length: 120_000 }, (_, i) => `  - tag-${i}\n`).join('');
    expect(Buffer.byteLength(HEAD + tags)).toBeGreaterThan(MAX_RECIPE_BYTES);
    expectOneLine(
      validate('big.yaml', HEAD + 'tags:\n' + tags),
      /big\.yaml: the recipe is 1\.\d MiB, more than the 1 MiB/,
    );
  });

  it('nesting deeper than the stack (20,000 flow levels) says what it is', () => {
    const r = validate('deep.yaml', HEAD + 'description: ' + '['.repeat(20000) + ']'.repeat(20000) + '\n');
    expectOneLine(r, /deep\.yaml:6:\d+: YAML: mappings or lists nested too deep \(a recipe may nest 64 levels\)/);
    expect(r.stderr).not.toMatch(/call stack/);
  });

  it(`nesting past ${MAX_RECIPE_DEPTH} levels in a model config is refused at its line and column`, () => {
    const deep = '{a: '.repeat(100) + '1' + '}'.repeat(100);
    const text = `name: t\nmodel: {name: tiny-encoder, config: ${deep}}\ndatasets: [synthetic/seq-cls]\nmethods: [lora]\n`;
    expectOneLine(
      validate('deep-config.yaml', text),
      /deep-config\.yaml:2:\d+: YAML: mappings or lists nested too deep/,
    );
  });
});

describe('huge strings', () => {
  it('a 1 MB tag is refused by validate, naming the field (it made plan --json and submit crash on 600 runs)', () => {
    const r = validate('tag.yaml', HEAD + `tags: ["${'x'.repeat(1_000_000)}"]\n`);
    expectOneLine(
      r,
      new RegExp(`tag\\.yaml:6:8: tags\\[0\\]: expected at most ${MAX_FIELD_CHARS} characters, got 1000000`),
    );
  });

  it('a long string inside a free-form value (model.config) is refused too', () => {
    const text = `name: t\nmodel: {name: tiny-encoder, config: {note: "${'y'.repeat(5000)}"}}\ndatasets: [synthetic/seq-cls]\nmethods: [lora]\nranks: [4]\n`;
    expectOneLine(
      validate('config-str.yaml', text),
      /config-str\.yaml:2:\d+: model\.config\.note: a string longer than 4096/,
    );
  });

  it('manifests are written in chunks: the same text as JSON.stringify, no chunk much past CHUNK_CHARS', () => {
    const v = validateRecipe({
      ...{ name: 't', model: 'tiny-encoder', datasets: ['synthetic/seq-cls'], methods: ['lora', 'dora'] },
      ranks: [1, 2, 4, 8],
      seeds: values(50, (i) => i),
      tags: ['ünïcode "quoted" \\ tag', 'x'.repeat(MAX_FIELD_CHARS)],
    });
    const runs = planRecipe(v.recipe!, { methods: SNAP.methods, datasets: SNAP.datasets }).runs;
    expect(runs).toHaveLength(400);
    const value = { a: undefined, empty: [], none: {}, n: null, runs, nested: [[], [{}], [1, 'two', false]] };
    for (const indent of [0, 2]) {
      const chunks = [...jsonChunks(value, indent)];
      expect(chunks.join('')).toBe(JSON.stringify(value, null, indent || undefined));
      expect(chunks.length).toBeGreaterThan(10);
      for (const c of chunks) expect(c.length).toBeLessThan(CHUNK_CHARS + 2 * MAX_FIELD_CHARS + 100);
    }
    expect(jsonBuffer(value).toString('utf8')).toBe(JSON.stringify(value));
  });
});

// Item 3: absurd sizes. The runtime's count refuses them (runtime-native/tests/test_absurd_sizes.py); plan
// turns the refusal into the recipe's error at the field, instead of an uncounted run that fails five attempts.
describe.skipIf(!runtimeAvailable())('absurd sizes are plan errors (needs the runtime; skipped without it)', () => {
  it('ranks: [1e12] and model.config.hidden_size: 1e8', async () => {
    const rank = join(dir, 'rank.yaml');
    writeFileSync(rank, HEAD.replace('ranks: [4]', 'ranks: [1000000000000]'));
    await expect(planRecipeFile(rank, { countCache: false })).rejects.toThrow(
      /rank\.yaml:5:1: ranks: the runtime refuses the rank: lora at rank 1000000000000 makes 5\.12e\+14 trainable parameters \(at most 1e\+12\); the adapted layers are at most 64 wide/,
    );
    const hidden = join(dir, 'hidden.yaml');
    writeFileSync(
      hidden,
      HEAD.replace('model: tiny-encoder', 'model: {name: tiny-encoder, config: {hidden_size: 100000000}}'),
    );
    await expect(planRecipeFile(hidden, { countCache: false })).rejects.toThrow(
      /hidden\.yaml:2:\d+: model\.config: the runtime cannot build the model: the model would have 8e\+16 parameters/,
    );
  }, 300_000);
});
