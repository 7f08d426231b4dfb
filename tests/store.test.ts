/**
 * The artifact store contract, run against both implementations: a local folder and the real S3 server
 * (SeaweedFS on loopback). Also the checkpoint layer on top: completeness markers, verification of
 * downloads, pruning (keep the last k and the best).
 */
import { describe, expect, it } from 'vitest';
import { mkdtemp, readFile, readdir, writeFile, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createHash, randomBytes } from 'node:crypto';
import { LocalStore, isStoreFull } from '../store/store.js';
import { UserError } from '../core/errors.js';
import type { ArtifactStore } from '../store/store.js';
import {
  checkpointPrefix,
  downloadLatestCheckpoint,
  listCheckpoints,
  pruneCheckpoints,
  uploadCheckpoint,
  CheckpointFileError,
  refuseCheckpoint,
  REFUSED_MARKER,
} from '../store/checkpoints.js';
import type { CheckpointEvent } from '../schemas/events.js';
import { testConfig, testStore } from './helpers/cluster.js';

async function tmp(): Promise<string> {
  return await mkdtemp(join(tmpdir(), 'rankflow-store-'));
}

const makers: [string, () => Promise<ArtifactStore>][] = [
  ['local folder', async () => new LocalStore(await tmp())],
  [
    'S3 (SeaweedFS)',
    async () => {
      const s = testStore(testConfig());
      await s.ensureBucket();
      return s;
    },
  ],
];

async function fakeCheckpoint(
  dir: string,
  step: number,
  best = false,
  reason: 'interval' | 'final' | 'preempt' = 'interval',
): Promise<CheckpointEvent> {
  const path = join(dir, `step-${step}`);
  await mkdir(path, { recursive: true });
  const files = [];
  for (const name of ['adapter.safetensors', 'optimizer.safetensors']) {
    const body = Buffer.from(`${name} at step ${step} ${randomBytes(8).toString('hex')}`);
    await writeFile(join(path, name), body);
    files.push({ name, sha256: createHash('sha256').update(body).digest('hex'), bytes: body.length });
  }
  return { event: 'checkpoint', time: 0, step, path, files, best, reason };
}

describe.each(makers)('artifact store: %s', (_name, make) => {
  it('put/get/exists/list/delete, with keys under a prefix only', async () => {
    const store = await make();
    expect(await store.get('results/none.json')).toBeNull();
    await store.put('results/a.json', '{"a":1}');
    await store.put('results/b.json', Buffer.from('{"b":2}'));
    await store.put('resultsX/c.json', 'x');
    expect((await store.get('results/a.json'))!.toString()).toBe('{"a":1}');
    expect(await store.exists('results/b.json')).toBe(true);
    expect(await store.list('results/')).toEqual(['results/a.json', 'results/b.json']);
    await store.delete('results/a.json');
    expect(await store.exists('results/a.json')).toBe(false);
    await store.delete('results/a.json'); // deleting twice is fine
  });

  it('putIfAbsent writes once and never overwrites', async () => {
    const store = await make();
    expect(await store.putIfAbsent('results/once.json', 'first')).toBe(true);
    expect(await store.putIfAbsent('results/once.json', 'second')).toBe(false);
    expect((await store.get('results/once.json'))!.toString()).toBe('first');
  });

  it('round-trips a large file byte for byte (multipart on S3)', async () => {
    const store = await make();
    const dir = await tmp();
    const body = randomBytes(9 * 1024 * 1024 + 123);
    await writeFile(join(dir, 'big.bin'), body);
    await store.putFile('checkpoints/big/0000000001/big.bin', join(dir, 'big.bin'));
    expect(await store.getFile('checkpoints/big/0000000001/big.bin', join(dir, 'back.bin'))).toBe(true);
    expect(Buffer.compare(await readFile(join(dir, 'back.bin')), body)).toBe(0);
    expect(await store.getFile('checkpoints/big/nope', join(dir, 'nope.bin'))).toBe(false);
  }, 60_000);

  it('rejects keys that could escape the store', async () => {
    const store = await make();
    await expect(store.put('../evil', 'x')).rejects.toThrow(/invalid artifact key/);
    await expect(store.put('/abs', 'x')).rejects.toThrow(/invalid artifact key/);
    await expect(store.get('results/../../etc/passwd')).rejects.toBeInstanceOf(UserError); // one line, no stack
  });

  it('checkpoints: only complete ones count, damaged ones are skipped, pruning keeps the last k and the best', async () => {
    const store = await make();
    const dir = await tmp();
    const run = 'run-' + randomBytes(16).toString('hex');
    await uploadCheckpoint(store, run, await fakeCheckpoint(dir, 10, true));
    await uploadCheckpoint(store, run, await fakeCheckpoint(dir, 20));
    await uploadCheckpoint(store, run, await fakeCheckpoint(dir, 30));
    // An upload that died before its marker: files present, no stored.json.
    const partial = await fakeCheckpoint(dir, 40);
    await store.putFile(checkpointPrefix(run, 40) + 'adapter.safetensors', join(partial.path, 'adapter.safetensors'));
    expect((await listCheckpoints(store, run)).map((c) => c.step)).toEqual([10, 20, 30]);

    // The newest complete one is damaged: the download falls back to the one before it.
    await store.put(checkpointPrefix(run, 30) + 'adapter.safetensors', 'garbage');
    const warnings: string[] = [];
    const got = await downloadLatestCheckpoint(store, run, join(dir, 'dl'), (m) => warnings.push(m));
    expect(got?.step).toBe(20);
    expect(warnings.join('\n')).toMatch(/damaged/);

    await uploadCheckpoint(store, run, await fakeCheckpoint(dir, 50));
    const deleted = await pruneCheckpoints(store, run, 2);
    expect(deleted).toEqual([20, 40]);
    expect((await listCheckpoints(store, run)).map((c) => c.step)).toEqual([10, 30, 50]); // best (10) + last 2
    expect((await store.list(checkpointPrefix(run))).some((k) => k.includes('/0000000040/'))).toBe(false);
  }, 60_000);

  it('checkpoints: a marker that is unreadable, of another run, in the wrong folder or escaping is skipped, said', async () => {
    const store = await make();
    const dir = await tmp();
    const run = 'run-' + randomBytes(16).toString('hex');
    await uploadCheckpoint(store, run, await fakeCheckpoint(dir, 10));
    await store.put(checkpointPrefix(run, 20) + 'stored.json', '{garbage');
    await uploadCheckpoint(store, 'run-other', await fakeCheckpoint(dir, 30));
    await store.put(
      checkpointPrefix(run, 30) + 'stored.json',
      (await store.get(checkpointPrefix('run-other', 30) + 'stored.json'))!,
    );
    const moved = JSON.parse((await store.get(checkpointPrefix(run, 10) + 'stored.json'))!.toString()) as object;
    await store.put(checkpointPrefix(run, 40) + 'stored.json', JSON.stringify(moved));
    const escaping = { ...moved, step: 50, files: [{ name: '../../../escape', sha256: 'a'.repeat(64), bytes: 1 }] };
    await store.put(checkpointPrefix(run, 50) + 'stored.json', JSON.stringify(escaping));
    const warnings: string[] = [];
    expect((await listCheckpoints(store, run, (m) => warnings.push(m))).map((c) => c.step)).toEqual([10]);
    expect(warnings).toHaveLength(4);
    expect(warnings[0]).toMatch(/0000000020\/: unreadable stored\.json/);
    expect(warnings[1]).toMatch(/0000000030\/: it is run run-other's checkpoint, not this run's/);
    expect(warnings[2]).toMatch(/0000000040\/: its marker says step 10, its folder another/);
    expect(warnings[3]).toMatch(/0000000050\/: unreadable stored\.json \(files\.0\.name/);
    // The skipped ones are never downloaded: the newest good one is.
    expect((await downloadLatestCheckpoint(store, run, join(dir, 'dl'), () => undefined))?.step).toBe(10);
  });

  it('a refused checkpoint is marked and no longer listed', async () => {
    const store = await make();
    const dir = await tmp();
    const run = 'run-' + randomBytes(16).toString('hex');
    await uploadCheckpoint(store, run, await fakeCheckpoint(dir, 10));
    await uploadCheckpoint(store, run, await fakeCheckpoint(dir, 20));
    await refuseCheckpoint(store, run, 20, 'manifest.json: sha256 mismatch');
    expect((await listCheckpoints(store, run)).map((c) => c.step)).toEqual([10]);
    expect(JSON.parse((await store.get(checkpointPrefix(run, 20) + REFUSED_MARKER))!.toString()).why).toMatch(/sha256/);
    const got = await downloadLatestCheckpoint(store, run, join(dir, 'dl'), () => undefined, new Set([10]));
    expect(got).toBeNull(); // and a step refused in this attempt is left out too
  });

  it('a failed write leaves no temporary file behind', async () => {
    const store = await make();
    await expect(
      store.putFile('checkpoints/run-x/0000000001/adapter.safetensors', '/nonexistent/file'),
    ).rejects.toThrow();
    if (store instanceof LocalStore) {
      const folder = join(store.root, 'checkpoints', 'run-x', '0000000001');
      expect(await readdir(folder).catch(() => [])).toEqual([]);
    }
    expect(await store.list('checkpoints/run-x/')).toEqual([]);
  });

  it('refuses to upload a checkpoint whose local file does not match the reported sha256', async () => {
    const store = await make();
    const dir = await tmp();
    const ev = await fakeCheckpoint(dir, 5);
    await writeFile(join(ev.path, 'adapter.safetensors'), 'tampered');
    await expect(uploadCheckpoint(store, 'run-x', ev)).rejects.toBeInstanceOf(CheckpointFileError);
    expect(await listCheckpoints(store, 'run-x')).toEqual([]);
  });
});

describe('a full store is recognised (so it is reported at once, not retried)', () => {
  it("ENOSPC/EDQUOT, HTTP 507, and the servers' words for it, also when wrapped as a cause", () => {
    const enospc = Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' });
    expect(isStoreFull(enospc)).toBe(true);
    expect(isStoreFull(Object.assign(new Error('quota'), { code: 'EDQUOT' }))).toBe(true);
    expect(isStoreFull(Object.assign(new Error('x'), { $metadata: { httpStatusCode: 507 } }))).toBe(true);
    expect(isStoreFull(new Error('uploading checkpoint step 4 failed', { cause: enospc }))).toBe(true);
    expect(isStoreFull(new Error('no writable volumes'))).toBe(true);
    expect(isStoreFull(Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' }))).toBe(false);
    expect(isStoreFull(Object.assign(new Error('x'), { $metadata: { httpStatusCode: 500 } }))).toBe(false);
  });
});
