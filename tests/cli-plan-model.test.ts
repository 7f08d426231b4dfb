/**
 * `rankflow plan` on a recipe whose model is missing or broken fails with one line naming the recipe line
 * (never "not counted" and exit 0), and `submit` refuses to start such a sweep. Real CLI, real runtime.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

const ROOT = join(import.meta.dirname, '..');
const tmp = mkdtempSync(join(tmpdir(), 'rankflow-plan-model-'));
const cli = (...args: string[]) =>
  spawnSync(process.execPath, [join(ROOT, 'cli', 'bin.mjs'), ...args], {
    encoding: 'utf8',
    cwd: tmp,
    env: { ...process.env, RANKFLOW_CONFIG: join(tmp, 'none.yaml') },
    timeout: 300_000,
  });

function recipe(file: string, model: string): string {
  const text = [
    'name: m',
    'model:',
    `  name: ${model}`,
    '  task: seq-cls',
    'datasets: [synthetic/seq-cls]',
    'methods: [lora]',
    'ranks: [4]',
    'training: {max_steps: 2}',
    '',
  ].join('\n');
  writeFileSync(join(tmp, file), text);
  return file;
}

describe('plan and submit on a missing or broken model', () => {
  it('a model folder that does not exist: one line at the recipe line, exit 2, with or without counting', () => {
    const f = recipe('missing.yaml', './models/no-such-model');
    for (const extra of [[], ['--no-count']]) {
      const r = cli('plan', f, ...extra);
      expect(r.status).toBe(2);
      expect(r.stdout).toBe('');
      expect(r.stderr).toMatch(
        /^rankflow: missing\.yaml:3:\d+: model\.name: model folder `\.\/models\/no-such-model` does not exist .* — fix the path/,
      );
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
    }
    const s = cli('submit', f, '--detach');
    expect(s.status).toBe(2);
    expect(s.stderr).toMatch(/missing\.yaml:3:\d+: model\.name: model folder/);
    expect(s.stderr).not.toMatch(/sweep-[0-9a-f]+ (started|submitted)/);
  });

  it('a broken model folder (config.json the runtime cannot read): the runtime says why, at the model line', () => {
    mkdirSync(join(tmp, 'broken'), { recursive: true });
    writeFileSync(
      join(tmp, 'broken', 'config.json'),
      JSON.stringify({ model_type: 'no-such-architecture', hidden_size: 8 }),
    );
    const r = cli('plan', recipe('broken.yaml', './broken'));
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/^rankflow: broken\.yaml:3:\d+: model\.name: the runtime cannot build the model: /);
    expect(r.stderr).not.toMatch(/not counted|Traceback/);
    const folder = cli('plan', recipe('nofolder.yaml', './'));
    expect(folder.status).toBe(2);
    expect(folder.stderr).toMatch(/nofolder\.yaml:3:\d+: model\.name: `\.\/` has no config\.json/);
  });
});
