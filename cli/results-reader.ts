/**
 * Reads result records for tables and plots through the `ArtifactStore` (local folder or S3): resolves
 * sweep ids and recipe names to sweep manifests (`sweeps/<sweep_id>.json`), joins several sweeps, applies
 * filters (method, dataset, rank, tag, model, setting) and turns each planned run into a `RunRow`: the
 * result record (`results/<run_id>.json`) when there is one, else the failure record the orchestrator writes
 * for a run that failed (`failed/<run_id>.json`, status `failed`), else a `missing` row. Nothing is dropped.
 */
import { basename, extname, resolve } from 'node:path';
import { LocalStore, openStore, type ArtifactStore } from '../store/store.js';
import { ResultRecord } from '../schemas/result.js';
import { SweepManifest } from '../schemas/orchestration.js';
import type { RunLabels } from '../schemas/runspec.js';
import { missingRun, runFromRecord, type RunRow } from '../tables/runs.js';
import { TableInputError } from '../core/errors.js';
import { resolveConfig } from './config.js';

import { FAILED_PREFIX as FAILED, failureKey, resultKey, SWEEPS_PREFIX as SWEEPS, sweepKey } from '../store/keys.js';

export interface RunFilters {
  methods?: string[];
  /** Dataset names; a family (`glue`, `vtab`) selects all of its tasks. */
  datasets?: string[];
  /** Ranks; `null` selects runs without a rank. */
  ranks?: (number | null)[];
  /** A run must carry every tag given. */
  tags?: string[];
  models?: string[];
  settings?: string[];
  /** Recipe stages (labels.stage). */
  stages?: string[];
}

export interface Selection {
  runs: RunRow[];
  sweeps: SweepManifest[];
  store: string;
  /** What the reader chose on the user's behalf (printed on stderr by the commands). */
  notes: string[];
}

function short(xs: string[], max = 10): string {
  if (xs.length === 0) return '(none)';
  return xs.length <= max ? xs.join(', ') : `${xs.slice(0, max).join(', ')}, ... (${xs.length} in all)`;
}

function parseJson(body: Buffer, key: string): unknown {
  try {
    return JSON.parse(body.toString('utf8'));
  } catch (e) {
    throw new TableInputError(
      `${key}: not valid JSON (${(e as Error).message.split('\n')[0]}); the file is corrupt, delete or rewrite it`,
    );
  }
}

function firstIssue(error: { issues: { path: PropertyKey[]; message: string }[] }): string {
  const i = error.issues[0]!;
  return `field \`${i.path.map(String).join('.') || '(root)'}\`: ${i.message}`;
}

export async function readManifestKey(store: ArtifactStore, key: string): Promise<SweepManifest | null> {
  const body = await store.get(key);
  if (!body) return null;
  const r = SweepManifest.safeParse(parseJson(body, key));
  if (!r.success) throw new TableInputError(`${key}: not a valid sweep manifest (${firstIssue(r.error)})`);
  return r.data;
}

export async function listSweeps(store: ArtifactStore): Promise<SweepManifest[]> {
  const keys = (await store.list(SWEEPS)).filter((k) => k.endsWith('.json'));
  const out: SweepManifest[] = [];
  for (const k of keys) {
    const m = await readManifestKey(store, k);
    if (m) out.push(m);
  }
  return out;
}

const stem = (p: string): string => basename(p, extname(p));

/**
 * Sweep manifests named by sweep id or by recipe (path or file stem); several targets are joined. A recipe
 * names its latest sweep (a changed recipe gets a new sweep id; older sweeps can be joined by id); `notes`
 * receives a line when older sweeps of a recipe were left out.
 */
export async function resolveTargets(
  store: ArtifactStore,
  targets: string[],
  notes: string[] = [],
): Promise<SweepManifest[]> {
  if (targets.length === 0)
    throw new TableInputError('name at least one sweep id or recipe (`rankflow table <sweep|recipe>`)');
  const chosen = new Map<string, SweepManifest>();
  let all: SweepManifest[] | null = null;
  for (const t of targets) {
    const direct = /^[A-Za-z0-9._-]+$/.test(t) ? await readManifestKey(store, sweepKey(t)) : null;
    if (direct) {
      chosen.set(direct.sweep_id, direct);
      continue;
    }
    all ??= await listSweeps(store);
    const byRecipe = all.filter(
      (m) => m.recipe !== null && (m.recipe === t || resolve(m.recipe) === resolve(t) || stem(m.recipe) === stem(t)),
    );
    if (byRecipe.length === 0) {
      const recipes = [...new Set(all.map((m) => m.recipe).filter((r): r is string => r !== null))].sort();
      throw new TableInputError(
        `no sweep or recipe named \`${t}\` in ${store.description}; sweeps: ${short(all.map((m) => m.sweep_id).sort())}; recipes: ${short(recipes)}`,
      );
    }
    const latest = [...byRecipe].sort((a, b) =>
      a.created_at < b.created_at ? 1 : a.created_at > b.created_at ? -1 : 0,
    )[0]!;
    chosen.set(latest.sweep_id, latest);
    if (byRecipe.length > 1) {
      notes.push(
        `recipe ${t} has ${byRecipe.length} sweeps; using the latest, ${latest.sweep_id} (${latest.created_at}); name sweep ids to join others: ${byRecipe
          .filter((m) => m !== latest)
          .map((m) => m.sweep_id)
          .join(', ')}`,
      );
    }
  }
  return [...chosen.values()];
}

function matchesDataset(filter: string, dataset: string): boolean {
  return filter === dataset || dataset.startsWith(`${filter}/`);
}

/** Applies the filters to planned runs' labels; a filter value that matches nothing is an error naming what exists. */
export function filterLabels<T extends { labels: RunLabels }>(runs: T[], f: RunFilters): T[] {
  const check = (
    flag: string,
    wanted: string[] | undefined,
    have: string[],
    match: (w: string, h: string) => boolean,
  ): void => {
    if (!wanted) return;
    for (const w of wanted) {
      if (!have.some((h) => match(w, h))) {
        throw new TableInputError(
          `${flag} ${w} matches no run in the selection; it has ${short([...new Set(have)].sort())}`,
        );
      }
    }
  };
  const eqi = (a: string, b: string): boolean => a.toLowerCase() === b.toLowerCase();
  check(
    '--method',
    f.methods,
    runs.map((r) => r.labels.method),
    eqi,
  );
  check(
    '--dataset',
    f.datasets,
    runs.map((r) => r.labels.dataset),
    matchesDataset,
  );
  check(
    '--model',
    f.models,
    runs.map((r) => r.labels.model),
    (a, b) => a === b,
  );
  check(
    '--setting',
    f.settings,
    runs.map((r) => r.labels.setting),
    (a, b) => a === b,
  );
  check(
    '--tag',
    f.tags,
    runs.flatMap((r) => r.labels.tags),
    (a, b) => a === b,
  );
  check(
    '--stage',
    f.stages,
    runs.map((r) => r.labels.stage ?? '(none)'),
    (a, b) => a === b,
  );
  check(
    '--rank',
    f.ranks?.map((r) => (r === null ? 'none' : String(r))),
    runs.map((r) => (r.labels.rank === null ? 'none' : String(r.labels.rank))),
    (a, b) => a === b,
  );
  return runs.filter((r) => {
    const l = r.labels;
    if (f.methods && !f.methods.some((m) => eqi(m, l.method))) return false;
    if (f.datasets && !f.datasets.some((d) => matchesDataset(d, l.dataset))) return false;
    if (f.models && !f.models.includes(l.model)) return false;
    if (f.settings && !f.settings.includes(l.setting)) return false;
    if (f.ranks && !f.ranks.includes(l.rank)) return false;
    if (f.tags && !f.tags.every((t) => l.tags.includes(t))) return false;
    if (f.stages && !f.stages.includes(l.stage ?? '(none)')) return false;
    return true;
  });
}

export async function mapPool<T, R>(items: T[], limit: number, fn: (x: T) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]!);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}

export async function readResult(store: ArtifactStore, runId: string): Promise<ResultRecord | null> {
  const key = resultKey(runId);
  const body = await store.get(key);
  if (!body) return null;
  const r = ResultRecord.safeParse(parseJson(body, key));
  if (!r.success) throw new TableInputError(`${key}: not a valid result record (${firstIssue(r.error)})`);
  return r.data;
}

/** Reads the selected sweeps' runs: results where recorded, `missing` rows where not. */
export async function readSelection(
  store: ArtifactStore,
  targets: string[],
  filters: RunFilters = {},
  opts: { concurrency?: number } = {},
): Promise<Selection> {
  const notes: string[] = [];
  const sweeps = await resolveTargets(store, targets, notes);
  const planned = new Map<string, { sweep: string; run: SweepManifest['runs'][number] }>();
  for (const m of sweeps)
    for (const run of m.runs) if (!planned.has(run.id)) planned.set(run.id, { sweep: m.sweep_id, run });
  const selected = filterLabels(
    [...planned.values()].map((p) => ({ ...p, labels: p.run.labels })),
    filters,
  );
  if (selected.length === 0) {
    throw new TableInputError(`empty selection: sweep(s) ${sweeps.map((m) => m.sweep_id).join(', ')} plan no runs`);
  }
  const failedKeys = new Set(await store.list(FAILED));
  const runs = await mapPool(selected, opts.concurrency ?? 32, async ({ sweep, run }) => {
    const rec = await readResult(store, run.id);
    if (rec) return runFromRecord(rec);
    // The orchestrator records a run that failed (after its retries) under failed/<run_id>.json, as a result
    // record with status `failed`; `rankflow resume` may still turn it into a success.
    const fk = failureKey(run.id);
    if (failedKeys.has(fk)) {
      const body = await store.get(fk);
      if (body) {
        const parsed = ResultRecord.safeParse(parseJson(body, fk));
        if (parsed.success) return runFromRecord({ ...parsed.data, status: 'failed' });
        return missingRun(
          run.id,
          sweep,
          run.labels,
          `${fk} is not a valid result record (${firstIssue(parsed.error)})`,
          run.params,
        );
      }
    }
    return missingRun(run.id, sweep, run.labels, null, run.params);
  });
  await joinUpstreamStats(store, runs);
  return { runs, sweeps, store: store.description, notes };
}

/**
 * Stages: give every run the stats of the runs it builds on (nearest upstream first; its own win), so a
 * fine-tuning row can show its compression ratio or pruned size (`rankflow table --stats`).
 */
export async function joinUpstreamStats(store: ArtifactStore, runs: RunRow[]): Promise<void> {
  const known = new Map<string, { stats: Record<string, number>; upstream: string[] }>(runs.map((r) => [r.run_id, r]));
  const lookup = async (id: string) => {
    let hit = known.get(id);
    if (!hit) {
      const rec = await readResult(store, id);
      hit = rec ? runFromRecord(rec) : { stats: {}, upstream: [] };
      known.set(id, hit);
    }
    return hit;
  };
  for (const r of runs) {
    const seen = new Set([r.run_id]);
    let frontier = [...r.upstream];
    while (frontier.length) {
      const next: string[] = [];
      for (const id of frontier) {
        if (seen.has(id)) continue;
        seen.add(id);
        const up = await lookup(id);
        for (const [k, v] of Object.entries(up.stats)) if (!(k in r.stats)) r.stats[k] = v;
        next.push(...up.upstream);
      }
      frontier = next;
    }
  }
}

/**
 * The store to read: `--store` (a folder, `file:<folder>`, or `s3://bucket[/prefix]` with RANKFLOW_S3_ENDPOINT),
 * else the configured store (environment, config file, or the running embedded services).
 */
export async function openResultStore(flag: string | undefined): Promise<ArtifactStore> {
  if (flag) {
    if (flag.startsWith('s3://')) {
      const [bucket, ...rest] = flag.slice(5).split('/');
      if (!bucket) throw new TableInputError(`--store ${flag}: expected s3://bucket[/prefix]`);
      return openStore({
        kind: 's3',
        bucket,
        prefix: rest.join('/') || undefined,
        endpoint: process.env.RANKFLOW_S3_ENDPOINT,
        region: process.env.AWS_REGION,
        accessKeyId: process.env.AWS_ACCESS_KEY_ID,
        secretAccessKey: process.env.AWS_SECRET_ACCESS_KEY,
      });
    }
    return new LocalStore(resolve(flag.startsWith('file:') ? flag.slice(5) : flag));
  }
  const config = await resolveConfig({ start: false });
  return openStore(config.store);
}
