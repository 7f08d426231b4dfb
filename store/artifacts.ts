/**
 * Run artifacts in the store (the models and adapters a run writes for later runs): `artifacts/<run_id>/<name>/
 * <file>`. Like checkpoints: the runtime's files are uploaded first, each verified against the sha256 the runtime
 * reported, then `stored.json` last; an artifact without it is incomplete and never used. A downstream run's
 * activity downloads every file of each input artifact and checks its sha256 against the marker before the
 * runtime (which verifies the artifact's own `complete.json` again) ever sees it.
 */
import { join } from 'node:path';
import { z } from 'zod';
import type { ArtifactStore } from './store.js';
import { ARTIFACT_KINDS, CheckpointFile, type ArtifactEvent } from '../schemas/events.js';
import { artifactPrefix, STORED_MARKER } from './keys.js';
import { putVerifiedFiles, sha256File } from './checkpoints.js';

export { artifactPrefix };

export const StoredArtifact = z.strictObject({
  run_id: z.string(),
  name: z.string(),
  kind: z.enum(ARTIFACT_KINDS),
  files: z.array(CheckpointFile).min(1),
  stored_at: z.string(),
});
export type StoredArtifact = z.infer<typeof StoredArtifact>;

/** An input artifact that is missing from the store or does not verify: retrying the downstream run cannot help. */
export class ArtifactError extends Error {}

/** Uploads one artifact the runtime reported (files, then the marker); returns the marker's key. */
export async function uploadArtifact(
  store: ArtifactStore,
  runId: string,
  ev: ArtifactEvent,
  now: () => Date = () => new Date(),
): Promise<string> {
  const prefix = artifactPrefix(runId, ev.name);
  await putVerifiedFiles(store, prefix, ev.path, ev.files, 'artifact');
  const marker: StoredArtifact = {
    run_id: runId,
    name: ev.name,
    kind: ev.kind,
    files: ev.files,
    stored_at: now().toISOString(),
  };
  await store.put(prefix + STORED_MARKER, JSON.stringify(marker, null, 1));
  return prefix + STORED_MARKER;
}

/** The stored marker of a run's artifact, or null when it is not (completely) stored. */
export async function storedArtifact(
  store: ArtifactStore,
  runId: string,
  name: string,
): Promise<StoredArtifact | null> {
  const body = await store.get(artifactPrefix(runId, name) + STORED_MARKER);
  if (!body) return null;
  const parsed = StoredArtifact.safeParse(JSON.parse(body.toString('utf8')));
  return parsed.success ? parsed.data : null;
}

/**
 * Downloads a stored artifact into `dir`, every file verified against the marker's sha256. Throws ArtifactError
 * when the artifact is not stored or a file is missing or differs (a transport error propagates as is).
 */
export async function downloadArtifact(
  store: ArtifactStore,
  runId: string,
  name: string,
  dir: string,
): Promise<string> {
  const marker = await storedArtifact(store, runId, name);
  if (!marker)
    throw new ArtifactError(
      `artifact \`${name}\` of ${runId} is not in the store (the upstream run wrote none, or its upload never finished)`,
    );
  const prefix = artifactPrefix(runId, name);
  for (const f of marker.files) {
    const local = join(dir, f.name);
    if (!(await store.getFile(prefix + f.name, local)))
      throw new ArtifactError(`artifact \`${name}\` of ${runId}: ${f.name} is missing from the store`);
    const sha = await sha256File(local);
    if (sha !== f.sha256)
      throw new ArtifactError(
        `artifact \`${name}\` of ${runId}: ${f.name} is damaged in the store (sha256 ${sha.slice(0, 12)}..., ` +
          `stored ${f.sha256.slice(0, 12)}...); it is refused — re-run ${runId} (delete its result, then resume)`,
      );
  }
  return dir;
}
