/**
 * LoRA-FAIR and Break-for-Make from recipes on the real parts (Temporal dev server, SeaweedFS S3, the Python
 * runtime, recipes planned by the real planner, `rankflow worker` processes):
 * - a federated run whose worker is killed (SIGKILL) after a round checkpoint resumes on a second worker from
 *   that checkpoint, and its final metrics and every round's record equal those of an uninterrupted run; the
 *   rounds are in the result record, the table and `rankflow plot --kind rounds`;
 * - the whole Break-for-Make pipeline (base → break content / break style → make, and the plain-LoRA
 *   baselines summed and averaged) with its worker killed between stages: every run succeeds, nothing finished
 *   before the kill runs again, and the table shows content and style scores per stage.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomInt } from 'node:crypto';
import { mkdtemp, readFile, readdir, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Client } from '@temporalio/client';
import type { Config } from '../cli/config.js';
import { startSweep, writeManifest, type SubmitOptions } from '../cli/sweeps.js';
import { planRecipeFile } from '../cli/recipe-io.js';
import { PROJECT_ROOT } from '../core/paths.js';
import { spawnRuntime } from '../launcher/spawn.js';
import type { DoneEvent, RoundEvent } from '../schemas/events.js';
import type { SweepStatus } from '../schemas/orchestration.js';
import type { PlannedRun, RunSpec } from '../schemas/runspec.js';
import { storedArtifact } from '../store/artifacts.js';
import { listCheckpoints } from '../store/checkpoints.js';
import type { S3Store } from '../store/store.js';
import { cliEnv, rankflowCli, testClient, testConfig, testStore, uniqueId } from './helpers/cluster.js';
import { readRecord, waitFor } from './helpers/runs.js';

const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!().catch(() => undefined);
});

async function plan(name: string, body: string): Promise<{ runs: PlannedRun[]; file: string }> {
  const dir = await mkdtemp(join(tmpdir(), 'rankflow-fed-'));
  const file = join(dir, `${name}.yaml`);
  await writeFile(file, `name: ${name}\n${body}`);
  return { runs: (await planRecipeFile(file, { count: 'never' })).runs, file };
}

function workerProcess(config: Config): ChildProcess {
  return spawn(process.execPath, [join(PROJECT_ROOT, 'cli', 'bin.mjs'), 'worker', '--cpu-slots', '1'], {
    env: cliEnv(config),
    stdio: ['ignore', 'inherit', 'inherit'],
  });
}

async function submit(client: Client, config: Config, store: S3Store, recipe: string, runs: PlannedRun[]) {
  const opts: SubmitOptions = {
    sweepId: uniqueId(`sweep-${recipe}`),
    recipe,
    runs,
    concurrency: 1,
    policy: { heartbeat_timeout_s: 8, max_attempts: 6, terminate_grace_s: 30 },
  };
  await writeManifest(store, config, opts);
  await startSweep(client, config, opts);
  return opts.sweepId;
}

/** The spec trained directly by the runtime, never interrupted: its round events and its done event. */
async function reference(spec: RunSpec): Promise<{ rounds: RoundEvent[]; done: DoneEvent }> {
  const dir = await mkdtemp(join(tmpdir(), 'rankflow-fedref-'));
  await writeFile(join(dir, 'spec.json'), JSON.stringify(spec));
  const rounds: RoundEvent[] = [];
  let done: DoneEvent | null = null;
  const p = spawnRuntime({
    args: ['run', '--spec', join(dir, 'spec.json'), '--out', join(dir, 'out')],
    logFile: join(dir, 'log'),
    env: { CUDA_VISIBLE_DEVICES: '' },
    onEvent: (e) => {
      if (e.event === 'round') rounds.push(e);
      if (e.event === 'done') done = e;
    },
  });
  const exit = await p.exit;
  if (exit.code !== 0 || !done) throw new Error(`reference run failed (exit ${exit.code}); log in ${dir}/log`);
  return { rounds, done };
}

async function session(): Promise<{ config: Config; store: S3Store; client: Client }> {
  const config = testConfig();
  const store = testStore(config);
  await store.ensureBucket();
  const { client, close } = await testClient(config);
  cleanups.push(close);
  return { config, store, client };
}

const FEDERATED = (seed: number) => `
model:
  name: tiny-vit
  config: {hidden_size: 32, num_layers: 1, num_heads: 2, intermediate_size: 48}
  random_init: true
datasets:
  - name: synthetic/img-cls
    train_size: 64
    eval_size: 32
    options: {domains: 2}
methods: [{name: lora, ranks: [2]}]
seeds: [${seed}]
training: {lr: 1e-2, schedule: constant, max_steps: 12, batch_size: 8, eval_batch_size: 32, log_every: 1}
device: cpu
stages:
  federated:
    procedure: lora-fair
    options: {num_clients: 4, clients_per_round: 2, local_steps: 2, partition: domain, alpha: 0, solver_steps: 50}
`;

describe('LoRA-FAIR from a recipe on the real services', () => {
  it('a worker killed after a round checkpoint: the run resumes from it to the uninterrupted result; rounds in tables and plots', async () => {
    const { config, store, client } = await session();
    const { runs } = await plan('lora-fair-e2e', FEDERATED(randomInt(1, 2 ** 40)));
    expect(runs).toHaveLength(1);
    const [run] = runs as [PlannedRun];
    expect(run.spec.procedure!.name).toBe('lora-fair');
    const ref = reference(run.spec);
    const first = workerProcess(config);
    cleanups.push(async () => first.kill('SIGKILL'));
    const sweepId = await submit(client, config, store, 'lora-fair-e2e', runs);
    await waitFor('a round checkpoint', async () => (await listCheckpoints(store, run.id)).length > 0, 300_000);
    first.kill('SIGKILL');
    const second = workerProcess(config);
    cleanups.push(async () => second.kill('SIGTERM'));
    const status = (await client.workflow.getHandle(sweepId).result()) as SweepStatus;
    expect(status.counts).toMatchObject({ succeeded: 1, failed: 0 });
    const rec = (await readRecord(store, run.id))!;
    expect(rec.timings.attempts).toBeGreaterThanOrEqual(2); // killed before the end, resumed from the store
    const { rounds, done } = await ref;
    expect(rounds).toHaveLength(6);
    expect(rec.metrics).toEqual(done.metrics);
    // every round, those replayed from the checkpoint and those trained after the resume, as uninterrupted
    expect(rec.rounds!.map((r) => [r.round, r.step, r.client_loss, r.metrics, r.aggregation])).toEqual(
      rounds.map((r) => [r.round, r.step, r.client_loss, r.metrics, r.aggregation]),
    );
    expect(rec.stats!.rounds).toBe(6);
    expect(
      rec.rounds!.every((r) => r.aggregation.aggregation_error! <= r.aggregation.aggregation_error_fedit! + 1e-9),
    ).toBe(true);

    const table = await rankflowCli(
      config,
      'table',
      sweepId,
      '--stage',
      'federated',
      '--stats',
      'final_aggregation_error',
      '-f',
      'csv',
    );
    expect(table.stderr).toBe('');
    expect(table.code).toBe(0);
    const [head, ...lines] = table.stdout.split('\n');
    const stat = lines.find((l) => l.includes('stat:final_aggregation_error'))!;
    const mean = Number(stat.split(',')[head!.split(',').indexOf('mean')]);
    expect(mean).toBeCloseTo(rec.stats!.final_aggregation_error!, 3);
    const out = await mkdtemp(join(tmpdir(), 'rankflow-fedplot-'));
    const plot = await rankflowCli(config, 'plot', sweepId, '--kind', 'rounds', '-f', 'svg', '-o', out);
    expect(plot.code).toBe(0);
    const files = await readdir(out);
    const svg = files.find((f) => f.endsWith('-rounds.svg'));
    expect(svg, `${files.join(', ')}: ${plot.stdout}${plot.stderr}`).toBeDefined();
    expect(await readFile(join(out, svg!), 'utf8')).toMatch(/aggregation/i);
  }, 900_000);
});

const CS = (contents: (number | null)[], styles: (number | null)[], evalTo66 = true) =>
  `[{name: synthetic/content-style, train_size: 32, options: {contents: ${JSON.stringify(contents)}, styles: ${JSON.stringify(
    styles,
  )}${evalTo66 ? ', eval_contents: [6], eval_styles: [6], eval_samples: 2' : ''}}}]`;
const PLP = '[{name: plp, ranks: [2], options: {basis_rows: 0}}]';
const B4M = (seed: number) => `
model:
  name: tiny-denoiser
  config: {hidden_size: 32, num_layers: 1, num_heads: 2, intermediate_size: 48}
  random_init: true
datasets: ${CS([0, 1], [6])}
methods: [{name: lora, ranks: [2]}]
seeds: [${seed}]
training: {lr: 3e-3, schedule: constant, max_steps: 4, batch_size: 8, eval_every: null, checkpoint_every: 2, log_every: 1, train_head: false}
device: cpu
stages:
  base: {methods: [full], datasets: ${CS([0, 1], [null, 0], false)}, training: {max_steps: 6}}
  content:
    procedure: b4m-break
    from: base
    match: seed
    methods: ${PLP}
    datasets: ${CS([6], [null])}
    options: {role: content, aux: [{options: {contents: [0], styles: [0]}}]}
    training: {lr_groups: {up: 3e-4}}
  style:
    procedure: b4m-break
    from: base
    match: seed
    methods: ${PLP}
    options: {role: style, aux: [{options: {contents: [0], styles: [null]}}]}
    training: {lr: 3e-4, lr_groups: {up: 3e-3}}
  make:
    procedure: b4m-make
    from: {content: content, style: style, model: base}
    match: seed
    methods: ${PLP}
    datasets: ${CS([0, 1], [6])}
    options: {joint: [{options: {contents: [6], styles: [null]}}]}
  lora-content: {from: base, match: seed, datasets: ${CS([6], [null])}}
  lora-style: {from: base, match: seed}
  combine: {procedure: combine, from: {first: lora-content, second: lora-style, model: base}, options: {mode: [sum, average]}}
`;

describe('Break-for-Make from a recipe on the real services', () => {
  it('the whole pipeline with its worker killed between stages: nothing lost, nothing run again; content and style in the table', async () => {
    const { config, store, client } = await session();
    const { runs } = await plan('b4m-e2e', B4M(randomInt(1, 2 ** 40)));
    const stage = (s: string) => runs.filter((r) => r.labels.stage === s);
    expect(runs.map((r) => r.labels.stage)).toEqual([
      'base',
      'content',
      'style',
      'make',
      'lora-content',
      'lora-style',
      'combine',
      'combine',
    ]);
    const [base] = stage('base');
    const [content] = stage('content');
    const [make] = stage('make');
    expect(make!.spec.inputs).toEqual({
      content: { run: content!.id, artifact: 'adapter' },
      style: { run: stage('style')[0]!.id, artifact: 'adapter' },
      model: { run: base!.id, artifact: 'model' },
    });
    const first = workerProcess(config);
    cleanups.push(async () => first.kill('SIGKILL'));
    const sweepId = await submit(client, config, store, 'b4m-e2e', runs);
    // The content break run has finished (adapter and result stored): kill the worker between stages.
    await waitFor('the content adapter', () => storedArtifact(store, content!.id, 'adapter'), 600_000);
    await waitFor('the content result', () => readRecord(store, content!.id), 120_000);
    first.kill('SIGKILL');
    const finished: string[] = [];
    for (const r of runs) if (await readRecord(store, r.id)) finished.push(r.id);
    expect(finished).toEqual(expect.arrayContaining([base!.id, content!.id]));
    const second = workerProcess(config);
    cleanups.push(async () => second.kill('SIGTERM'));
    const status = (await client.workflow.getHandle(sweepId).result()) as SweepStatus;
    expect(status.counts).toMatchObject({ failed: 0, blocked: 0 });
    // a run whose result was stored just before the kill is found finished (skipped), never trained again
    expect(status.counts.succeeded + status.counts.skipped).toBe(runs.length);
    for (const r of runs) {
      const rec = (await readRecord(store, r.id))!;
      expect(rec.status).toBe('succeeded');
      if (finished.includes(r.id)) expect(rec.timings.attempts, r.labels.stage).toBe(1); // not run again
      for (const k of ['content', 'style', 'joint']) expect(rec.metrics[k]).toBeGreaterThanOrEqual(0);
    }
    const makeRec = (await readRecord(store, make!.id))!;
    expect(makeRec.spec.dataset.options.styles).toEqual([6]); // the make stage's own data
    // Tables: content and style scores per stage, each cell the run's recorded score (×100).
    for (const s of ['make', 'combine']) {
      const recs = await Promise.all(stage(s).map(async (r) => (await readRecord(store, r.id))!));
      for (const metric of ['content', 'style']) {
        const t = await rankflowCli(config, 'table', sweepId, '--stage', s, '--metric', metric, '-f', 'json');
        expect(t.code, t.stderr).toBe(0);
        const table = JSON.parse(t.stdout) as {
          columns: { metric: string }[];
          rows: { label: string; cells: { mean: number | null }[] }[];
        };
        expect(table.columns.map((c) => c.metric)).toEqual([metric]);
        expect(table.rows).toHaveLength(recs.length);
        const want = recs.map((r) => r.metrics[metric]! * 100).sort((a, b) => a - b);
        const got = table.rows.map((r) => r.cells[0]!.mean!).sort((a, b) => a - b);
        got.forEach((g, i) => expect(g).toBeCloseTo(want[i]!, 6));
        if (s === 'combine')
          expect(table.rows.map((r) => r.label).join(' ')).toMatch(/mode=sum.*mode=average|mode=average.*mode=sum/);
      }
    }
  }, 1_200_000);
});
