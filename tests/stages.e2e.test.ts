/**
 * Stages on the real parts (Temporal dev server, SeaweedFS S3, the Python runtime, recipes planned by the real
 * planner): runs that build on runs. Each stage kind runs end to end — compress → fine-tune (LoRD), pretrain →
 * fine-tune (SLTrain's procedure), prune → train → recover (LoRAM) — and, for each of the three kinds:
 * resubmitting runs nothing, growing the fine-tuning grid runs only the new downstream runs, a corrupt upstream
 * artifact in the store is refused (never loaded; a LoRAM recover run behind it is blocked), and a worker killed
 * between the stages loses nothing (the upstream run is not redone, the downstream one resumes from the store);
 * a failed upstream run blocks its dependants until `resume` runs it again, then them.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { randomInt } from 'node:crypto';
import { mkdtemp, writeFile, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Client } from '@temporalio/client';
import { startWorker, type RunningWorker } from '../cli/worker.js';
import type { Config } from '../cli/config.js';
import { startSweep, writeManifest, type SubmitOptions } from '../cli/sweeps.js';
import { planRecipeFile } from '../cli/recipe-io.js';
import type { SweepStatus } from '../schemas/orchestration.js';
import type { PlannedRun } from '../schemas/runspec.js';
import { ResultRecord } from '../schemas/result.js';
import { storedArtifact, artifactPrefix } from '../store/artifacts.js';
import { listCheckpoints } from '../store/checkpoints.js';
import type { S3Store } from '../store/store.js';
import { testClient, testConfig, testStore, uniqueId, workerProcess } from './helpers/cluster.js';
import { readRecord, waitFor } from './helpers/runs.js';

const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!().catch(() => undefined);
});

const MODEL = `
model:
  name: tiny-decoder
  config: {vocab_size: 384, hidden_size: 32, num_layers: 1, num_heads: 2, num_kv_heads: 1, intermediate_size: 48, max_position: 64}
training: {lr: 3e-3, max_steps: 6, batch_size: 8, eval_every: null, checkpoint_every: 3, log_every: 1, max_grad_norm: 1.0}
device: cpu
`;
const corpus = (extra = ''): string => `
datasets:
  - name: corpus/synthetic
    max_length: 24
    train_size: 48
    eval_size: 16${extra}
`;

/** Plan a recipe written here (the real planner, no runtime counts). A fresh seed keeps run ids unique per test run. */
async function plan(body: string): Promise<PlannedRun[]> {
  const dir = await mkdtemp(join(tmpdir(), 'rankflow-stages-'));
  const file = join(dir, 'recipe.yaml');
  await writeFile(file, `name: stages-e2e\n${body}`);
  return (await planRecipeFile(file, { count: 'never' })).runs;
}

async function sweep(
  client: Client,
  config: Config,
  store: S3Store,
  runs: PlannedRun[],
  id?: string,
): Promise<SweepStatus> {
  const opts: SubmitOptions = {
    sweepId: id ?? uniqueId('sweep-stages'),
    recipe: 'stages-e2e',
    runs,
    concurrency: 2,
    policy: { heartbeat_timeout_s: 20, max_attempts: 4 },
  };
  await writeManifest(store, config, opts);
  await startSweep(client, config, opts);
  return (await client.workflow.getHandle(opts.sweepId).result()) as SweepStatus;
}

const stageRuns = (runs: PlannedRun[], stage: string) => runs.filter((r) => r.labels.stage === stage);

async function failureRecord(store: S3Store, runId: string): Promise<ResultRecord | null> {
  const body = await store.get(`failed/${runId}.json`);
  return body ? ResultRecord.parse(JSON.parse(body.toString('utf8'))) : null;
}

describe('stages on real Temporal + S3 + runtime (in-process worker)', () => {
  let config: Config;
  let store: S3Store;
  let client: Client;
  let closeClient: () => Promise<void>;
  let worker: RunningWorker;
  beforeAll(async () => {
    config = testConfig();
    store = testStore(config);
    await store.ensureBucket();
    ({ client, close: closeClient } = await testClient(config));
    worker = await startWorker(config, { slots: { cpu: 2 }, shutdownGraceS: 5 });
  });
  afterAll(async () => {
    await closeClient?.();
    await worker?.shutdown();
  });

  it('compress → fine-tune: runs; resubmission runs nothing; a grown grid runs only new runs; a corrupt artifact is refused', async () => {
    const seed = randomInt(1, 2 ** 40);
    const recipe = (methods: string, seeds: string) => `${MODEL}${corpus()}
methods: ${methods}
ranks: [2]
seeds: ${seeds}
stages:
  compress:
    procedure: compress
    methods: [{name: lord, ranks: [8], options: {rank_rule: fixed}, targets: [q_proj, v_proj, up_proj]}]
    seeds: [${seed}]
  finetune: {from: compress}
`;
    const runs = await plan(recipe('[lora]', `[${seed}]`));
    const [comp] = stageRuns(runs, 'compress');
    const [ft] = stageRuns(runs, 'finetune');
    expect(ft!.spec.inputs).toEqual({ model: { run: comp!.id, artifact: 'model' } });

    const first = await sweep(client, config, store, runs);
    expect(first.counts).toMatchObject({ succeeded: 2, failed: 0, blocked: 0 });
    const marker = await storedArtifact(store, comp!.id, 'model');
    expect(marker?.kind).toBe('model');
    expect(marker!.files.at(-1)!.name).toBe('complete.json');
    const cr = (await readRecord(store, comp!.id))!;
    expect(cr.stats!.compression_ratio).toBeGreaterThan(1);
    expect(cr.stats!.layers_factored).toBe(3);
    const fr = (await readRecord(store, ft!.id))!;
    expect(fr.status).toBe('succeeded');
    expect(fr.spec.inputs!.model!.run).toBe(comp!.id);
    expect(fr.trainable_params).toBeGreaterThan(0);

    // Resubmitting the same recipe runs nothing.
    const again = await sweep(client, config, store, await plan(recipe('[lora]', `[${seed}]`)));
    expect(again.counts).toMatchObject({ succeeded: 0, skipped: 2 });

    // Growing the fine-tuning grid (a second method) runs only the new fine-tuning run.
    const grown = await plan(recipe('[lora, dora]', `[${seed}]`));
    expect(grown).toHaveLength(3);
    const g = await sweep(client, config, store, grown);
    expect(g.counts).toMatchObject({ succeeded: 1, skipped: 2, failed: 0 });
    expect((await readRecord(store, comp!.id))!.timings.attempts).toBe(1); // the compression ran once

    // A damaged upstream artifact in the store: the next new downstream run is refused, never trained.
    const key = artifactPrefix(comp!.id, 'model') + marker!.files[0]!.name;
    const bytes = (await store.get(key))!;
    bytes[bytes.length >> 1] = bytes[bytes.length >> 1]! ^ 0xff;
    await store.put(key, bytes);
    const more = await plan(recipe('[lora, dora]', `[${seed}, ${seed + 1}]`));
    const fresh = more.filter((r) => !grown.some((x) => x.id === r.id));
    expect(fresh).toHaveLength(2);
    const h = await sweep(client, config, store, more);
    expect(h.counts).toMatchObject({ skipped: 3, failed: 2, succeeded: 0 });
    for (const r of fresh) {
      const f = (await failureRecord(store, r.id))!;
      expect(f.error!.kind).toBe('data');
      expect(f.error!.message).toMatch(/damaged in the store .* refused/);
      expect(f.timings.attempts).toBe(1); // not retried
      expect(await listCheckpoints(store, r.id)).toHaveLength(0); // never started training
    }
  }, 900_000);

  it('prune → train → recover (LoRAM): evaluated on the full model; resubmission, a grown grid, a corrupt pruned model', async () => {
    const seed = randomInt(1, 2 ** 40);
    const recipe = (ranks: string) => `${MODEL}${corpus()}
methods: [{name: lora, ranks: ${ranks}, targets: [q_proj, v_proj, up_proj, down_proj]}]
seeds: [${seed}]
stages:
  prune:
    procedure: prune
    methods: [full]
    options: {mlp_ratio: 0.5, attn_ratio: 0.0}
  train: {from: prune}
  recover: {procedure: recover, from: {adapter: train, pruned: prune}}
`;
    const runs = await plan(recipe('[2]'));
    expect(runs.map((r) => r.labels.stage)).toEqual(['prune', 'train', 'recover']);
    const status = await sweep(client, config, store, runs);
    expect(status.counts).toMatchObject({ succeeded: 3, failed: 0 });
    const [prune, train, recover] = runs;
    const pr = (await readRecord(store, prune!.id))!;
    expect(pr.stats!.params_pruned).toBeLessThan(pr.stats!.params_full!);
    expect(await storedArtifact(store, train!.id, 'adapter')).not.toBeNull();
    const rr = (await readRecord(store, recover!.id))!;
    expect(rr.stats!.params_full).toBe(pr.stats!.params_full);
    for (const k of ['pruned_lora_perplexity', 'full_untrained_perplexity', 'unmerged_perplexity'])
      expect(rr.stats![k]).toBeGreaterThan(0);
    expect(rr.metrics.perplexity).toBeCloseTo(rr.stats!.unmerged_perplexity!, 3); // merged == unmerged
    expect(await storedArtifact(store, recover!.id, 'model')).not.toBeNull();

    // Resubmitting runs nothing; a second LoRA rank runs only its train and recover runs on the stored pruning.
    expect((await sweep(client, config, store, await plan(recipe('[2]')))).counts).toMatchObject({
      succeeded: 0,
      skipped: 3,
    });
    const grown = await plan(recipe('[2, 4]'));
    expect(grown).toHaveLength(5);
    expect((await sweep(client, config, store, grown)).counts).toMatchObject({ succeeded: 2, skipped: 3 });
    expect((await readRecord(store, prune!.id))!.timings.attempts).toBe(1); // pruned once
    // A damaged pruned model: the new train run is refused (never trained) and its recover run blocked.
    await corrupt(store, prune!.id, 'model');
    const more = await plan(recipe('[2, 4, 8]'));
    const fresh = more.filter((r) => !grown.some((x) => x.id === r.id));
    expect(fresh.map((r) => r.labels.stage)).toEqual(['train', 'recover']);
    const h = await sweep(client, config, store, more);
    expect(h.counts).toMatchObject({ skipped: 5, failed: 1, blocked: 1, succeeded: 0 });
    await expectRefused(store, fresh.slice(0, 1));
    expect((await failureRecord(store, fresh[1]!.id))!.error!.kind).toBe('blocked');
  }, 1_200_000);

  it('a failed upstream run blocks its dependants; resume runs it again, then them', async () => {
    const seed = randomInt(1, 2 ** 40);
    const root = await mkdtemp(join(tmpdir(), 'rankflow-corpus-'));
    const runs = await plan(`${MODEL}
datasets:
  - name: corpus/files
    data_root: ${root}
    max_length: 24
    options: {train_files: [text/*.txt]}
methods: [lora]
ranks: [2]
seeds: [${seed}]
stages:
  pretrain: {procedure: pretrain, methods: [full]}
  finetune: {from: pretrain}
`);
    const [pre, ft] = runs;
    const id = uniqueId('sweep-stages');
    const first = await sweep(client, config, store, runs, id); // the corpus files are not there yet
    expect(first.counts).toMatchObject({ failed: 1, blocked: 1, succeeded: 0 });
    expect((await failureRecord(store, pre!.id))!.error!.kind).toBe('data');
    const blocked = (await failureRecord(store, ft!.id))!;
    expect(blocked.error!.kind).toBe('blocked');
    expect(blocked.error!.message).toContain(pre!.id);
    await mkdir(join(root, 'text'));
    const docs = Array.from({ length: 40 }, (_, i) => `document ${i} about stage ${i % 7} and run ${i % 3}.`);
    await writeFile(join(root, 'text', 'a.txt'), docs.join('\n\n'));
    const resumed = await sweep(client, config, store, runs, id); // what `rankflow resume` does
    expect(resumed.counts).toMatchObject({ succeeded: 2, failed: 0, blocked: 0 });
    expect((await readRecord(store, ft!.id))!.status).toBe('succeeded');
    expect(await failureRecord(store, ft!.id)).toBeNull(); // the success superseded the blocked record
  }, 900_000);
});

/** Kill the worker once `up`'s artifact is stored and `down` has checkpointed; a second worker finishes. */
async function killBetweenStages(body: string, up: string, down: string, artifact: string) {
  const config = testConfig();
  const store = testStore(config);
  await store.ensureBucket();
  const { client, close } = await testClient(config);
  cleanups.push(close);
  const runs = await plan(body);
  const [upRun] = stageRuns(runs, up);
  const [downRun] = stageRuns(runs, down);
  const first = workerProcess(config);
  cleanups.push(async () => first.kill('SIGKILL'));
  const opts: SubmitOptions = {
    sweepId: uniqueId('sweep-stages'),
    recipe: 'stages-e2e',
    runs,
    concurrency: 1,
    policy: { heartbeat_timeout_s: 8, max_attempts: 6, terminate_grace_s: 30 },
  };
  await writeManifest(store, config, opts);
  await startSweep(client, config, opts);
  // The upstream run finished and stored its artifact; the downstream one has started: kill the worker.
  await waitFor(`the ${up} artifact in the store`, () => storedArtifact(store, upRun!.id, artifact), 300_000);
  await waitFor('a downstream checkpoint', async () => (await listCheckpoints(store, downRun!.id)).length > 0, 300_000);
  first.kill('SIGKILL');
  const second = workerProcess(config);
  cleanups.push(async () => second.kill('SIGTERM'));
  const status = (await client.workflow.getHandle(opts.sweepId).result()) as SweepStatus;
  expect(status.counts).toMatchObject({ succeeded: runs.length, failed: 0 });
  expect((await readRecord(store, upRun!.id))!.timings.attempts).toBe(1); // the upstream run was not redone
  const dr = (await readRecord(store, downRun!.id))!;
  expect(dr.timings.attempts).toBeGreaterThanOrEqual(2); // resumed on the second worker, from the store
  return { config, store, client, runs, upRun: upRun!, downRun: downRun! };
}

/** Flip a byte in the middle of the first file of a run's stored artifact. */
async function corrupt(store: S3Store, runId: string, artifact: string): Promise<void> {
  const marker = (await storedArtifact(store, runId, artifact))!;
  const key = artifactPrefix(runId, artifact) + marker.files[0]!.name;
  const bytes = (await store.get(key))!;
  bytes[bytes.length >> 1] = bytes[bytes.length >> 1]! ^ 0xff;
  await store.put(key, bytes);
}

/** Every run is refused with a data error naming the damaged artifact, never retried, never trained. */
async function expectRefused(store: S3Store, runs: PlannedRun[]): Promise<void> {
  for (const r of runs) {
    const f = (await failureRecord(store, r.id))!;
    expect(f.error!.kind).toBe('data');
    expect(f.error!.message).toMatch(/damaged in the store .* refused/);
    expect(f.timings.attempts).toBe(1);
    expect(await listCheckpoints(store, r.id)).toHaveLength(0);
  }
}

describe('stages and worker faults', () => {
  it('pretrain → fine-tune: a killed worker loses nothing; resubmission, a grown grid, a corrupt model', async () => {
    const seed = randomInt(1, 2 ** 40);
    const recipe = (methods: string, ranks: string) => `${MODEL}${corpus()}
methods: ${methods}
ranks: ${ranks}
seeds: [${seed}]
stages:
  pretrain: {procedure: pretrain, methods: [{name: sltrain, ranks: [4], options: {sparsity: 0.05}}]}
  finetune: {from: pretrain, training: {max_steps: 30, checkpoint_every: 2}}
`;
    const k = await killBetweenStages(recipe('[lora]', '[2]'), 'pretrain', 'finetune', 'model');
    const { config, store, client, upRun: pre } = k;
    expect((await readRecord(store, pre.id))!.stats!.tokens_per_s).toBeGreaterThan(0);
    // Resubmitting runs nothing; a second fine-tuning method runs only its run on the stored model.
    const again = await sweep(client, config, store, await plan(recipe('[lora]', '[2]')));
    expect(again.counts).toMatchObject({ succeeded: 0, skipped: 2 });
    const grown = await plan(recipe('[lora, dora]', '[2]'));
    expect((await sweep(client, config, store, grown)).counts).toMatchObject({ succeeded: 1, skipped: 2 });
    expect((await readRecord(store, pre.id))!.timings.attempts).toBe(1);
    // A damaged pretrained model: the new fine-tuning runs are refused.
    await corrupt(store, pre.id, 'model');
    const more = await plan(recipe('[lora, dora]', '[2, 3]'));
    const fresh = more.filter((r) => !grown.some((x) => x.id === r.id));
    expect(fresh).toHaveLength(2);
    expect((await sweep(client, config, store, more)).counts).toMatchObject({ skipped: 3, failed: 2, succeeded: 0 });
    await expectRefused(store, fresh);
  }, 1_500_000);

  it('compress → fine-tune: a worker killed between the stages loses nothing', async () => {
    const seed = randomInt(1, 2 ** 40);
    const { store, upRun } = await killBetweenStages(
      `${MODEL}${corpus()}
methods: [lora]
ranks: [2]
seeds: [${seed}]
stages:
  compress:
    procedure: compress
    methods: [{name: lord, ranks: [8], options: {rank_rule: fixed}, targets: [q_proj, v_proj, up_proj]}]
  finetune: {from: compress, training: {max_steps: 30, checkpoint_every: 2}}
`,
      'compress',
      'finetune',
      'model',
    );
    expect((await readRecord(store, upRun.id))!.stats!.compression_ratio).toBeGreaterThan(1);
  }, 900_000);

  it('prune → train → recover: a worker killed between prune and train loses nothing', async () => {
    const seed = randomInt(1, 2 ** 40);
    const { store, runs } = await killBetweenStages(
      `${MODEL}${corpus()}
methods: [{name: lora, ranks: [2], targets: [q_proj, v_proj, up_proj, down_proj]}]
seeds: [${seed}]
stages:
  prune: {procedure: prune, methods: [full], options: {mlp_ratio: 0.5, attn_ratio: 0.0}}
  train: {from: prune, training: {max_steps: 30, checkpoint_every: 2}}
  recover: {procedure: recover, from: {adapter: train, pruned: prune}}
`,
      'prune',
      'train',
      'model',
    );
    const [recover] = stageRuns(runs, 'recover');
    expect((await readRecord(store, recover!.id))!.stats!.full_untrained_perplexity).toBeGreaterThan(0);
  }, 900_000);
});
