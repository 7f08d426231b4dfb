/**
 * Checkpoints in the artifact store: `checkpoints/<run_id>/<step, 10 digits>/<file>`. The runtime's files
 * are uploaded first (each verified against the sha256 the runtime reported), then `stored.json` last: a
 * checkpoint without it is incomplete and never used. Old checkpoints are pruned (keep the last k and
 * the best).
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import type { ArtifactStore } from './store.js';
import { CheckpointFile } from '../schemas/events.js';
import type { CheckpointEvent } from '../schemas/events.js';
import { checkpointPrefix, STORED_MARKER } from './keys.js';

export { checkpointPrefix, STORED_MARKER };

export const StoredCheckpoint = z.strictObject({
  run_id: z.string(),
  step: z.number().int().nonnegative(),
  best: z.boolean(),
  reason: z.string(),
  /** Plain file names only: a marker must never make a download write outside its folder. */
  files: z.array(CheckpointFile.extend({ name: z.string().regex(/^(?!\.\.?$)[A-Za-z0-9._-]{1,200}$/) })),
  stored_at: z.string(),
});
export type StoredCheckpoint = z.infer<typeof StoredCheckpoint>;

export async function sha256File(path: string): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of createReadStream(path)) h.update(chunk as Buffer);
  return h.digest('hex');
}

/** A checkpoint whose local files are wrong or gone (the runtime prunes old ones): retrying cannot help. */
export class CheckpointFileError extends Error {}

/**
 * Uploads the files the runtime reported under `prefix`, each checked against its reported sha256 first
 * (a file that is gone or differs is a CheckpointFileError: retrying cannot help). The caller writes the marker.
 */
export async function putVerifiedFiles(
  store: ArtifactStore,
  prefix: string,
  dir: string,
  files: readonly { name: string; sha256: string }[],
  what: string,
  whenGone = '',
): Promise<void> {
  for (const f of files) {
    const local = join(dir, f.name);
    let sha: string;
    try {
      sha = await sha256File(local);
    } catch (e) {
      throw new CheckpointFileError(`${what} file ${local} is gone (${(e as Error).message})${whenGone}`);
    }
    if (sha !== f.sha256)
      throw new CheckpointFileError(`${what} file ${local} has sha256 ${sha}, the runtime reported ${f.sha256}`);
    await store.putFile(prefix + f.name, local);
  }
}

/** Uploads one checkpoint the runtime reported; returns the key of its marker. */
export async function uploadCheckpoint(
  store: ArtifactStore,
  runId: string,
  ev: CheckpointEvent,
  now: () => Date = () => new Date(),
): Promise<string> {
  const prefix = checkpointPrefix(runId, ev.step);
  await putVerifiedFiles(store, prefix, ev.path, ev.files, 'checkpoint', '; a newer checkpoint supersedes it');
  const marker: StoredCheckpoint = {
    run_id: runId,
    step: ev.step,
    best: ev.best,
    reason: ev.reason,
    files: ev.files,
    stored_at: now().toISOString(),
  };
  await store.put(prefix + STORED_MARKER, JSON.stringify(marker, null, 1));
  return prefix + STORED_MARKER;
}

/** Says what was skipped and why (the training activity writes it into the run's log). */
export type Warn = (msg: string) => void;

/** The marker at `key`, or why it is not one of this run's complete checkpoints. */
async function readMarker(store: ArtifactStore, runId: string, key: string): Promise<StoredCheckpoint | string> {
  const body = await store.get(key);
  if (!body) return 'it vanished while listing';
  let raw: unknown;
  try {
    raw = JSON.parse(body.toString('utf8'));
  } catch (e) {
    return `unreadable ${STORED_MARKER} (${(e as Error).message.slice(0, 80)})`;
  }
  const parsed = StoredCheckpoint.safeParse(raw);
  if (!parsed.success) {
    const i = parsed.error.issues[0];
    return `unreadable ${STORED_MARKER} (${i?.path.join('.') || 'marker'}: ${i?.message ?? 'invalid'})`;
  }
  if (parsed.data.run_id !== runId) return `it is run ${parsed.data.run_id.slice(0, 80)}'s checkpoint, not this run's`;
  if (key !== checkpointPrefix(runId, parsed.data.step) + STORED_MARKER) {
    return `its marker says step ${parsed.data.step}, its folder another`;
  }
  return parsed.data;
}

/**
 * Complete checkpoints of a run, oldest first. A marker that is unreadable, of another run or in the wrong
 * folder is skipped (and reported through `warn`): it is never used, and never fails the run.
 */
export async function listCheckpoints(store: ArtifactStore, runId: string, warn?: Warn): Promise<StoredCheckpoint[]> {
  const keys = await store.list(checkpointPrefix(runId));
  const out: StoredCheckpoint[] = [];
  for (const key of keys.filter((k) => k.endsWith('/' + STORED_MARKER))) {
    const ck = await readMarker(store, runId, key);
    if (typeof ck === 'string') warn?.(`skipping ${key.slice(0, -STORED_MARKER.length)}: ${ck}`);
    else out.push(ck);
  }
  return out.sort((a, b) => a.step - b.step);
}

/**
 * Downloads the files of one stored checkpoint into the folder `path`, each verified against its sha256.
 * Returns null when all verify, else the name of the first file that is missing or differs.
 */
export async function downloadCheckpoint(
  store: ArtifactStore,
  runId: string,
  ck: StoredCheckpoint,
  path: string,
): Promise<string | null> {
  const prefix = checkpointPrefix(runId, ck.step);
  await mkdir(path, { recursive: true }); // a marker listing no files still gives the runtime a folder to refuse
  for (const f of ck.files) {
    const local = join(path, f.name);
    if (!(await store.getFile(prefix + f.name, local)) || (await sha256File(local)) !== f.sha256) return f.name;
  }
  return null;
}

/**
 * Downloads the newest complete checkpoint whose files verify into `dir/<step>`, leaving out the steps in
 * `refused` (checkpoints the runtime refused in this attempt); a checkpoint that fails verification is
 * skipped (reported through `warn`) in favour of the one before it.
 */
export async function downloadLatestCheckpoint(
  store: ArtifactStore,
  runId: string,
  dir: string,
  warn: Warn,
  refused: ReadonlySet<number> = new Set(),
): Promise<{ step: number; path: string } | null> {
  const all = await listCheckpoints(store, runId, warn);
  for (const ck of all.reverse()) {
    if (refused.has(ck.step)) continue;
    const path = join(dir, String(ck.step));
    const bad = await downloadCheckpoint(store, runId, ck, path);
    if (bad === null) return { step: ck.step, path };
    await rm(path, { recursive: true, force: true });
    warn(
      `checkpoint ${checkpointPrefix(runId, ck.step)} is damaged (${bad} missing or its sha256 differs); trying an older one`,
    );
  }
  return null;
}

/** Where the reason a checkpoint was refused is kept (`checkpoints/<run>/<step>/refused.json`). */
export const REFUSED_MARKER = 'refused.json';

/**
 * The runtime refused a stored checkpoint (damaged, or not this run's): record why next to it and remove its
 * marker, so no later attempt tries it again and pruning removes its files like any incomplete upload.
 */
export async function refuseCheckpoint(store: ArtifactStore, runId: string, step: number, why: string): Promise<void> {
  const prefix = checkpointPrefix(runId, step);
  await store.put(prefix + REFUSED_MARKER, JSON.stringify({ run_id: runId, step, why, at: new Date().toISOString() }));
  await store.delete(prefix + STORED_MARKER);
}

/** Deletes checkpoints other than the newest `keepLast` and the best one; returns the steps deleted. */
export async function pruneCheckpoints(store: ArtifactStore, runId: string, keepLast: number): Promise<number[]> {
  const all = await listCheckpoints(store, runId);
  const keep = new Set(all.slice(-keepLast).map((c) => c.step));
  const best = [...all].reverse().find((c) => c.best);
  if (best) keep.add(best.step);
  const complete = new Set(all.map((c) => c.step));
  const newest = all.at(-1)?.step ?? -1;
  // Incomplete uploads older than the newest complete checkpoint are debris from a crashed attempt.
  const doomed = (step: number): boolean => (complete.has(step) ? !keep.has(step) : step < newest);
  const prefix = checkpointPrefix(runId);
  const keys = await store.list(prefix);
  const stepOf = (key: string): number => Number(key.slice(prefix.length).split('/')[0]);
  const isMarker = (key: string): boolean => key.endsWith('/' + STORED_MARKER);
  // Markers first, so a half-pruned checkpoint is never taken for a complete one.
  for (const key of keys) if (isMarker(key) && doomed(stepOf(key))) await store.delete(key);
  for (const key of keys) if (!isMarker(key) && doomed(stepOf(key))) await store.delete(key);
  return [...new Set(keys.map(stepOf))].filter(doomed).sort((a, b) => a - b);
}
