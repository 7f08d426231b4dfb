/**
 * The on-disk cache of parameter counts (`<state folder>/count-cache/`), so that a re-plan does not start
 * the runtime again. One small JSON file per count, named by the SHA-256 of everything the count depends on:
 *
 * - the planner's `countKey(spec)` (model config, method with its rank, options and targets, head,
 *   dataset name/options/labels/columns/files, procedure);
 * - what `countKey` cannot see: the runtime itself (a hash of its Python sources, the interpreter's path
 *   and the modification times of its site-packages folders, `RANKFLOW_RUNTIME_MODULE`), a local model
 *   folder's absolute path and its files (names, sizes, mtimes, and `config.json`'s text), and the sizes and
 *   mtimes of a dataset's own files (the label count can come from them).
 *
 * An entry is never trusted blindly: it must parse, name the same key, and hold a count valid under
 * `schemas/count.ts` (or a null with the runtime's reason, for a spec the runtime refused: that is
 * deterministic too). Anything else (a corrupt, truncated or foreign file) is ignored and counted again.
 * Writers write a temporary file and rename it over the entry, so concurrent plans never see half a file.
 * Deleting the folder is always safe.
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, readdirSync, renameSync, statSync, writeFileSync, rmSync } from 'node:fs';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { z } from 'zod';
import { CountOutput } from '../schemas/count.js';
import type { RunSpec } from '../schemas/runspec.js';
import { RUNTIME_DIR } from '../core/paths.js';
import { countKey, type CountResult } from '../planning/planner.js';
import { UserError } from '../core/errors.js';
import { runtimePython, runtimeCwd } from './spawn.js';
import { asCount, countSpecsDetailed, distinctErrors } from './runtime-calls.js';

const FORMAT = 'rankflow-count-cache/1';

const Entry = z.object({
  format: z.literal(FORMAT),
  key: z.string(),
  count: CountOutput.nullable(),
  /** The runtime's reason when it could not count the spec (count null). */
  error: z.string().nullable(),
});

/** A cached count: the result (null: the runtime refused the spec) and the runtime's reason for a null. */
export interface CachedCount {
  count: CountResult | null;
  error: string | null;
}

function sha(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}

function statLine(file: string): string {
  try {
    const s = statSync(file);
    return `${file}:${s.size}:${s.mtimeMs}`;
  } catch {
    return `${file}:missing`;
  }
}

function walkPy(dir: string, out: string[]): void {
  for (const e of readdirSync(dir, { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : 1))) {
    if (e.name === '__pycache__' || e.name.startsWith('.')) continue;
    const p = join(dir, e.name);
    if (e.isDirectory()) walkPy(p, out);
    else if (e.name.endsWith('.py') || e.name.endsWith('.json')) out.push(p);
  }
}

/** site-packages folders of the interpreter's venv (their mtimes change when packages are installed). */
function sitePackages(python: string): string[] {
  const lib = join(dirname(dirname(python)), 'lib');
  try {
    return readdirSync(lib)
      .filter((d) => d.startsWith('python'))
      .map((d) => join(lib, d, 'site-packages'));
  } catch {
    return [];
  }
}

let runtimePrint: string | undefined;

/** A hash of the runtime that counts: its Python sources, its interpreter and its installed packages. */
export function runtimeFingerprint(): string {
  if (runtimePrint !== undefined) return runtimePrint;
  const h = createHash('sha256');
  const files: string[] = [];
  walkPy(join(RUNTIME_DIR, 'rankflow_runtime'), files);
  for (const f of files) h.update(f.slice(RUNTIME_DIR.length)).update('\0').update(readFileSync(f)).update('\0');
  const python = runtimePython();
  h.update(`python=${python}\0module=${process.env.RANKFLOW_RUNTIME_MODULE ?? ''}\0`);
  for (const d of sitePackages(python)) h.update(statLine(d)).update('\0');
  runtimePrint = h.digest('hex');
  return runtimePrint;
}

/** What a count depends on outside the spec: a local model folder's files, a dataset's own files. */
function filesPrint(spec: RunSpec): string {
  const parts: string[] = [];
  const cwd = runtimeCwd();
  // a local model folder (as the runtime resolves it: relative to the working folder, `~` = $HOME)
  const name = spec.model.name.replace(/^~/, process.env.HOME ?? '~');
  const folder = isAbsolute(name) ? name : resolve(cwd, name);
  if (spec.model.source !== 'builtin' && existsSync(folder)) {
    parts.push(`model=${folder}`);
    try {
      for (const f of readdirSync(folder).sort()) parts.push(statLine(join(folder, f)));
      parts.push(readFileSync(join(folder, 'config.json'), 'utf8'));
    } catch {
      parts.push('unreadable');
    }
  }
  const files = spec.dataset.files;
  if (files) {
    const base = resolve(cwd, spec.dataset.data_root ?? process.env.RANKFLOW_DATA ?? '.');
    for (const [split, f] of Object.entries(files).sort(([a], [b]) => (a < b ? -1 : 1)))
      for (const one of Array.isArray(f) ? f : [f]) parts.push(`${split}=${statLine(resolve(base, one))}`);
  }
  return parts.join('\n');
}

/** Counts cached in one folder, keyed by the planner's count key plus what lies outside the spec. */
export class CountCache {
  constructor(readonly dir: string) {}

  /** The full key of a spec's count (the entry's name). */
  entryKey(spec: RunSpec, countKey: string): string {
    return sha(`${FORMAT}\n${runtimeFingerprint()}\n${countKey}\n${filesPrint(spec)}`).slice(0, 40);
  }

  /** The cached count, or undefined when absent or not trustworthy. */
  get(key: string): CachedCount | undefined {
    let text: string;
    try {
      text = readFileSync(join(this.dir, `${key}.json`), 'utf8');
    } catch {
      return undefined;
    }
    let raw: unknown;
    try {
      raw = JSON.parse(text);
    } catch {
      return undefined;
    }
    const e = Entry.safeParse(raw);
    if (!e.success || e.data.key !== key) return undefined;
    if (e.data.count === null) return e.data.error ? { count: null, error: e.data.error } : undefined;
    const count = asCount(e.data.count); // the same reading as a fresh count's (exact, head and final kept)
    return count ? { count, error: null } : undefined;
  }

  /** Store a count (atomically: a temporary file renamed over the entry). Failures to write are ignored. */
  put(key: string, value: CachedCount): void {
    const file = join(this.dir, `${key}.json`);
    const tmp = `${file}.${process.pid}.${Math.random().toString(36).slice(2)}.tmp`;
    try {
      mkdirSync(this.dir, { recursive: true });
      writeFileSync(tmp, JSON.stringify({ format: FORMAT, key, count: value.count, error: value.error }));
      renameSync(tmp, file);
    } catch {
      rmSync(tmp, { force: true }); // a read-only state folder: counting still works, only uncached
    }
  }
}

/**
 * `countSpecs` through a cache: cached counts (and cached refusals, whose reasons go to `errors` as the
 * runtime would have said them) are answered from disk; the rest are counted in one runtime process, as
 * without a cache, and stored where the answer is the runtime's own (never a timeout or a crash).
 */
export async function countSpecsCached(
  specs: RunSpec[],
  cache: CountCache,
  errors?: string[],
  timeoutMs = 600_000,
): Promise<(CountResult | null)[]> {
  const out = new Array<CountResult | null>(specs.length).fill(null);
  const keys = specs.map((s) => cache.entryKey(s, countKey(s)));
  const missing: number[] = [];
  const reasons: (string | null)[] = [];
  keys.forEach((k, i) => {
    const hit = cache.get(k);
    if (hit === undefined) return void missing.push(i);
    out[i] = hit.count;
    reasons.push(hit.error);
  });
  if (missing.length > 0) {
    const d = await countSpecsDetailed(
      missing.map((i) => specs[i]!),
      timeoutMs,
    );
    missing.forEach((i, j) => {
      out[i] = d.results[j] ?? null;
      if (d.definite[j]) cache.put(keys[i]!, { count: out[i]!, error: d.errors[j] ?? null });
    });
    reasons.push(...d.errors);
    errors?.push(...distinctErrors(reasons));
    if (missing.length > 1 && d.results.every((x) => x === null))
      throw new UserError(`\`rankflow_runtime count\` failed: ${distinctErrors(d.errors)[0] ?? 'no result'}`);
    return out;
  }
  errors?.push(...distinctErrors(reasons));
  return out;
}
