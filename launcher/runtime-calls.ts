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
export function asCount(x: unknown): CountResult | null {
  const r = CountOutput.safeParse(x);
  return r.success ? countResultOf(r.data) : null;
}

/** The planner's CountResult of a `count` output (also of a cached one: launcher/count-cache.ts). */
export function countResultOf(c: CountOutput): CountResult {
  const { trainable, total, final, exact, head } = c;
  return {
    trainable,
    total,
    ...(final !== undefined && final !== trainable ? { final } : {}),
    ...(exact === false ? { exact } : {}),
    ...(head !== undefined ? { head } : {}),
  };
}

type Batch = { ok: true; results: (CountResult | null)[] } | { ok: false; error: string; exited: boolean };

async function countBatch(specs: RunSpec[], timeoutMs: number): Promise<Batch> {
  const dir = mkdtempSync(join(tmpdir(), 'rankflow-count-'));
  try {
    const file = join(dir, 'specs.json');
    writeFileSync(file, JSON.stringify(specs));
    const r = await runRuntime(['count', '--specs', file], timeoutMs);
    // exited: the runtime ended by itself (a refusal it explains), not killed by a timeout or a signal
    if (r.code !== 0) return { ok: false, error: failureText(r), exited: r.code !== null };
    let parsed: unknown;
    try {
      parsed = JSON.parse(r.stdout.trim().split('\n').pop() ?? '');
    } catch {
      return { ok: false, error: 'count printed something that is not a JSON array', exited: false };
    }
    if (!Array.isArray(parsed) || parsed.length !== specs.length)
      return {
        ok: false,
        error: `count returned ${Array.isArray(parsed) ? parsed.length : 'no'} results for ${specs.length} specs`,
        exited: false,
      };
    return { ok: true, results: parsed.map(asCount) };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Counts of a batch with, per spec, the runtime's reason when it refused it (null: counted, or unknown why). */
export interface DetailedCounts {
  results: (CountResult | null)[];
  /** The runtime's reason for a null, prefixed with the method (`lora r=4: ...`). */
  errors: (string | null)[];
  /** True where the result is the runtime's answer (a count, or a refusal it explained): safe to cache. */
  definite: boolean[];
}

const label = (s: RunSpec): string => `${s.method.name}${s.method.rank !== null ? ` r=${s.method.rank}` : ''}`;

async function countOneByOne(specs: RunSpec[], idx: number[], timeoutMs: number, out: DetailedCounts): Promise<void> {
  for (const i of idx) {
    const one = await countBatch([specs[i]!], timeoutMs);
    if (one.ok) {
      out.results[i] = one.results[0] ?? null;
      out.definite[i] = out.results[i] !== null;
    } else {
      out.errors[i] = `${label(specs[i]!)}: ${one.error}`;
      out.definite[i] = one.exited;
    }
  }
}

/**
 * `countSpecs` with the reason of each refusal. One bad spec fails a batch, and the runtime names it
 * (`specs.json[i]: ...`): mark it, count the rest again. Without an index, one process per spec.
 */
export async function countSpecsDetailed(specs: RunSpec[], timeoutMs = 600_000): Promise<DetailedCounts> {
  const out: DetailedCounts = {
    results: new Array<CountResult | null>(specs.length).fill(null),
    errors: new Array<string | null>(specs.length).fill(null),
    definite: new Array<boolean>(specs.length).fill(false),
  };
  if (specs.length === 0) return out;
  let pending = specs.map((_, i) => i);
  let last = await countBatch(specs, timeoutMs);
  if (!last.ok && specs.length === 1) {
    out.errors[0] = last.error;
    out.definite[0] = last.exited;
    return out;
  }
  for (let guard = 0; pending.length > 0 && guard <= specs.length; guard++) {
    if (last.ok) {
      last.results.forEach((c, k) => {
        out.results[pending[k]!] = c;
        out.definite[pending[k]!] = c !== null;
      });
      break;
    }
    const m = /specs\.json\[(\d+)\]/.exec(last.error);
    const bad = m ? Number(m[1]) : -1;
    if (bad < 0 || bad >= pending.length) {
      await countOneByOne(specs, pending, timeoutMs, out);
      break;
    }
    const s = specs[pending[bad]!]!;
    const why = `${label(s)}: ${last.error.replace(/^specs\.json\[\d+\]: /, '')}`;
    // The same model and method on another dataset fails the same way (a dataset changes only the head):
    // drop those too, so k distinct failures cost k+1 processes, not one per spec.
    const sig = JSON.stringify([s.model, s.method]);
    const dropped = pending.filter((i, k) => k === bad || JSON.stringify([specs[i]!.model, specs[i]!.method]) === sig);
    for (const i of dropped) {
      out.errors[i] = why;
      out.definite[i] = last.exited;
    }
    pending = pending.filter((i) => !dropped.includes(i));
    if (pending.length === 0) break;
    last = await countBatch(
      pending.map((i) => specs[i]!),
      timeoutMs,
    );
  }
  return out;
}

/** The distinct reasons of a detailed count, in order (what `countSpecs` appends to `errors`). */
export function distinctErrors(errors: readonly (string | null)[]): string[] {
  return [...new Set(errors.filter((e): e is string => e !== null))];
}

/**
 * Count trainable/total parameters of each spec on the meta device with one runtime call
 * (`count --specs`). A spec the runtime refuses gets null and its error is appended to `errors`; when the
 * runtime counts nothing at all, a UserError.
 */
export async function countSpecs(
  specs: RunSpec[],
  timeoutMs = 600_000,
  errors?: string[],
): Promise<(CountResult | null)[]> {
  if (specs.length === 0) return [];
  const d = await countSpecsDetailed(specs, timeoutMs);
  errors?.push(...distinctErrors(d.errors));
  // one spec: its null says it all (the caller words it); a whole batch refused: the runtime is the problem
  if (specs.length > 1 && d.results.every((x) => x === null))
    throw new UserError(`\`rankflow_runtime count\` failed: ${distinctErrors(d.errors)[0] ?? 'no result'}`);
  return d.results;
}
