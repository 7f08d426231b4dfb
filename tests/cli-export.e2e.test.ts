/**
 * `rankflow export` end to end against the real Temporal and S3 servers (configured through the environment,
 * as on a cluster), with a worker serving its queues in this process: a tiny LoRA run (and a NOLA run, which
 * PEFT cannot load) is trained through `rankflow submit`, then `rankflow export <run> --out DIR` downloads
 * its best/newest stored checkpoint and writes a Hugging Face PEFT adapter. User errors are one line, exit 2.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { existsSync, statSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomInt } from 'node:crypto';
import { startWorker } from '../cli/worker.js';
import type { RunningWorker } from '../cli/worker.js';
import type { Config } from '../cli/config.js';
import { rankflowCli, testConfig } from './helpers/cluster.js';

let config: Config;
let worker: RunningWorker;
let dir: string;
let recipe: string;

const rankflow = (...args: string[]) => rankflowCli(config, ...args);

/** A user error: exit 2, one line on stderr, no stack trace. */
function expectUserError(r: { code: number | null; stderr: string }, pattern: RegExp): void {
  expect(r.code, r.stderr).toBe(2);
  expect(r.stderr.trim().split('\n')).toHaveLength(1);
  expect(r.stderr).toMatch(pattern);
}

beforeAll(async () => {
  config = testConfig();
  worker = await startWorker(config, { slots: { cpu: 2 }, shutdownGraceS: 5 });
  dir = await mkdtemp(join(tmpdir(), 'rankflow-export-test-'));
  recipe = join(dir, 'tiny.yaml');
  // A seed unique to this test run keeps run ids (Temporal workflow ids) fresh on a reused server.
  const seed = randomInt(1, 2 ** 40);
  await writeFile(
    recipe,
    [
      'name: cli-export-tiny',
      'model: {name: tiny-encoder, config: {hidden_size: 32, num_layers: 1, num_heads: 2, intermediate_size: 64, vocab_size: 512}}',
      'datasets:',
      '  - {name: synthetic/seq-cls, train_size: 64, eval_size: 16, max_length: 16}',
      'methods: [lora, nola]',
      'ranks: [2]',
      `seeds: [${seed}]`,
      'training: {lr: 5e-3, max_steps: 4, batch_size: 8, eval_every: 2, checkpoint_every: 2, log_every: 2}',
      'device: cpu',
      '',
    ].join('\n'),
  );
});

afterAll(async () => {
  await worker?.shutdown();
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('rankflow export', () => {
  it('writes a PEFT adapter of a finished LoRA run; unknown runs, missing steps and NOLA are one-line errors', async () => {
    const noOut = await rankflow('export', `run-${'0123456789abcdef'.repeat(2)}`);
    expectUserError(noOut, /export: --out DIR is required/);
    const notAnId = await rankflow('export', 'run-0123456789abcdef', '--out', join(dir, 'x'));
    expectUserError(notAnId, /export: `run-0123456789abcdef` is not a run id \(run-<32 hex digits>/);

    const submitted = await rankflow('submit', recipe, '--no-table');
    expect(submitted.code, submitted.stderr).toBe(0);
    expect(submitted.stdout).toMatch(/2\/2 done: 2 succeeded, 0 skipped, 0 failed/);
    const plan = await rankflow('plan', recipe, '--json');
    expect(plan.code, plan.stderr).toBe(0);
    const runs = (JSON.parse(plan.stdout) as { runs: { id: string; spec: { method: { name: string } } }[] }).runs;
    const lora = runs.find((r) => r.spec.method.name === 'lora')!.id;
    const nola = runs.find((r) => r.spec.method.name === 'nola')!.id;

    const out = join(dir, 'adapter');
    const ok = await rankflow('export', lora, '--out', out);
    expect(ok.code, ok.stderr).toBe(0);
    expect(ok.stdout).toContain(`${lora}: lora adapter (PEFT LORA, r=2)`);
    expect(ok.stdout).toContain(`written to ${out}`);
    const cfg = JSON.parse(await readFile(join(out, 'adapter_config.json'), 'utf8')) as Record<string, unknown>;
    expect(cfg.peft_type).toBe('LORA');
    expect(cfg.r).toBe(2);
    expect(cfg.target_modules).toEqual(['layers.0.attn.query', 'layers.0.attn.value']);
    expect(existsSync(join(out, 'adapter_model.safetensors'))).toBe(true);
    expect(statSync(join(out, 'adapter_model.safetensors')).size).toBeGreaterThan(2 * 2 * (32 + 32) * 4);

    // An older stored step by --step (checkpoint_every 2 and 4 steps: steps 2 and 4 are stored).
    const older = await rankflow('export', lora, '--out', join(dir, 'step2'), '--step', '2');
    expect(older.code, older.stderr).toBe(0);
    expect(older.stdout).toMatch(/step 2, written to/);
    expect(existsSync(join(dir, 'step2', 'adapter_model.safetensors'))).toBe(true);

    expectUserError(
      await rankflow('export', lora, '--out', join(dir, 'x'), '--step', '3'),
      /no stored checkpoint at step 3; stored steps: 2, 4/,
    );
    expectUserError(
      await rankflow('export', 'run-00000000000000000000000000000000', '--out', join(dir, 'x')),
      /no run `run-00000000000000000000000000000000`/,
    );
    expectUserError(
      await rankflow('export', nola, '--out', join(dir, 'x')),
      /method 'nola' has no Hugging Face PEFT implementation/,
    );
    expect(existsSync(join(dir, 'x'))).toBe(false);
  }, 400_000);
});
