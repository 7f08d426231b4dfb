/**
 * `rankflow export <run-id> --out DIR [--step N]`: a trained adapter out of the artifact store into Hugging
 * Face PEFT's format. The run's spec comes from its result record (`results/`, `failed/`) or any sweep
 * manifest that lists it; the checkpoint is the best stored one (else the newest, or `--step`), downloaded
 * with every file verified against its sha256; then the runtime's `export` command rebuilds the model from
 * the spec, loads the checkpoint and writes `adapter_config.json` + `adapter_model.safetensors`.
 */
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { openConfiguredStore } from '../connect.js';
import { UserError } from '../../core/errors.js';
import { defineCommand, intFlag, runIdArg } from '../args.js';
import { resolveConfig } from '../config.js';
import { runtimeAvailable, runtimePython, spawnRuntime } from '../../launcher/spawn.js';
import type { ArtifactStore } from '../../store/store.js';
import { checkpointPrefix, downloadCheckpoint, listCheckpoints } from '../../store/checkpoints.js';
import type { StoredCheckpoint } from '../../store/checkpoints.js';
import { failureKey, resultKey, SWEEPS_PREFIX } from '../../store/keys.js';
import { EXIT } from '../../schemas/events.js';
import type { RunnerEvent } from '../../schemas/events.js';
import { ResultRecord } from '../../schemas/result.js';
import { SweepManifest } from '../../schemas/orchestration.js';
import type { RunSpec } from '../../schemas/runspec.js';

type Exported = Extract<RunnerEvent, { event: 'exported' }>;
type ErrorEv = Extract<RunnerEvent, { event: 'error' }>;

/** The run's spec: its result record, its failure record, else the first sweep manifest that lists it. */
export async function findRunSpec(
  store: ArtifactStore,
  runId: string,
): Promise<{ spec: RunSpec; from: string } | null> {
  for (const key of [resultKey(runId), failureKey(runId)]) {
    const body = await store.get(key);
    if (!body) continue;
    let parsed: unknown;
    try {
      parsed = JSON.parse(body.toString('utf8'));
    } catch {
      throw new UserError(`export: ${key} in ${store.description} is not valid JSON; the record is corrupt`);
    }
    const r = ResultRecord.safeParse(parsed);
    if (!r.success)
      throw new UserError(
        `export: ${key} in ${store.description} is not a result record (${r.error.issues[0]?.message})`,
      );
    return { spec: r.data.spec, from: key };
  }
  for (const key of (await store.list(SWEEPS_PREFIX)).filter((k) => k.endsWith('.json')).sort()) {
    const body = await store.get(key);
    if (!body) continue;
    let m: SweepManifest;
    try {
      m = SweepManifest.parse(JSON.parse(body.toString('utf8')));
    } catch {
      continue; // another sweep's broken manifest must not hide this run
    }
    const run = m.runs.find((r) => r.id === runId);
    if (run) return { spec: run.spec, from: key };
  }
  return null;
}

/** `--step N`, else the best checkpoint (the newest marked best), else the newest. */
export function pickCheckpoint(all: StoredCheckpoint[], step?: number): StoredCheckpoint | undefined {
  if (step !== undefined) return all.find((c) => c.step === step);
  return [...all].reverse().find((c) => c.best) ?? all.at(-1);
}

/** Why `export` took this checkpoint, in words (which table numbers it matches, and how to take another). */
export function whyThisStep(ck: StoredCheckpoint, all: StoredCheckpoint[], asked?: number): string {
  const newest = all.at(-1)?.step;
  if (asked !== undefined) return `step ${ck.step}: asked for with --step`;
  if (ck.best && ck.step === newest)
    return `step ${ck.step}: the final step, which is also the best evaluation (what \`table\` and \`table --best\` report)`;
  if (ck.best) {
    return `step ${ck.step}: the best evaluation by the dataset's metric (what \`table --best\` reports); the final step ${newest} is what \`table\` reports (\`--step ${newest}\` exports it)`;
  }
  return `step ${ck.step}: the newest stored checkpoint (no stored checkpoint is marked best: the run was not evaluated before its end)`;
}

/** Runs the runtime's `export` on a downloaded checkpoint; a config error is a UserError. */
async function runtimeExport(args: string[], logFile: string): Promise<Exported> {
  let exported: Exported | null = null;
  let error: ErrorEv | null = null;
  const proc = spawnRuntime({
    args,
    logFile,
    onEvent: (ev) => {
      if (ev.event === 'exported') exported = ev;
      if (ev.event === 'error') error = ev;
    },
  });
  const stop = (): void => proc.kill(); // the runtime has its own process group
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  let exit;
  try {
    exit = await proc.exit;
  } finally {
    process.off('SIGINT', stop);
    process.off('SIGTERM', stop);
  }
  const err = error as ErrorEv | null;
  if (exit.code === EXIT.config && err) {
    throw new UserError(`export: ${err.message.replace(/^export: /, '')}${err.hint ? ` (${err.hint})` : ''}`);
  }
  const done = exported as Exported | null;
  if (exit.code !== EXIT.ok || !done) {
    const tail = existsSync(logFile) ? (await readFile(logFile, 'utf8')).trim().split('\n').slice(-10).join('\n') : '';
    const why = err ? `${err.kind} error: ${err.message}` : `exit code ${exit.code ?? exit.signal}`;
    throw new Error(`export: the runtime failed (${why})${tail ? `\n${tail}` : ''}`);
  }
  return done;
}

/** The run's spec and the stored checkpoint to export (`--step`, else best, else newest). */
async function chooseCheckpoint(store: ArtifactStore, runId: string, step: number | undefined) {
  const found = await findRunSpec(store, runId);
  if (!found) {
    throw new UserError(
      `export: no run \`${runId}\` in ${store.description} (no result record and no sweep lists it); see \`rankflow status <sweep>\``,
    );
  }
  const all = await listCheckpoints(store, runId);
  if (all.length === 0) {
    throw new UserError(
      `export: run \`${runId}\` has no stored checkpoint in ${store.description} (checkpoints are stored during training and at its end)`,
    );
  }
  const ck = pickCheckpoint(all, step);
  if (!ck)
    throw new UserError(
      `export: run \`${runId}\` has no stored checkpoint at step ${step}; stored steps: ${all.map((c) => c.step).join(', ')}`,
    );
  return { spec: found.spec, all, ck };
}

export const exportCommand = defineCommand({
  name: 'export',
  summary: "write a run's trained adapter in Hugging Face PEFT format (adapter_config.json + safetensors)",
  args: '<run-id>',
  description: `Writes DIR/adapter_config.json and DIR/adapter_model.safetensors, which
\`peft.PeftModel.from_pretrained(base_model, DIR)\` loads onto the original base model.
The checkpoint is the run's best stored one (else its newest); --step picks another stored step.
Exportable methods: lora, dora, pissa, vera, randlora, bone.`,
  options: {
    out: { type: 'string', arg: 'DIR', help: 'the folder for the PEFT adapter (required)' },
    step: { type: 'string', arg: 'N', help: 'export the stored checkpoint of step N' },
    'pissa-mode': {
      type: 'string',
      arg: 'lora|residual',
      help: 'PiSSA only: lora (default; a rank-2r LoRA on the original weights) or residual\n(the rank-r adapter plus residual_weights.safetensors)',
    },
  },
  async run({ values, positionals }) {
    const runId = runIdArg('export', positionals);
    if (!values.out) throw new UserError('export: --out DIR is required (the folder for the PEFT adapter)');
    const step = values.step === undefined ? undefined : intFlag('export', 'step', values.step, 0, 0);
    const pissaMode = values['pissa-mode'];
    if (pissaMode !== undefined && pissaMode !== 'lora' && pissaMode !== 'residual') {
      throw new UserError(`export: --pissa-mode must be lora or residual, got \`${pissaMode}\``);
    }
    const out = resolve(values.out);

    const config = await resolveConfig({ start: false });
    const store = await openConfiguredStore(config);
    const { spec, all, ck } = await chooseCheckpoint(store, runId, step);
    if (!runtimeAvailable()) {
      throw new UserError(
        `export: the Python runtime is not installed (${runtimePython()} is missing); run \`bash scripts/setup.sh\` or set RANKFLOW_PYTHON`,
      );
    }

    const tmp = await mkdtemp(join(tmpdir(), 'rankflow-export-'));
    try {
      const ckDir = join(tmp, 'checkpoint');
      const bad = await downloadCheckpoint(store, runId, ck, ckDir);
      if (bad !== null) {
        throw new UserError(
          `export: ${checkpointPrefix(runId, ck.step)}${bad} in ${store.description} is missing or its sha256 differs; pick another checkpoint with --step (stored: ${all.map((c) => c.step).join(', ')})`,
        );
      }
      const specPath = join(tmp, 'spec.json');
      await writeFile(specPath, JSON.stringify({ ...spec, run_id: runId }, null, 1));
      const args = ['export', '--spec', specPath, '--checkpoint', ckDir, '--out', out];
      if (pissaMode) args.push('--pissa-mode', pissaMode);
      const done = await runtimeExport(args, join(tmp, 'runtime.log'));
      const which = ck.best ? 'best' : ck.step === all.at(-1)?.step ? 'newest' : 'chosen';
      console.log(
        `${runId}: ${done.method} adapter (PEFT ${done.peft_type}${rankLabel(done.r)}) from the ${which} checkpoint, step ${done.step}, written to ${done.path}`,
      );
      console.log(`  ${whyThisStep(ck, all, step)}`);
      console.log(
        `  ${done.files.map((f) => f.name).join(', ')}; load it with peft.PeftModel.from_pretrained(base_model, "${done.path}")`,
      );
      return 0;
    } finally {
      await rm(tmp, { recursive: true, force: true });
    }
  },
});

/** `, r=8` for adapters with a rank; nothing for those without (prompt tuning). */
function rankLabel(r: number | null): string {
  return r === null ? '' : `, r=${r}`;
}
