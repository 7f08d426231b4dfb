/** `rankflow plan recipe.yaml`: the exact list of runs a recipe means, before any GPU time is spent. */
import type { PlannedRun } from '../../schemas/runspec.js';
import { UserError } from '../../core/errors.js';
import { jsonChunks } from '../../core/json-chunks.js';
import { fractionOfFull, planRecipeFile, type PlannedRecipe } from '../recipe-io.js';
import { defineCommand, parseCommandLine, type CommandDef, type OptionDefs, type Values } from '../args.js';

const PLAN_OPTIONS = {
  json: {
    type: 'boolean',
    help: 'print {sweep_id, recipe, runs: [{id, spec, labels, params}], percent_of_full, totals}',
  },
  'no-count': {
    type: 'boolean',
    help: 'do not start the runtime to count parameters (a recipe with `budget` then fails)',
  },
  count: { type: 'boolean', help: 'require parameter counts (fail if the runtime is not installed)' },
  'max-runs': { type: 'string', arg: 'N', help: "override the recipe's max_runs" },
} as const satisfies OptionDefs;

const PLAN: CommandDef<typeof PLAN_OPTIONS> = {
  name: 'plan',
  summary: 'expand a recipe into its runs (table, or --json)',
  args: '<recipe.yaml>',
  description: `Expand a recipe into its runs and print them as a table (method, rank, dataset, seed, setting, training
overrides (values that differ from the sweep's most common ones), trainable parameters, % of the full
model) with totals.`,
  options: PLAN_OPTIONS,
  async run({ values, positionals }) {
    const args = planArgsFrom('plan', values, positionals);
    const plan = await planRecipeFile(args.file, { count: args.count, maxRuns: args.maxRuns });
    for (const w of plan.warnings) console.error(`rankflow: warning: ${w}`);
    if (args.json) await writeJson(planJson(plan));
    else console.log(renderPlanTable(plan));
    return 0;
  },
};

/** Writes JSON to stdout in chunks (a plan of thousands of runs is never one string), waiting on a full pipe. */
async function writeJson(value: unknown): Promise<void> {
  for (const c of jsonChunks(value, 2))
    if (!process.stdout.write(c)) await new Promise((ok) => process.stdout.once('drain', ok));
  process.stdout.write('\n');
}

export interface PlanArgs {
  file: string;
  json: boolean;
  count: 'auto' | 'always' | 'never';
  maxRuns: number | undefined;
}

function planArgsFrom(command: string, v: Values<typeof PLAN_OPTIONS>, positionals: string[]): PlanArgs {
  const [file, second] = positionals;
  if (file === undefined)
    throw new UserError(`${command}: missing the recipe file; usage: rankflow ${command} <recipe.yaml>`);
  if (second !== undefined)
    throw new UserError(`${command}: one recipe file at a time (got \`${file}\` and \`${second}\`)`);
  if (v.count && v['no-count']) throw new UserError(`${command}: give --count or --no-count, not both`);
  let maxRuns: number | undefined;
  if (v['max-runs'] !== undefined) {
    const n = Number(v['max-runs']);
    if (v['max-runs'] === '' || !Number.isInteger(n) || n <= 0)
      throw new UserError(`--max-runs: expected a positive integer, got \`${v['max-runs']}\``);
    maxRuns = n;
  }
  return { file, json: Boolean(v.json), count: v['no-count'] ? 'never' : v.count ? 'always' : 'auto', maxRuns };
}

/** The arguments of `rankflow plan` (also for tests). */
export function parsePlanArgs(argv: string[], command: string): PlanArgs {
  const { values, positionals } = parseCommandLine({ ...PLAN, name: command }, argv);
  return planArgsFrom(command, values, positionals);
}

function fmtInt(n: number): string {
  return n.toLocaleString('en-US');
}

function fmtPct(f: number | null): string {
  if (f === null) return '-';
  const p = f * 100;
  return p >= 10 ? p.toFixed(1) + '%' : p >= 0.01 ? p.toFixed(3) + '%' : p.toExponential(1) + '%';
}

function fmtValue(v: unknown): string {
  if (typeof v === 'number')
    return v !== 0 && Math.abs(v) < 1e-3 ? v.toExponential().replace(/\.?0+e/, 'e') : String(v);
  if (v === null) return 'none';
  return typeof v === 'object' ? JSON.stringify(v) : String(v);
}

/**
 * Per run, the training settings that differ from the sweep's most common value (per-dataset learning rates,
 * a method's own schedule, ...) and are not already named by the run's setting label.
 */
export function trainingOverrides(runs: readonly PlannedRun[]): string[] {
  const fields = (r: PlannedRun): [string, string][] => {
    const out: [string, string][] = [];
    for (const [k, v] of Object.entries(r.spec.training)) {
      if (k === 'lr_groups')
        for (const [g, x] of Object.entries(v as Record<string, number>)) out.push([`lr.${g}`, fmtValue(x)]);
      else out.push([k, fmtValue(v)]);
    }
    return out;
  };
  const tally = new Map<string, Map<string, number>>();
  for (const r of runs) {
    for (const [k, v] of fields(r)) {
      let m = tally.get(k);
      if (!m) tally.set(k, (m = new Map()));
      m.set(v, (m.get(v) ?? 0) + 1);
    }
  }
  const mode = new Map<string, string>();
  for (const [k, m] of tally)
    mode.set(k, [...m.entries()].sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1))[0]![0]);
  return runs.map((r) => {
    const named = new Set(r.labels.setting.split(' ').map((p) => p.split('=')[0]));
    return fields(r)
      .filter(([k, v]) => mode.get(k) !== v && !named.has(k))
      .map(([k, v]) => `${k}=${v}`)
      .join(' ');
  });
}

/** The plan as a plain-text table with totals (also used by tests as the golden output). */
export function renderPlanTable(plan: PlannedRecipe): string {
  const staged = plan.runs.some((r) => r.labels.stage !== undefined);
  const header = [
    '#',
    ...(staged ? ['STAGE'] : []),
    'METHOD',
    'RANK',
    'DATASET',
    'SEED',
    'SETTING',
    'OVERRIDES',
    'TRAINABLE',
    '% FULL',
  ];
  const overrides = trainingOverrides(plan.runs);
  const rows = plan.runs.map((r, i) => [
    String(i + 1),
    ...(staged ? [r.labels.stage ?? '-'] : []),
    r.labels.method,
    r.labels.rank === null ? '-' : String(r.labels.rank),
    r.labels.dataset,
    String(r.labels.seed),
    r.labels.setting || '-',
    overrides[i] || '-',
    r.params ? (r.params.estimated ? '~' : '') + fmtInt(r.params.trainable) : r.spec.inputs ? 'upstream' : '-',
    (r.params?.estimated ? '~' : '') + fmtPct(fractionOfFull(r, plan.counts)),
  ]);
  const right = new Set([0, 2, 4, 7, 8].map((c) => (staged && c > 0 ? c + 1 : c)));
  const widths = header.map((h, c) => Math.max(h.length, ...rows.map((row) => row[c]!.length)));
  const line = (cells: string[]) =>
    cells
      .map((x, c) => (right.has(c) ? x.padStart(widths[c]!) : x.padEnd(widths[c]!)))
      .join('  ')
      .trimEnd();
  const out = [line(header), ...rows.map(line)];
  out.push('', ...totals(plan));
  return out.join('\n');
}

function totals(plan: PlannedRecipe): string[] {
  const runs = plan.runs;
  const by = (f: (r: PlannedRun) => string) => {
    const m = new Map<string, number>();
    for (const r of runs) m.set(f(r), (m.get(f(r)) ?? 0) + 1);
    return m;
  };
  const methods = [...by((r) => r.labels.method)].map(([k, n]) => `${k} ${n}`).join(', ');
  const datasets = by((r) => r.labels.dataset).size;
  const seeds = by((r) => String(r.labels.seed)).size;
  const counted = runs.filter((r) => r.params).length;
  const downstream = runs.filter((r) => r.spec.inputs && !r.params).length;
  const trainable = runs.reduce((s, r) => s + (r.params?.trainable ?? 0), 0);
  const stageLine = downstream
    ? [
        `stages: ${[...by((r) => r.labels.stage ?? '-')].map(([k, n]) => `${k} ${n}`).join(', ')}; ${downstream} run(s) ` +
          `read an upstream run's artifact and are counted when it exists ("upstream")`,
      ]
    : [];
  const estimated = runs.filter((r) => r.params?.estimated).length;
  const estimateLine = estimated
    ? [
        `~: ${estimated} run(s) choose their ranks from the weights (LoRD rank_rule energy/ratio): the count is an ` +
          `estimate at the rank cap; the result record has the trained model's`,
      ]
    : [];
  const lines = [
    `${runs.length} run${runs.length === 1 ? '' : 's'} (${methods}) on ${datasets} dataset${datasets === 1 ? '' : 's'} x ${seeds} seed${seeds === 1 ? '' : 's'}`,
    ...stageLine,
    ...estimateLine,
    counted + downstream === runs.length
      ? `trainable parameters: ${fmtInt(trainable)} summed over ${counted === runs.length ? '' : 'the counted '}runs`
      : counted === 0
        ? 'trainable parameters: not counted (no runtime, or --no-count; set up with bash scripts/setup-python.sh)'
        : `trainable parameters: counted for ${counted} of ${runs.length} runs (the runtime refused the rest: see the warning)`,
    `recipe ${plan.recipe.name} · sweep ${plan.sweepId}` +
      (plan.recipe.queue ? ` · queue ${plan.recipe.queue}` : '') +
      ` · device ${plan.recipe.device ?? 'auto'}`,
  ];
  return lines;
}

export function planJson(plan: PlannedRecipe): unknown {
  return {
    sweep_id: plan.sweepId,
    recipe: plan.recipe.name,
    queue: plan.recipe.queue ?? null,
    runs: plan.runs,
    percent_of_full: Object.fromEntries(
      plan.runs.map((r) => {
        const f = fractionOfFull(r, plan.counts);
        return [r.id, f === null ? null : f * 100];
      }),
    ),
    totals: { runs: plan.runs.length, counted: plan.runs.filter((r) => r.params).length },
  };
}

export const planCommand = defineCommand(PLAN);
