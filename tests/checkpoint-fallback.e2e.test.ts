/**
 * The store side of the checkpoint tamper matrix, on the real parts (Temporal, SeaweedFS, a worker, the
 * runtime): each run has real checkpoints at steps 4 and 8 in the store, and the newest (or a foreign one
 * placed after it) is tampered with. Every run must still succeed with the metrics of an uninterrupted run:
 * what is damaged or not this run's is skipped or refused (one line in the run's log) and the run resumes from
 * the newest good checkpoint (step 4), or starts afresh when none is left. Nothing tampered is ever loaded.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Client } from '@temporalio/client';
import { startWorker } from '../cli/worker.js';
import type { RunningWorker } from '../cli/worker.js';
import type { Config } from '../cli/config.js';
import { startSweep, writeManifest } from '../cli/sweeps.js';
import { checkpointPrefix, listCheckpoints, STORED_MARKER, uploadCheckpoint } from '../store/checkpoints.js';
import type { S3Store } from '../store/store.js';
import type { CheckpointEvent } from '../schemas/events.js';
import type { SweepStatus } from '../schemas/orchestration.js';
import type { PlannedRun } from '../schemas/runspec.js';
import { createHash } from 'node:crypto';
import { testClient, testConfig, testStore, uniqueId } from './helpers/cluster.js';
import { planned, preemptedCheckpoints, readRecord, tinySpec, uninterrupted } from './helpers/runs.js';

type Tamper = (store: S3Store, run: string, other: { id: string; ev: CheckpointEvent }) => Promise<void>;

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

async function edit(store: S3Store, key: string, fn: (b: Buffer) => Buffer): Promise<Buffer> {
  const body = fn((await store.get(key))!);
  await store.put(key, body);
  return body;
}

/** Rewrites a stored file and records its new sha256 in `stored.json` (consistent for the store's check). */
async function editSealed(store: S3Store, run: string, step: number, name: string, fn: (b: Buffer) => Buffer) {
  const body = await edit(store, checkpointPrefix(run, step) + name, fn);
  await edit(store, checkpointPrefix(run, step) + STORED_MARKER, (m) => {
    const marker = JSON.parse(m.toString()) as { files: { name: string; sha256: string; bytes: number }[] };
    for (const f of marker.files) if (f.name === name) Object.assign(f, { sha256: sha(body), bytes: body.length });
    return Buffer.from(JSON.stringify(marker));
  });
}

const flipLast = (b: Buffer): Buffer => {
  const c = Buffer.from(b);
  c[c.length - 1] = c[c.length - 1]! ^ 1;
  return c;
};

/** name → (tamper, the line the run's log must show, the step the run resumes from) */
const CASES: Record<string, [Tamper, RegExp, number | null]> = {
  'byte flip in the store (its sha256 differs from stored.json)': [
    (s, run) => edit(s, checkpointPrefix(run, 8) + 'adapter.safetensors', flipLast).then(() => undefined),
    /0000000008\/ is damaged/,
    4,
  ],
  'manifest step edited, stored.json resealed': [
    (s, run) =>
      editSealed(s, run, 8, 'manifest.json', (b) => Buffer.from(b.toString().replace('"step": 8', '"step": 9'))),
    /refused checkpoint step 8 .*manifest\.json: sha256 mismatch/,
    4,
  ],
  'complete.json truncated, stored.json resealed': [
    (s, run) => editSealed(s, run, 8, 'complete.json', (b) => b.subarray(0, 10)),
    /refused checkpoint step 8 .*complete\.json is not valid JSON/,
    4,
  ],
  'stored.json lists no files': [
    (s, run) =>
      edit(s, checkpointPrefix(run, 8) + STORED_MARKER, (m) =>
        Buffer.from(JSON.stringify({ ...JSON.parse(m.toString()), files: [] })),
      ).then(() => undefined),
    /refused checkpoint step 8 .*no manifest\.json/,
    4,
  ],
  'garbage stored.json at a newer step': [
    (s, run) => s.put(checkpointPrefix(run, 12) + STORED_MARKER, '{garbage'),
    /skipping checkpoints\/run-[0-9a-f]+\/0000000012\/: unreadable stored\.json/,
    8,
  ],
  "another run's checkpoint with its own marker": [
    async (s, run, other) => {
      await uploadCheckpoint(s, run, other.ev);
      await edit(s, checkpointPrefix(run, 12) + STORED_MARKER, (m) =>
        Buffer.from(JSON.stringify({ ...JSON.parse(m.toString()), run_id: other.id })),
      );
    },
    /skipping .*0000000012\/: it is run run-[0-9a-f]+'s checkpoint, not this run's/,
    8,
  ],
  "another run's checkpoint with a marker naming this run": [
    async (s, run, other) => void (await uploadCheckpoint(s, run, other.ev)),
    /refused checkpoint step 12 .*written by a different run spec \(differs in seed\)/,
    8,
  ],
  'every checkpoint damaged: a fresh start': [
    async (s, run) => {
      for (const step of [4, 8]) await edit(s, checkpointPrefix(run, step) + 'optimizer.safetensors', flipLast);
    },
    /0000000004\/ is damaged/,
    null,
  ],
};

let config: Config;
let store: S3Store;
let worker: RunningWorker;
let client: Client;
let closeClient: () => Promise<void>;

beforeAll(async () => {
  config = testConfig();
  store = testStore(config);
  await store.ensureBucket();
  worker = await startWorker(config, { slots: { cpu: 2 }, shutdownGraceS: 5 });
  ({ client, close: closeClient } = await testClient(config));
});

afterAll(async () => {
  await closeClient?.();
  await worker?.shutdown();
});

describe('stored checkpoints that lie are skipped or refused, and the run falls back', () => {
  it('every tampered case: succeeded, metrics of an uninterrupted run, resumed from the newest good checkpoint', async () => {
    const names = Object.keys(CASES);
    // One training, many run ids: the runs differ only in dataset.data_root, which the synthetic task does not
    // read and a checkpoint may differ in (machine-specific), so one reference and one set of checkpoints serve.
    const base = tinySpec({ steps: 16, checkpointEvery: 1000 });
    const specs = names.map((_, i) => ({
      ...base,
      dataset: { ...base.dataset, data_root: `/tmp/rankflow-tamper-${i}` },
    }));
    const otherSpec = tinySpec({ steps: 16, checkpointEvery: 1000 });
    const [ref, mine, other] = await Promise.all([
      uninterrupted(base),
      preemptedCheckpoints(base, [4, 8]),
      preemptedCheckpoints(otherSpec, [12]),
    ]);
    const runs: PlannedRun[] = specs.map(planned);
    for (const [i, run] of runs.entries()) {
      for (const ev of mine) await uploadCheckpoint(store, run.id, ev);
      await CASES[names[i]!]![0](store, run.id, { id: planned(otherSpec).id, ev: other[0]! });
    }
    const opts = { sweepId: uniqueId('sweep-tamper'), recipe: 'tamper', runs, concurrency: 2 };
    await writeManifest(store, config, opts);
    await startSweep(client, config, { ...opts, policy: { heartbeat_timeout_s: 20, max_attempts: 2 } });
    const status = (await client.workflow.getHandle(opts.sweepId).result()) as SweepStatus;
    expect(status.counts.succeeded, JSON.stringify(status.failed)).toBe(runs.length);
    for (const [i, run] of runs.entries()) {
      const [, line, from] = CASES[names[i]!]!;
      const rec = (await readRecord(store, run.id))!;
      expect(rec.metrics, names[i]).toEqual(ref.metrics);
      expect(rec.timings.attempts, names[i]).toBe(1);
      const log = (await store.get(`logs/${run.id}/attempt-1.log`))!.toString();
      expect(log, names[i]).toMatch(line);
      if (from === null) expect(log, names[i]).not.toMatch(/resumed from/);
      else expect(log, names[i]).toMatch(new RegExp(`resumed from .* at step ${from} `));
      if (/refused/.test(line.source)) {
        // A refused checkpoint loses its marker (refused.json says why) and is pruned once newer ones exist.
        const step = Number(/step (\d+)/.exec(line.source)![1]);
        expect(
          (await listCheckpoints(store, run.id)).map((c) => c.step),
          names[i],
        ).not.toContain(step);
        expect(await store.list(checkpointPrefix(run.id, step)), names[i]).toEqual([]);
      }
    }
  }, 900_000);
});
