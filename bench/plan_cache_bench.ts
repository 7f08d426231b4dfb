/**
 * The count cache (launcher/count-cache.ts): `rankflow plan recipes/glue-roberta-base.yaml` with an empty
 * cache (every count by the runtime, batched) against the same plan with a warm cache, in one process
 * (so CLI start-up is out of both figures), plus the CLI's own start-up (`rankflow --version`) for scale:
 *
 *   npx tsx bench/plan_cache_bench.ts [recipe] [--warm 5]
 *
 * Prints the cold time, the median warm time, their ratio, and whether both plans are the same runs with
 * the same counts. Goal: warm ≤ 1 s (beyond start-up).
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PROJECT_ROOT } from '../core/paths.js';
import { planRecipeFile } from '../cli/recipe-io.js';

const args = process.argv.slice(2);
const wi = args.indexOf('--warm');
const WARM = wi >= 0 ? Number(args[wi + 1]) : 5;
const recipe = args.find((a, i) => !a.startsWith('--') && args[i - 1] !== '--warm') ?? 'recipes/glue-roberta-base.yaml';
const file = join(PROJECT_ROOT, recipe);
const cache = mkdtempSync(join(tmpdir(), 'rankflow-count-cache-bench-'));

async function timed(): Promise<{ ms: number; sig: string }> {
  const t0 = performance.now();
  const p = await planRecipeFile(file, { countCache: cache });
  const ms = performance.now() - t0;
  return { ms, sig: JSON.stringify(p.runs.map((r) => [r.id, r.params])) };
}

async function main(): Promise<void> {
  try {
    const cold = await timed();
    const entries = readdirSync(cache).length;
    const warm: number[] = [];
    let same = true;
    for (let i = 0; i < WARM; i++) {
      const w = await timed();
      warm.push(w.ms);
      same &&= w.sig === cold.sig;
    }
    warm.sort((a, b) => a - b);
    const med = warm[Math.floor(warm.length / 2)]!;
    const t0 = performance.now();
    spawnSync(process.execPath, [join(PROJECT_ROOT, 'cli', 'bin.mjs'), '--version'], { cwd: PROJECT_ROOT });
    const startup = performance.now() - t0;
    console.log(`recipe ${recipe}: ${entries} counts cached`);
    console.log(`plan, empty cache (runtime counts)   ${(cold.ms / 1000).toFixed(2)} s`);
    console.log(
      `plan, warm cache (median of ${WARM})     ${(med / 1000).toFixed(3)} s   (cold/warm ${(cold.ms / med).toFixed(0)}x)`,
    );
    console.log(`CLI start-up (rankflow --version)    ${(startup / 1000).toFixed(2)} s`);
    console.log(`same runs and counts: ${same ? 'yes' : 'NO'}`);
    if (!same) process.exitCode = 1;
  } finally {
    rmSync(cache, { recursive: true, force: true });
  }
}

await main();
