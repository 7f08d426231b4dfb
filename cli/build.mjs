// The compiled CLI: esbuild bundles cli/main.ts (one chunk per lazily loaded command, node_modules left
// external) into dist/<stamp>/, where <stamp> is a hash of the sources' paths, sizes and modification times.
// `bin.mjs` runs the build whose stamp matches the sources and builds it first when there is none, so an
// edited source is compiled once, on the next start. `bash scripts/setup.sh` builds it ahead of time
// (`node cli/build.mjs`). Plain JavaScript: it must run before anything is compiled.
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, renameSync, rmSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
export const DIST = join(ROOT, 'dist');
/** The folders the CLI's code comes from (README "Layout"), plus this file. */
const SOURCE_DIRS = [
  'core',
  'schemas',
  'planning',
  'tables',
  'store',
  'launcher',
  'services',
  'workflows',
  'activities',
  'cli',
];

function walk(dir, out) {
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) walk(p, out);
    else if (/\.(ts|json|mjs)$/.test(e.name)) out.push(p);
  }
}

/** A short hash of the sources' paths, sizes and modification times (no file is read). */
export function sourceStamp() {
  const files = [];
  for (const d of SOURCE_DIRS) walk(join(ROOT, d), files);
  const h = createHash('sha1');
  for (const f of files.sort()) {
    const s = statSync(f);
    h.update(`${f}\0${s.size}\0${s.mtimeMs}\n`);
  }
  return h.digest('hex').slice(0, 16);
}

/** The entry module of the build for `stamp` (it may not exist yet). */
export const entryFor = (stamp) => join(DIST, stamp, 'main.js');

/** Builds dist/<stamp>/ (atomically: another process building the same stamp at once is harmless). */
export async function build(stamp = sourceStamp()) {
  const { build: esbuild } = await import('esbuild');
  const target = join(DIST, stamp);
  if (existsSync(entryFor(stamp))) return entryFor(stamp);
  const tmp = `${target}.tmp-${process.pid}`;
  mkdirSync(DIST, { recursive: true });
  await esbuild({
    entryPoints: [join(ROOT, 'cli', 'main.ts')],
    outdir: tmp,
    bundle: true,
    splitting: true,
    format: 'esm',
    platform: 'node',
    target: 'node20',
    packages: 'external',
    sourcemap: 'linked',
    logLevel: 'error',
  });
  try {
    renameSync(tmp, target);
  } catch {
    rmSync(tmp, { recursive: true, force: true }); // another process won the race: use its build
  }
  // Older builds go once they are an hour old (a process started from one may still load its chunks).
  for (const old of readdirSync(DIST)) {
    const p = join(DIST, old);
    if (old !== stamp && Date.now() - statSync(p).mtimeMs > 3_600_000) rmSync(p, { recursive: true, force: true });
  }
  return entryFor(stamp);
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const t0 = Date.now();
  const entry = await build();
  console.log(`build: ${entry.slice(ROOT.length + 1)} (${Date.now() - t0} ms)`);
}
