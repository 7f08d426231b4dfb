/**
 * A researcher's first day, end to end on the real services: tiny Hugging Face models saved to folders by the
 * test (RoBERTa with a BPE tokenizer, ViT, a LLaMA without a pad token) and data in the layouts people have
 * (GLUE TSV and the hub's Parquet, a CSV of their own, VTAB-1k from a folder, GSM8k JSONL). Every recipe has a
 * `queue:` and is submitted with `--detach`; `submit` says no worker polls the queue; a `rankflow worker
 * --queue` started as the README says finishes the sweeps; `export` takes the best checkpoint, which PEFT loads
 * onto the base model and which reproduces the recorded metric.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomInt } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Config } from '../cli/config.js';
import { PROJECT_ROOT } from '../core/paths.js';
import { runtimePython } from '../launcher/spawn.js';
import { ResultRecord } from '../schemas/result.js';
import { resultKey } from '../store/keys.js';
import { cliEnv, rankflowCli, testConfig, testStore } from './helpers/cluster.js';

let config: Config;
let dir: string;
let paths: { models: Record<string, string>; tsv: string; parquet: string; own: string; vtab: string; gsm8k: string };
let worker: ChildProcess | null = null;
let workerLog = '';
const queue = `first-day-${randomInt(1, 2 ** 30)}`;
const seed = randomInt(1, 2 ** 40); // fresh run ids on a reused server
const rankflow = (...args: string[]) => rankflowCli(config, ...args);
const FIXTURES = join(PROJECT_ROOT, 'runtime-native', 'tests', 'first_day_fixtures.py');

const TRAIN = '{max_steps: 3, batch_size: 4, eval_every: 1, checkpoint_every: null, log_every: 1, lr: 1e-2}';
function recipe(name: string, model: string, datasets: string[]): string {
  const file = join(dir, `${name}.yaml`);
  const text = [
    `name: ${name}`,
    `model: ${model}`,
    'datasets:',
    ...datasets.map((d) => `  - ${d}`),
    'methods: [lora]',
    'ranks: [2]',
    `seeds: [${seed}]`,
    `training: ${TRAIN}`,
    'device: cpu',
    `queue: ${queue}`,
    '',
  ];
  writeFileSync(file, text.join('\n'));
  return file;
}

beforeAll(() => {
  config = testConfig();
  dir = mkdtempSync(join(tmpdir(), 'rankflow-first-day-'));
  const r = spawnSync(runtimePython(), [FIXTURES, 'data', '--out', dir], { encoding: 'utf8', timeout: 300_000 });
  if (r.status !== 0) throw new Error(`fixtures failed: ${r.stderr}`);
  paths = JSON.parse(r.stdout.trim().split('\n').at(-1)!) as typeof paths;
}, 300_000);

afterAll(() => {
  worker?.kill('SIGTERM');
});

async function waitFor(sweep: string, timeoutMs: number): Promise<{ counts: Record<string, number>; state: string }> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const s = await rankflow('status', sweep, '--json');
    if (s.code === 0) {
      const j = JSON.parse(s.stdout) as { closed: string | null; state: string; counts: Record<string, number> };
      if (j.closed) return j;
    }
    if (Date.now() > deadline) throw new Error(`${sweep} did not finish; worker log:\n${workerLog.slice(-3000)}`);
    await new Promise((res) => setTimeout(res, 3000));
  }
}

describe('first day on the real services', () => {
  it('formats, decoder classification, --detach with a queue, a README worker, best-checkpoint export', async () => {
    const m = paths.models;
    const files = [
      recipe('fd-roberta', `{name: ${m.roberta}, task: seq-cls}`, [
        `{name: glue/sst2, data_root: ${paths.tsv}, max_length: 32}`,
        `{name: glue/sst2, data_root: ${paths.parquet}, format: hf, max_length: 32}`,
        `{name: my-nli, data_root: ${paths.own}, files: {train: nli/train.csv, validation: nli/dev.csv}, text: [premise, hypothesis], label: label, max_length: 32}`,
      ]),
      recipe('fd-vit', `{name: ${m.vit}, task: img-cls}`, [
        `{name: vtab/dtd, data_root: ${paths.vtab}, max_length: 32}`,
      ]),
      recipe('fd-llama-gsm8k', `{name: ${m.llama}, task: causal-lm}`, [
        `{name: gsm8k, data_root: ${paths.gsm8k}, max_length: 96, eval_size: 2, options: {max_new_tokens: 6}}`,
      ]),
      recipe('fd-llama-cls', `{name: ${m.llama}, task: seq-cls}`, [
        `{name: glue/sst2, data_root: ${paths.tsv}, max_length: 32}`,
      ]),
    ];
    // a sweep whose only run fails (its evaluation file is missing): `failed`, one line, no stack trace
    const broken = recipe('fd-broken', `{name: ${m.roberta}, task: seq-cls}`, [
      `{name: my-nli, data_root: ${paths.own}, files: {train: nli/train.csv, validation: nli/missing.csv}, text: [premise, hypothesis], label: label, labels: ['no', 'yes'], max_length: 32}`,
    ]);
    // 1. --detach with no worker on the queue: submit says so, naming the command that fixes it
    const sweeps: string[] = [];
    for (const f of files) {
      const s = await rankflow('submit', f, '--detach');
      expect(s.code, s.stderr).toBe(0);
      const id = /(sweep-[0-9a-f]+): \d+ runs/.exec(s.stdout)?.[1];
      expect(id, s.stdout).toBeDefined();
      sweeps.push(id!);
      if (sweeps.length === 1)
        expect(s.stderr).toMatch(
          new RegExp(`no worker is polling queue \`${queue}\` \\([^)]*\\): start \`rankflow worker --queue ${queue}\``),
        );
    }
    const waiting = await rankflow('status', sweeps[0]!);
    expect(waiting.stdout).toContain(`no worker is polling queue \`${queue}\``);
    const b = await rankflow('submit', broken, '--detach');
    expect(b.code, b.stderr).toBe(0);
    const brokenId = /(sweep-[0-9a-f]+): \d+ runs/.exec(b.stdout)![1]!;
    // 2. the worker the README's cluster section starts
    worker = spawn(
      process.execPath,
      [join(PROJECT_ROOT, 'cli', 'bin.mjs'), 'worker', '--cpu-slots', '2', '--queue', queue],
      { cwd: PROJECT_ROOT, env: cliEnv(config) },
    );
    worker.stdout?.on('data', (d) => (workerLog += d));
    worker.stderr?.on('data', (d) => (workerLog += d));
    for (const id of sweeps) {
      const st = await waitFor(id, 900_000);
      expect(st.state, `${id}: ${JSON.stringify(st)}\n${workerLog.slice(-2000)}`).toBe('completed');
      expect(st.counts.failed).toBe(0);
    }
    const bst = await waitFor(brokenId, 300_000);
    expect(bst.state).toBe('failed');
    const ls = await rankflow('ls');
    expect(ls.stdout).toMatch(new RegExp(`${brokenId}\\s+failed`));
    const bs = await rankflow('status', brokenId);
    expect(bs.stdout).toMatch(
      /failed {2}lora r=2 my-nli seed \d+ {2}\(run-[0-9a-f]+\) {2}data error: dataset\.files\.validation: .*missing\.csv' does not exist/,
    );
    const table = await rankflow('table', brokenId);
    expect(table.stdout + table.stderr).not.toMatch(/Traceback|\n\s+at /);
    expect(workerLog).not.toMatch(/\n\s+at .*\.(js|ts):\d+/); // no SDK stack traces
    // 3. every format trained and was evaluated; GSM8k saved its generations
    const store = testStore(config);
    const manifests = await Promise.all(
      sweeps.map(
        async (id) =>
          JSON.parse((await store.get(`sweeps/${id}.json`))!.toString()) as {
            runs: { id: string; spec: { dataset: { name: string; data_root: string | null } } }[];
          },
      ),
    );
    const runs = manifests.flatMap((x) => x.runs);
    expect(runs).toHaveLength(6);
    const records = await Promise.all(
      runs.map(async (r) => ResultRecord.parse(JSON.parse((await store.get(resultKey(r.id)))!.toString()))),
    );
    for (const rec of records) expect(Object.keys(rec.metrics).length, JSON.stringify(rec)).toBeGreaterThan(0);
    // GSM8k's per-example generations are stored beside its result
    const gsmRun = runs.find((r) => r.spec.dataset.name === 'gsm8k')!;
    const gens = await store.list(`generations/${gsmRun.id}/`);
    expect(gens.length).toBeGreaterThan(0);
    const line = JSON.parse((await store.get(gens.at(-1)!))!.toString().split('\n')[0]!) as Record<string, unknown>;
    expect(Object.keys(line)).toEqual(
      expect.arrayContaining(['prompt', 'generation', 'extracted', 'reference_answer', 'correct']),
    );
    // 4. export the best checkpoint of the TSV run and reproduce its recorded metric through PEFT
    const tsvRun = manifests[0]!.runs.find((r) => r.spec.dataset.data_root === paths.tsv)!;
    const rec = records[runs.findIndex((r) => r.id === tsvRun.id)]!;
    const out = join(dir, 'adapter');
    const ex = await rankflow('export', tsvRun.id, '--out', out);
    expect(ex.code, ex.stderr).toBe(0);
    expect(ex.stdout).toMatch(
      new RegExp(`step ${rec.best_step}: the (best evaluation|final step, which is also the best)`),
    );
    const specFile = join(dir, 'spec.json');
    writeFileSync(specFile, JSON.stringify(tsvRun.spec));
    const chk = spawnSync(runtimePython(), [FIXTURES, 'check-export', '--adapter', out, '--spec', specFile], {
      encoding: 'utf8',
      timeout: 300_000,
      cwd: join(PROJECT_ROOT, 'runtime-native'),
    });
    expect(chk.status, chk.stderr).toBe(0);
    const got = JSON.parse(chk.stdout.trim().split('\n').at(-1)!) as { metric: string; value: number };
    expect(got.metric).toBe('accuracy');
    expect(got.value).toBeCloseTo(rec.best_metrics.accuracy!, 6);
  }, 1_500_000);
});
