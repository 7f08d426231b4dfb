/**
 * Reading results through the real local-folder artifact store, and the `rankflow table` / `rankflow plot`
 * commands end to end (the real CLI in a child process): sweep and recipe targets, joined sweeps, filters,
 * missing and failed runs, corrupt records, and one-line errors with exit code 2.
 */
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LocalStore } from '../store/store.js';
import { SweepManifest } from '../schemas/orchestration.js';
import { readSelection, resolveTargets } from '../cli/results-reader.js';
import { TableInputError } from '../core/errors.js';
import { labelsFor, makeRecord, runIdFor, specFor, type RecordOptions } from './tables-fixtures.js';
import { testConfig, testStore } from './helpers/cluster.js';
import { tableCommand } from '../cli/commands/table.js';
import { plotCommand } from '../cli/commands/plot.js';
import { PLOT_KINDS } from '../tables/plots.js';
import type { Command } from '../cli/commands/index.js';
import { UserError } from '../core/errors.js';

const root = join(import.meta.dirname, '..');
let dir: string;
let store: LocalStore;

function planned(o: RecordOptions): SweepManifest['runs'][number] {
  return {
    id: runIdFor(o),
    spec: specFor(o),
    labels: labelsFor(o),
    params: { trainable: o.trainable ?? 1000, total: 100000 },
  };
}

async function writeSweep(sweep_id: string, recipe: string, runs: RecordOptions[]): Promise<void> {
  const m: SweepManifest = {
    schema: 'rankflow.sweep/v1',
    sweep_id,
    recipe,
    created_at: '2026-01-01T00:00:00Z',
    queues: {},
    runs: runs.map(planned),
  };
  await store.put(`sweeps/${sweep_id}.json`, JSON.stringify(SweepManifest.parse(m)));
}

const sweepA: RecordOptions[] = [];
for (const method of ['full', 'lora']) {
  for (const dataset of ['glue/sst2', 'glue/rte']) {
    for (const seed of [0, 1]) {
      sweepA.push({
        method,
        rank: method === 'full' ? null : 8,
        dataset,
        seed,
        sweep_id: 'sweep-a',
        recipe: 'recipes/glue.yaml',
        tags: method === 'lora' ? ['peft'] : [],
        metrics: { accuracy: (method === 'lora' ? 0.8 : 0.7) + 0.01 * seed + (dataset === 'glue/rte' ? -0.1 : 0) },
        trainable: method === 'lora' ? 2000 : 100000,
        curve: [
          { step: 10, loss: 1 - 0.1 * seed },
          { step: 20, loss: 0.7 - 0.1 * seed },
        ],
      });
    }
  }
}
// Sweep B shares one LoRA run with sweep A and adds DoRA.
const sweepB: RecordOptions[] = [
  sweepA.find((o) => o.method === 'lora')!,
  ...[0, 1].map((seed) => ({
    method: 'dora',
    rank: 8,
    dataset: 'glue/sst2',
    seed,
    sweep_id: 'sweep-b',
    recipe: 'recipes/glue-dora.yaml',
    metrics: { accuracy: 0.82 + 0.01 * seed },
  })),
];

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'rankflow-tables-'));
  store = new LocalStore(dir);
  await writeSweep('sweep-a', 'recipes/glue.yaml', sweepA);
  await writeSweep('sweep-b', 'recipes/glue-dora.yaml', sweepB);
  for (const o of [...sweepA, ...sweepB]) {
    const isMissing = o.method === 'full' && o.dataset === 'glue/rte' && o.seed === 1;
    if (isMissing) continue;
    const failed = o.method === 'lora' && o.dataset === 'glue/rte' && o.seed === 1;
    await store.put(
      `results/${runIdFor(o)}.json`,
      JSON.stringify(makeRecord({ ...o, status: failed ? 'failed' : 'succeeded' })),
    );
  }
  // A DoRA run failed after its retries: the orchestrator's failure record (a result record, status failed).
  const doraFailed: RecordOptions = { method: 'dora', rank: 8, dataset: 'glue/sst2', seed: 1, sweep_id: 'sweep-b' };
  await store.delete(`results/${runIdFor(doraFailed)}.json`);
  await store.put(
    `failed/${runIdFor(doraFailed)}.json`,
    JSON.stringify(
      makeRecord({
        ...doraFailed,
        status: 'failed',
        error: { kind: 'oom', message: 'CUDA out of memory', hint: null },
      }),
    ),
  );
});

afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

describe('results reader', () => {
  it('reads a sweep: results, failed runs, and missing runs', async () => {
    const sel = await readSelection(store, ['sweep-a']);
    expect(sel.runs).toHaveLength(8);
    const byStatus = (s: string) => sel.runs.filter((r) => r.status === s);
    expect(byStatus('succeeded')).toHaveLength(6);
    expect(byStatus('failed')).toHaveLength(1);
    expect(byStatus('missing')).toHaveLength(1);
    expect(byStatus('missing')[0]!.error).toBeNull();
    expect(byStatus('missing')[0]!.trainable).toBe(100000); // from the manifest's planned parameter count
  });

  it('reads the failure records the orchestrator writes under failed/', async () => {
    const sel = await readSelection(store, ['sweep-b']);
    const failed = sel.runs.filter((r) => r.status === 'failed');
    expect(failed).toHaveLength(1);
    expect(failed[0]!.labels).toMatchObject({ method: 'dora', seed: 1 });
    expect(failed[0]!.error).toBe('oom: CUDA out of memory');
  });

  it('takes the latest sweep of a recipe, and says so', async () => {
    const old = new LocalStore(mkdtempSync(join(tmpdir(), 'rankflow-tables-old-')));
    try {
      for (const [id, at] of [
        ['sweep-old', '2026-01-01T00:00:00Z'],
        ['sweep-new', '2026-02-01T00:00:00Z'],
      ] as const) {
        await old.put(
          `sweeps/${id}.json`,
          JSON.stringify({
            schema: 'rankflow.sweep/v1',
            sweep_id: id,
            recipe: 'recipes/q.yaml',
            created_at: at,
            queues: {},
            runs: [planned(sweepA[0]!)],
          }),
        );
      }
      const notes: string[] = [];
      expect((await resolveTargets(old, ['q'], notes)).map((m) => m.sweep_id)).toEqual(['sweep-new']);
      expect(notes).toEqual([
        'recipe q has 2 sweeps; using the latest, sweep-new (2026-02-01T00:00:00Z); name sweep ids to join others: sweep-old',
      ]);
      expect((await resolveTargets(old, ['q', 'sweep-old'])).map((m) => m.sweep_id).sort()).toEqual([
        'sweep-new',
        'sweep-old',
      ]);
    } finally {
      rmSync(old.root, { recursive: true, force: true });
    }
  });

  it('resolves recipes by path or name and joins sweeps, counting a shared run once', async () => {
    expect((await resolveTargets(store, ['recipes/glue.yaml'])).map((m) => m.sweep_id)).toEqual(['sweep-a']);
    expect((await resolveTargets(store, ['glue-dora'])).map((m) => m.sweep_id)).toEqual(['sweep-b']);
    const sel = await readSelection(store, ['sweep-a', 'glue-dora']);
    expect(sel.runs).toHaveLength(10); // 8 + 3 - 1 shared
    expect(new Set(sel.runs.map((r) => r.run_id)).size).toBe(10);
  });

  it('filters by method, dataset family, rank and tag', async () => {
    const f = async (filters: Parameters<typeof readSelection>[2]) =>
      (await readSelection(store, ['sweep-a', 'sweep-b'], filters)).runs;
    expect((await f({ methods: ['LoRA'] })).every((r) => r.labels.method === 'lora')).toBe(true);
    expect(await f({ datasets: ['glue'] })).toHaveLength(10);
    expect(await f({ datasets: ['glue/rte'] })).toHaveLength(4);
    expect((await f({ ranks: [null] })).map((r) => r.labels.method)).toEqual(['full', 'full', 'full', 'full']);
    expect(await f({ tags: ['peft'] })).toHaveLength(4);
    await expect(f({ methods: ['vera'] })).rejects.toThrow(
      /^--method vera matches no run in the selection; it has dora, full, lora$/,
    );
  });

  it('names what exists when a target is unknown, and the file when a record is corrupt', async () => {
    await expect(readSelection(store, ['nope'])).rejects.toThrow(
      /^no sweep or recipe named `nope` in file:\/\/.*; sweeps: sweep-a, sweep-b; recipes: recipes\/glue-dora\.yaml, recipes\/glue\.yaml$/,
    );
    const bad = new LocalStore(mkdtempSync(join(tmpdir(), 'rankflow-tables-bad-')));
    try {
      const o = sweepA[0]!;
      await bad.put(
        'sweeps/s.json',
        JSON.stringify({
          schema: 'rankflow.sweep/v1',
          sweep_id: 's',
          recipe: null,
          created_at: 'x',
          queues: {},
          runs: [planned(o)],
        }),
      );
      await bad.put(`results/${runIdFor(o)}.json`, '{"schema": "rankflow.result/v1", "run_id": 3');
      await expect(readSelection(bad, ['s'])).rejects.toThrow(
        new RegExp(`^results/${runIdFor(o)}\\.json: not valid JSON`),
      );
      await bad.put(`results/${runIdFor(o)}.json`, JSON.stringify({ ...makeRecord(o), status: 'done' }));
      await expect(readSelection(bad, ['s'])).rejects.toThrow(/not a valid result record \(field `status`/);
      await expect(readSelection(bad, ['s'])).rejects.toBeInstanceOf(TableInputError);
    } finally {
      rmSync(bad.root, { recursive: true, force: true });
    }
  });
});

describe('results reader over S3', () => {
  const hasServices = inject('services') !== undefined;
  if (!hasServices)
    console.warn('tables-reader: S3 test skipped: no test services (run with the repository vitest.config.ts)');
  it.skipIf(!hasServices)(
    'reads the same selection from the S3 server as from a folder, also via `rankflow table --store s3://`',
    async () => {
      const config = testConfig();
      const s3 = testStore(config);
      await s3.ensureBucket();
      for (const k of await store.list('')) await s3.put(k, (await store.get(k))!);
      const local = await readSelection(store, ['sweep-a', 'glue-dora']);
      const remote = await readSelection(s3, ['sweep-a', 'glue-dora']);
      expect(remote.runs).toEqual(local.runs);
      expect(remote.runs.filter((r) => r.status === 'failed').map((r) => r.error)).toContain('oom: CUDA out of memory');
      const sc = config.store as Extract<typeof config.store, { kind: 's3' }>;
      const env = {
        ...process.env,
        RANKFLOW_S3_ENDPOINT: sc.endpoint,
        AWS_ACCESS_KEY_ID: sc.accessKeyId,
        AWS_SECRET_ACCESS_KEY: sc.secretAccessKey,
        AWS_REGION: sc.region,
      };
      const viaS3 = cli(['table', 'sweep-a', 'sweep-b', '--store', `s3://${sc.bucket}/${sc.prefix}`], env);
      const viaDir = cli(['table', 'sweep-a', 'sweep-b', '--store', dir]);
      expect(viaS3.stderr).not.toMatch(/^rankflow:/m); // the AWS SDK may warn about the Node version
      expect(viaS3.status).toBe(0);
      expect(viaS3.stdout).toBe(viaDir.stdout);
    },
  );
});

function cli(
  args: string[],
  env: NodeJS.ProcessEnv = process.env,
): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [join(root, 'cli', 'bin.mjs'), ...args], {
    cwd: dir,
    encoding: 'utf8',
    timeout: 60_000,
    env,
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe('rankflow table / plot (CLI)', () => {
  it('prints a Markdown table of joined sweeps with missing and failed cells', () => {
    const r = cli(['table', 'sweep-a', 'sweep-b', '--store', dir, '--baseline', 'lora']);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(r.stdout).toContain('| Method / Rank | Params | SST-2 | RTE | GLUE Avg |');
    expect(r.stdout).toMatch(
      /\| Full FT \| 100K \(100%\) \| 70\.5 ± 0\.7 \(-10\.0\) \| <u>60\.0<\/u> \(1\/2\) \(-10\.0\) \| <u>65\.3<\/u> \(\*\) \(-10\.0\) \|/,
    );
    expect(r.stdout).toMatch(/\| DoRA \(r=8\) \| 1K \(1\.00%\) \| \*\*82\.0\*\* \(1\/2\) \(\+1\.5\) \| – \| n\/a \|/);
    expect(r.stdout).toContain(
      '2 failed run(s): lora r=8 on glue/rte seed 1: nan: loss became NaN at step 7, dora r=8 on glue/sst2 seed 1: oom: CUDA out of memory.',
    );
    expect(r.stdout).toContain('planned run(s) have no result yet: full on glue/rte seed 1');
  });

  it('writes LaTeX (format from the extension) and CSV files', () => {
    const tex = join(dir, 'out', 'glue.tex');
    const r = cli(['table', 'recipes/glue.yaml', '--store', dir, '--out', tex, '--title', 'GLUE & co']);
    expect(r.status).toBe(0);
    expect(r.stderr).toContain('wrote');
    const text = readFileSync(tex, 'utf8');
    expect(text).toContain('\\caption{GLUE \\& co}');
    expect(text).toContain('\\toprule');
    const csv = cli(['table', 'sweep-a', '--store', dir, '--format', 'csv', '--dataset', 'glue/sst2']);
    expect(csv.status).toBe(0);
    expect(csv.stdout.split('\n')[1]).toMatch(
      /^Full FT,result,,full,,,glue\/sst2,glue\/sst2,SST-2,data,accuracy,100,70\.5,0\.707106781187,2,2,0,0,0;1,ok,second,/,
    );
  });

  it('fails with one line and exit code 2 on bad input', async () => {
    // The CLI's wiring (stderr, exit code) once in a child process ...
    const r = cli(['table', 'sweep-a', '--store', dir, '--metric', 'bleu']);
    expect(r.status).toBe(2);
    expect(r.stderr).toBe('rankflow: unknown metric `bleu`: no run reports it; available final metrics: accuracy\n');
    expect(r.stdout).toBe('');
    // ... and the messages in process (each one line, a UserError, naming the fix).
    const cases: [Command, string[], RegExp][] = [
      [
        tableCommand,
        ['sweep-a', '--store', dir, '--rows', 'seed'],
        /^--rows seed: unknown dimension `seed`; use model, method, rank, setting, dataset$/,
      ],
      [
        tableCommand,
        ['sweep-a', '--store', dir, '--format', 'docx'],
        /^--format docx: use one of md, latex, csv, html, json$/,
      ],
      [
        tableCommand,
        ['nope', '--store', dir],
        /^no sweep or recipe named `nope` in file:\/\/.*; sweeps: sweep-a, sweep-b; recipes: /,
      ],
      [
        tableCommand,
        ['sweep-a', '--store', dir, '--dataset', 'glue/mnli'],
        /^--dataset glue\/mnli matches no run in the selection; it has glue\/rte, glue\/sst2$/,
      ],
      [
        tableCommand,
        ['sweep-a', '--store', dir, '--bogus'],
        /^table: unknown option `--bogus`; see `rankflow table --help`$/,
      ],
      [tableCommand, ['sweep-a', '--store', dir, '--digits', 'x'], /^--digits x: expected an integer from 0 to 6$/],
      [
        tableCommand,
        ['sweep-a', '--store', dir, '--baseline', 'vera'],
        /^--baseline `vera` matches no row; rows are: Full FT, LoRA \(r=8\)$/,
      ],
      [
        tableCommand,
        ['sweep-a', '--store', dir, '--reference', join(dir, 'none.csv')],
        /^--reference .*none\.csv: file not found; give a CSV with columns /,
      ],
      [
        plotCommand,
        ['sweep-a', '--store', dir, '--kind', 'pie'],
        new RegExp(`^--kind pie: use ${PLOT_KINDS.join(', ')}$`),
      ],
      [
        plotCommand,
        ['sweep-a', '--store', dir, '--kind', 'rank', '--method', 'full', '--out', join(dir, 'p')],
        /^no run in the selection has a rank; the rank plot needs methods with a rank$/,
      ],
    ];
    for (const [cmd, args, re] of cases) {
      const err = await cmd.run(args).then(
        () => null,
        (e: unknown) => e,
      );
      expect(err, args.join(' ')).toBeInstanceOf(UserError);
      expect((err as Error).message, args.join(' ')).toMatch(re);
      expect((err as Error).message).not.toContain('\n');
    }
  });

  it('regenerates a results folder in one command (npm run results)', () => {
    const out = join(dir, 'results');
    const r = spawnSync(
      join(root, 'node_modules', '.bin', 'tsx'),
      [
        join(root, 'scripts', 'make-results.ts'),
        'recipes/glue.yaml',
        'sweep-b',
        '--store',
        dir,
        '--out',
        out,
        '--reference',
      ],
      {
        cwd: root,
        encoding: 'utf8',
        timeout: 120_000,
      },
    );
    expect(r.status, r.stderr).toBe(0);
    for (const ext of ['md', 'tex', 'csv', 'html', 'json'])
      expect(existsSync(join(out, `glue.${ext}`)), ext).toBe(true);
    for (const kind of ['loss', 'params']) {
      expect(existsSync(join(out, `glue-${kind}.svg`)), kind).toBe(true);
      expect(existsSync(join(out, `glue-${kind}.png`)), kind).toBe(true);
    }
    // Every ranked run here is r=8: one rank is no rank plot (skipped with a note, not drawn as a bare axis).
    expect(existsSync(join(out, 'glue-rank.svg'))).toBe(false);
    const md = readFileSync(join(out, 'glue.md'), 'utf8');
    expect(md).toContain('**Results of sweep-a, sweep-b**');
    expect(md).toMatch(/\| _LoRA, paper: RoBERTa-base_ \| 800K \| 95\.1 \| 86\.6 \| – \|/);
    expect(md).toMatch(/\| Δ LoRA \(r=8\) − paper \| – \| -14\.6 \| -16\.6 \| – \|/);
  });

  it('plots loss curves and score vs parameters as SVG and PNG, and skips score vs rank for one rank', () => {
    const out = join(dir, 'plots');
    const r = cli(['plot', 'sweep-a', 'sweep-b', '--store', dir, '--out', out, '--name', 'glue']);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stderr).toContain('rankflow: skipped rank: the rank plot needs results at two or more ranks');
    expect(existsSync(join(out, 'glue-rank.svg'))).toBe(false);
    for (const kind of ['loss', 'params']) {
      const svg = readFileSync(join(out, `glue-${kind}.svg`), 'utf8');
      expect(svg.startsWith('<svg')).toBe(true);
      const png = readFileSync(join(out, `glue-${kind}.png`));
      expect(png.subarray(0, 8).equals(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]))).toBe(true);
    }
    expect(readFileSync(join(out, 'glue-params.svg'), 'utf8')).toContain('trainable parameters (log scale)');
    expect(existsSync(join(out, 'glue-loss.png'))).toBe(true);
  });
});
