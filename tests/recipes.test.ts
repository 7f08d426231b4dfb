/**
 * Recipe files: YAML positions in errors, `extends`/`preset` composition, the CLI's behaviour on bad input,
 * and golden plans of the example recipes in `recipes/` (counts from the test oracle, see planner-oracle.ts).
 * Regenerate the goldens with UPDATE_GOLDEN=1 after an intended change, and review the diff.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parsePlanArgs, planJson, renderPlanTable } from '../cli/commands/plan.js';
import { UserError } from '../core/errors.js';
import { loadRecipeFile, planRecipeFile, type PlanFileOptions } from '../cli/recipe-io.js';
import { PlannedRun } from '../schemas/runspec.js';
import { oracleCountFn } from './planner-oracle.js';

const ROOT = join(import.meta.dirname, '..');
const GOLDEN = join(ROOT, 'tests', 'golden', 'plan');
const tmp = mkdtempSync(join(tmpdir(), 'rankflow-recipes-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

function write(rel: string, text: string): string {
  const p = join(tmp, rel);
  mkdirSync(dirname(p), { recursive: true });
  writeFileSync(p, text);
  return p;
}

const ORACLE: PlanFileOptions = { countFn: oracleCountFn() };

async function planError(file: string, opts: PlanFileOptions = ORACLE): Promise<string[]> {
  try {
    await planRecipeFile(file, opts);
  } catch (e) {
    if (!(e instanceof UserError)) throw e;
    const lines = e.message.split('\n');
    return lines.length === 1 ? lines : lines.slice(1).map((l) => l.trim());
  }
  throw new Error('expected a UserError');
}

const GOOD = `name: good
model: tiny-encoder
datasets: [synthetic/seq-cls]
methods:
  - lora
ranks: [4]
training:
  max_steps: 10
`;

describe('errors name file, line and column', () => {
  it('unknown method (a shorthand entry) with a did-you-mean', async () => {
    const f = write('e1.yaml', GOOD.replace('  - lora\n', '  - lora\n  - randlroa\n'));
    expect(await planError(f)).toEqual([
      `${f}:6:5: methods[1].name: unknown method \`randlroa\` — did you mean \`randlora\`?`,
    ]);
  });

  it('many problems in one pass, each at its own position, unknown keys included', async () => {
    const f = write(
      'e2.yaml',
      `name: bad
model: tiny-encoder
datasets: [synthetic/seq-cls]
methods:
  - name: lora
    options:
      alpah: 4
ranks: [4]
training:
  lr: fast
  optimzer: adamw
`,
    );
    expect(await planError(f)).toEqual([
      `${f}:10:3: training.lr: expected a number, got \`fast\``,
      `${f}:11:3: training.optimzer: unknown key \`optimzer\` — did you mean \`optimizer\`?`,
    ]);
    const g = write('e2b.yaml', GOOD.replace('  - lora\n', '  - name: lora\n    options: {alpah: 4, dropout: 2}\n'));
    expect(await planError(g)).toEqual([
      `${g}:6:15: methods[0].options.alpah: unknown option \`alpah\` for method \`lora\` — did you mean \`alpha\`?`,
      `${g}:6:25: methods[0].options.dropout: expected a value <= 1, got 2 — dropout probability on the LoRA path input`,
    ]);
  });

  it('a missing required field points at its parent', async () => {
    const f = write('e3.yaml', 'name: x\nmodel:\n  task: seq-cls\ndatasets: [synthetic/seq-cls]\nmethods: [full]\n');
    expect(await planError(f)).toEqual([`${f}:2:1: model.name: missing required field (expected a string) — add it`]);
  });

  it('YAML syntax errors and duplicate keys', async () => {
    const f = write('e4.yaml', 'name: x\nmodel: tiny-encoder\nmethods: [lora\n');
    expect((await planError(f))[0]).toMatch(new RegExp(`^${f}:\\d+:\\d+: YAML: `));
    const g = write('e5.yaml', GOOD + 'ranks: [8]\n');
    expect((await planError(g))[0]).toMatch(new RegExp(`^${g}:9:1: YAML: Map keys must be unique`));
  });

  it('zero runs, and more runs than max_runs', async () => {
    const f = write('e6.yaml', GOOD + 'exclude:\n  - method: lora\n');
    expect(await planError(f)).toEqual([
      `${f}:9:1: exclude: the recipe expands to zero runs: the exclude rules remove all 1 grid runs — loosen the exclude rules`,
    ]);
    const g = write('e7.yaml', GOOD + 'seeds: [0, 1, 2]\nmax_runs: 2\n');
    expect(await planError(g)).toEqual([
      `${g}:10:1: max_runs: the recipe expands to more than max_runs=2 runs (3 grid combinations before exclude rules and deduplication) — shrink an axis (ranks, seeds, a training list), add \`exclude\` rules, or raise \`max_runs\``,
    ]);
    const h = write('e8.yaml', GOOD + 'seeds: [0, 1, 2]\n');
    expect((await planError(h, { ...ORACLE, maxRuns: 1 }))[0]).toMatch(/more than max_runs=1 runs/);
  });
});

describe('extends and presets', () => {
  it('extends resolves relative to the file, merges mappings, replaces lists, concatenates overrides', async () => {
    write(
      'base/common.yaml',
      `model: tiny-encoder
datasets: [synthetic/seq-cls]
methods: [lora, full]
ranks: [4, 8]
seeds: [0]
training:
  lr: 1e-3
  epochs: 2
  batch_size: 8
overrides:
  - when: {method: full}
    training: {lr: 1e-4}
`,
    );
    const child = write(
      'studies/child.yaml',
      `extends: ../base/common.yaml
methods: [lora]
training:
  max_steps: 20
overrides:
  - when: {rank: 8}
    options: {alpha: 16}
`,
    );
    const p = await planRecipeFile(child, ORACLE);
    expect(p.recipe.name).toBe('child'); // defaults to the file name
    expect(
      p.runs.map((r) => [
        r.labels.method,
        r.labels.rank,
        r.spec.training.lr,
        r.spec.training.batch_size,
        r.spec.training.max_steps,
        r.spec.training.epochs,
        r.spec.method.options.alpha,
      ]),
    ).toEqual([
      ['lora', 4, 1e-3, 8, 20, null, 8],
      ['lora', 8, 1e-3, 8, 20, null, 16],
    ]);
    expect(p.recipe.overrides).toHaveLength(2);
    // positions follow the file that wrote the field, also for concatenated lists
    const loaded = loadRecipeFile(child);
    expect(loaded.locate(['overrides', 0, 'when'])).toMatchObject({
      file: expect.stringContaining('common.yaml'),
      line: 11,
    });
    expect(loaded.locate(['overrides', 1, 'when'])).toMatchObject({
      file: expect.stringContaining('child.yaml'),
      line: 6,
    });
    expect(loaded.locate(['training', 'lr'])).toMatchObject({ file: expect.stringContaining('common.yaml'), line: 7 });
    expect(loaded.locate(['training', 'max_steps'])).toMatchObject({
      file: expect.stringContaining('child.yaml'),
      line: 4,
    });
  });

  it('an error in a base file is reported in the base file', async () => {
    write(
      'b2/base.yaml',
      'model: tiny-encoder\ndatasets: [synthetic/seq-cls]\nmethods: [lora]\nranks: [4]\ntraining: {warmup: 0.1}\n',
    );
    const child = write('b2/child.yaml', 'extends: base.yaml\nseeds: [1]\n');
    expect(await planError(child)).toEqual([
      `${join(tmp, 'b2/base.yaml')}:5:12: training.warmup: unknown key \`warmup\` — did you mean \`warmup_ratio\`?`,
    ]);
  });

  it('cycles and missing files are reported where the extends is written', async () => {
    write('c/a.yaml', 'extends: b.yaml\nname: a\n');
    const b = write('c/b.yaml', 'extends: [a.yaml]\n');
    const errs = await planError(b);
    expect(errs[0]).toMatch(
      /a\.yaml:1:10: extends: `.*b\.yaml` extends itself \(.*b\.yaml -> .*a\.yaml -> .*b\.yaml\)/,
    );
    const m = write('c/m.yaml', GOOD + 'extends: nothere.yaml\n');
    expect(await planError(m)).toEqual([
      `${m}:9:10: extends: cannot read \`${join(tmp, 'c/nothere.yaml')}\` (no such file) — paths are relative to the file that names them`,
    ]);
  });

  it('presets apply beneath the recipe; an unknown preset gets a did-you-mean', async () => {
    const f = write(
      'p1.yaml',
      'preset: vtab1k-vit-b16\ndatasets: [vtab/dtd]\nmethods: [lora]\ntraining: {epochs: 5}\n',
    );
    const p = await planRecipeFile(f, ORACLE);
    expect(p.runs).toHaveLength(1);
    const s = p.runs[0]!.spec;
    expect([
      s.model.name,
      s.training.lr,
      s.training.epochs,
      s.training.batch_size,
      s.training.schedule,
      s.method.targets,
    ]).toEqual(['google/vit-base-patch16-224-in21k', 1e-3, 5, 64, 'cosine', []]);
    const g = write('p2.yaml', 'preset: lora-glue-roberta\nmethods: [lora]\n');
    expect(await planError(g)).toEqual([
      `${g}:1:1: preset: unknown preset \`lora-glue-roberta\` — did you mean \`lora-glue-roberta-base\`?`,
    ]);
  });

  it('every preset plans on its own with one method', async () => {
    const { PRESETS } = await import('../planning/presets.js');
    for (const name of Object.keys(PRESETS)) {
      const extra = name === 'cpu-tiny' ? 'model: tiny-encoder\ndatasets: [synthetic/seq-cls]\n' : '';
      const f = write(`preset-${name}.yaml`, `preset: ${name}\nmethods: [lora]\nranks: [8]\n${extra}`);
      const p = await planRecipeFile(f, ORACLE);
      expect(p.runs.length, name).toBeGreaterThan(0);
      expect(p.warnings, name).toEqual([]);
      expect(
        p.runs.every((r) => r.labels.rank === 8),
        name,
      ).toBe(true);
    }
  });

  it('counts are asked for the architecture only (random_init), once per distinct count key', async () => {
    const seen: boolean[] = [];
    let asked = 0;
    const f = write(
      'cnt.yaml',
      'preset: gsm8k-llama\nmethods: [lora, {name: dora, ranks: [16, 32]}]\nseeds: [0, 1, 2]\n',
    );
    const p = await planRecipeFile(f, {
      countFn: async (specs) => {
        asked += specs.length;
        for (const s of specs) seen.push(s.model.random_init);
        return oracleCountFn()(specs);
      },
    });
    expect(p.runs).toHaveLength(9);
    expect(p.runs.every((r) => r.spec.model.random_init === false && r.params !== null)).toBe(true);
    expect(seen.every((x) => x === true)).toBe(true);
    expect(asked).toBe(3 + 1); // lora r32, dora r16, dora r32, and the full model for "% full"
  });

  it('include may add a dataset outside `datasets`', async () => {
    const f = write('inc.yaml', GOOD + 'include:\n  - {name: lora, ranks: [16], datasets: [synthetic/regression]}\n');
    const p = await planRecipeFile(f, ORACLE);
    expect(p.runs.map((r) => [r.labels.dataset, r.labels.rank, r.spec.dataset.metric])).toEqual([
      ['synthetic/seq-cls', 4, 'accuracy'],
      ['synthetic/regression', 16, 'pearson'],
    ]);
  });

  it('errors in a preset-provided field name the preset', async () => {
    const f = write('p3.yaml', 'preset: gsm8k-llama\nmethods: [lora]\nmodel: tiny-encoder\n');
    const errs = await planError(f);
    expect(errs).toContain(
      'preset `gsm8k-llama`: datasets[0].name: dataset `gsm8k` needs a causal-lm model, but `tiny-encoder` is seq-cls — use a model with the matching head, or a separate recipe per task',
    );
  });
});

describe('the rankflow CLI on recipes', () => {
  const cli = (...args: string[]) =>
    spawnSync(process.execPath, [join(ROOT, 'cli', 'bin.mjs'), ...args], {
      encoding: 'utf8',
      cwd: tmp,
      env: { ...process.env, RANKFLOW_PYTHON: '/nonexistent/python' },
    });

  it('plan on a bad recipe: exit 2, one line per problem, no stack trace', () => {
    const f = write(
      'cli-bad.yaml',
      GOOD.replace('  - lora\n', '  - lora\n  - vrea\n').replace('ranks: [4]', 'ranks: [4]\nseeds: [0, x]'),
    );
    const r = cli('plan', f);
    expect(r.status).toBe(2);
    expect(r.stdout).toBe('');
    expect(r.stderr).toBe(`rankflow: cli-bad.yaml:8:12: seeds[1]: expected a number, got \`x\`\n`);
    expect(r.stderr).not.toMatch(/\n\s+at /);
    const v = cli('validate', write('cli-bad2.yaml', GOOD.replace('  - lora\n', '  - lora\n  - vrea\n')));
    expect(v.status).toBe(2);
    expect(v.stderr).toBe(
      'rankflow: cli-bad2.yaml:6:5: methods[1].name: unknown method `vrea` — did you mean `vera`?\n',
    );
  });

  it('plan prints a table with totals (no runtime: params not counted), --json validates as PlannedRun', () => {
    const f = write('cli-good.yaml', GOOD.replace('ranks: [4]', 'ranks: [4, 8]\nseeds: [0, 1]'));
    const t = cli('plan', f);
    expect(t.status).toBe(0);
    expect(t.stdout.split('\n')[0]).toBe(
      '#  METHOD  RANK  DATASET            SEED  SETTING  OVERRIDES  TRAINABLE  % FULL',
    );
    expect(t.stdout).toContain('4 runs (lora 4) on 1 dataset x 2 seeds');
    const j = cli('plan', f, '--json');
    expect(j.status).toBe(0);
    const out = JSON.parse(j.stdout) as { sweep_id: string; runs: unknown[] };
    expect(out.runs).toHaveLength(4);
    for (const r of out.runs) expect(PlannedRun.safeParse(r).success).toBe(true);
    expect(out.sweep_id).toMatch(/^sweep-/);
    const v = cli('validate', f);
    expect([v.status, v.stdout.trim()]).toEqual([0, `${f}: ok (4 runs)`]);
    const c = cli('plan', f, '--count');
    expect(c.status).toBe(2);
    expect(c.stderr).toMatch(/^rankflow: cannot start the runtime interpreter `\/nonexistent\/python`/);
  });

  it('bad flags and missing files are one-line errors', async () => {
    expect(() => parsePlanArgs([], 'plan')).toThrow(
      new UserError('plan: missing the recipe file; usage: rankflow plan <recipe.yaml>'),
    );
    expect(() => parsePlanArgs(['x.yaml', '--jsn'], 'plan')).toThrow(
      new UserError('plan: unknown option `--jsn`; see `rankflow plan --help`'),
    );
    expect(() => parsePlanArgs(['x.yaml', '--max-runs', '0'], 'plan')).toThrow(
      new UserError('--max-runs: expected a positive integer, got `0`'),
    );
    expect(parsePlanArgs(['x.yaml', '--json', '--max-runs=5', '--no-count'], 'plan')).toEqual({
      file: 'x.yaml',
      json: true,
      count: 'never',
      maxRuns: 5,
    });
    expect(await planError(join(tmp, 'nope.yaml'))).toEqual([
      `${join(tmp, 'nope.yaml')}: cannot read the recipe (no such file)`,
    ]);
  });
});

describe('example recipes (golden plans)', () => {
  const recipes = readdirSync(join(ROOT, 'recipes'))
    .filter((f) => f.endsWith('.yaml'))
    .sort();

  it('include the four documented examples', () => {
    expect(recipes).toEqual(
      expect.arrayContaining(['quickstart.yaml', 'glue-roberta-base.yaml', 'vtab-vit-b16.yaml', 'gsm8k-llama.yaml']),
    );
  });

  for (const file of recipes) {
    it(`${file} plans to its golden table and run ids`, async () => {
      const cwd = process.cwd();
      process.chdir(ROOT); // positions and paths as a user in the repository sees them
      try {
        const log = { calls: 0, specs: 0 };
        const plan = await planRecipeFile(join('recipes', file), { countFn: oracleCountFn(log) });
        expect(plan.warnings).toEqual([]);
        // one runtime call for budget candidates (if any) and one for the table's counts
        expect(log.calls).toBeLessThanOrEqual(2);
        for (const r of plan.runs) expect(PlannedRun.safeParse(r).success).toBe(true);
        const table = renderPlanTable(plan) + '\n';
        const ids =
          plan.runs
            .map(
              (r) =>
                `${r.id}\t${r.labels.method}\t${r.labels.rank ?? '-'}\t${r.labels.dataset}\t${r.labels.seed}\t${r.labels.setting}`,
            )
            .join('\n') + '\n';
        const first = JSON.stringify((planJson(plan) as { runs: unknown[] }).runs[0], null, 2) + '\n';
        const base = join(GOLDEN, file.replace(/\.yaml$/, ''));
        const golden: [string, string][] = [
          [base + '.table.txt', table],
          [base + '.ids.tsv', ids],
          [base + '.first-run.json', first],
        ];
        for (const [path, text] of golden) {
          if (process.env.UPDATE_GOLDEN || !existsSync(path)) writeFileSync(path, text);
          expect(text, `${path} (UPDATE_GOLDEN=1 to accept a change)`).toBe(readFileSync(path, 'utf8'));
        }
      } finally {
        process.chdir(cwd);
      }
    });
  }
});
