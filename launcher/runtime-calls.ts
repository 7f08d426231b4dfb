/**
 * Short runtime calls through the launcher (`launcher/spawn.ts`): `count --specs FILE` (trainable/total
 * parameters on the meta device) and `describe` (the runtime's methods, models and datasets). Failures
 * become UserErrors with a hint.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { RuntimeDescription } from '../schemas/describe.js';
import { CountOutput } from '../schemas/count.js';
import type { RunSpec } from '../schemas/runspec.js';
import type { CountResult } from '../planning/planner.js';
import { UserError } from '../core/errors.js';
import { runRuntime, type Completed } from './spawn.js';

/** The last JSON `error` event on stdout, or the last stderr line: what to show when the runtime fails. */
function failureText(r: Completed): string {
  for (const line of r.stdout.trim().split('\n').reverse()) {
    try {
      const ev = JSON.parse(line) as { event?: string; message?: string; hint?: string | null };
      if (ev && ev.event === 'error' && ev.message) return ev.message + (ev.hint ? ` (${ev.hint})` : '');
    } catch {
      /* not JSON */
    }
  }
  const last = r.stderr.trim().split('\n').filter(Boolean).pop();
  return last ?? `exit code ${r.code}`;
}

/** `describe`: the runtime's methods, models and datasets. */
export async function describeRuntime(timeoutMs = 120_000): Promise<RuntimeDescription> {
  const r = await runRuntime(['describe'], timeoutMs);
  if (r.code !== 0) throw new UserError(`\`rankflow_runtime describe\` failed: ${failureText(r)}`);
  let parsed: unknown;
  try {
    parsed = JSON.parse(r.stdout);
  } catch {
    throw new UserError('`rankflow_runtime describe` printed something that is not JSON; is the runtime up to date?');
  }
  const v = RuntimeDescription.safeParse(parsed);
  if (!v.success) {
    const i = v.error.issues[0]!;
    throw new UserError(
      `\`rankflow_runtime describe\` output does not match schemas/describe.ts at ${i.path.join('.')}: ${i.message}`,
    );
  }
  return v.data;
}

/** One entry of `count`'s output (schemas/count.ts), as the planner's CountResult; null if malformed. */
function asCount(x: unknown): CountResult | null {
  const r = CountOutput.safeParse(x);
  if (!r.success) return null;
  const { trainable, total, final, exact } = r.data;
  return {
    trainable,
    total,
    ...(final !== undefined && final !== trainable ? { final } : {}),
    ...(exact === false ? { exact } : {}),
  };
}

async function countBatch(
  specs: RunSpec[],
  timeoutMs: number,
): Promise<{ ok: true; results: (CountResult | null)[] } | { ok: false; error: string }> {
  const dir = mkdtempSync(join(tmpdir(), 'rankflow-count-'));
  try {
    const file = join(dir, 'specs.json');
    writeFileSync(file, JSON.stringify(specs));
    const r = await runRuntime(['count', '--specs', file], timeoutMs);
    if (r.code !== 0) return { ok: false, error: failureText(r) };
    let parsed: unknown;
    try {
      parsed = JSON.parse(r.stdout.trim().split('\n').pop() ?? '');
    } catch {
      return { ok: false, error: 'count printed something that is not a JSON array' };
    }
    if (!Array.isArray(parsed) || parsed.length !== specs.length)
      return {
        ok: false,
        error: `count returned ${Array.isArray(parsed) ? parsed.length : 'no'} results for ${specs.length} specs`,
      };
    return { ok: true, results: parsed.map(asCount) };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * Count trainable/total parameters of each spec on the meta device with one runtime call
 * (`count --specs`). A spec the runtime refuses gets null (found by counting the failed batch one by one)
 * and its error is appended to `errors`.
 */
export async function countSpecs(
  specs: RunSpec[],
  timeoutMs = 600_000,
  errors?: string[],
): Promise<(CountResult | null)[]> {
  if (specs.length === 0) return [];
  const r = await countBatch(specs, timeoutMs);
  if (r.ok) return r.results;
  if (specs.length === 1) {
    errors?.push(r.error);
    return [null];
  }
  // One bad spec fails a batch, and the runtime names it (`specs.json[i]: ...`): mark it, count the rest
  // again. Without an index, fall back to one process per spec.
  const out: (CountResult | null)[] = new Array(specs.length).fill(null);
  let pending = specs.map((_, i) => i);
  let last: Awaited<ReturnType<typeof countBatch>> = r;
  for (let guard = 0; pending.length > 0 && guard <= specs.length; guard++) {
    if (last.ok) {
      last.results.forEach((c, k) => (out[pending[k]!] = c));
      break;
    }
    const m = /specs\.json\[(\d+)\]/.exec(last.error);
    const bad = m ? Number(m[1]) : -1;
    if (bad < 0 || bad >= pending.length) {
      for (const i of pending) {
        const one = await countBatch([specs[i]!], timeoutMs);
        if (one.ok) out[i] = one.results[0] ?? null;
        else
          errors?.push(
            `${specs[i]!.method.name}${specs[i]!.method.rank !== null ? ` r=${specs[i]!.method.rank}` : ''}: ${one.error}`,
          );
      }
      break;
    }
    const s = specs[pending[bad]!]!;
    errors?.push(
      `${s.method.name}${s.method.rank !== null ? ` r=${s.method.rank}` : ''}: ${last.error.replace(/^specs\.json\[\d+\]: /, '')}`,
    );
    // The same model and method on another dataset fails the same way (a dataset changes only the head):
    // drop those too, so k distinct failures cost k+1 processes, not one per spec.
    const sig = JSON.stringify([s.model, s.method]);
    pending = pending.filter((i, k) => k !== bad && JSON.stringify([specs[i]!.model, specs[i]!.method]) !== sig);
    if (pending.length === 0) break;
    last = await countBatch(
      pending.map((i) => specs[i]!),
      timeoutMs,
    );
  }
  if (out.every((x) => x === null)) throw new UserError(`\`rankflow_runtime count\` failed: ${errors?.[0] ?? r.error}`);
  return out;
}
