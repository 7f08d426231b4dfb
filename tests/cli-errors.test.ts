/** User errors of the orchestration commands: one line on stderr, exit code 2, no stack trace. */
import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { PROJECT_ROOT } from '../core/paths.js';

function rankflow(...args: string[]): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [join(PROJECT_ROOT, 'cli', 'bin.mjs'), ...args], {
    cwd: PROJECT_ROOT,
    encoding: 'utf8',
    env: { ...process.env, RANKFLOW_CONFIG: '', TEMPORAL_ADDRESS: '', RANKFLOW_TEMPORAL_ADDRESS: '' },
    timeout: 60_000,
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

function expectUserError(r: ReturnType<typeof rankflow>, pattern: RegExp): void {
  expect(r.code).toBe(2);
  expect(r.stderr).toMatch(pattern);
  expect(r.stderr).not.toMatch(/\n\s+at /); // no stack trace
  expect(r.stderr.trim().split('\n')).toHaveLength(1);
}

describe('rankflow command line', () => {
  it('--version and --help', () => {
    const v = rankflow('--version');
    expect(v.code).toBe(0);
    expect(v.stdout.trim()).toMatch(/^\d+\.\d+\.\d+$/);
    const h = rankflow('--help');
    for (const c of ['plan', 'submit', 'status', 'resume', 'worker', 'table', 'logs', 'cancel'])
      expect(h.stdout).toContain(`  ${c} `);
  });

  it('a run id that is a path is a user error, never a stack trace (export, logs)', () => {
    expectUserError(
      rankflow('export', '../../etc/passwd', '--out', '/tmp/x'),
      /export: `\.\.\/\.\.\/etc\/passwd` is not a run id/,
    );
    expectUserError(rankflow('logs', '../../etc/passwd'), /logs: `\.\.\/\.\.\/etc\/passwd` is not a run id/);
  });

  it('names unknown commands and flags', () => {
    expectUserError(rankflow('sumbit'), /unknown command `sumbit`/);
    expectUserError(rankflow('worker', '--gpu', '0'), /worker: .*--gpu.*rankflow worker --help/);
  });

  it('checks flag values', () => {
    expectUserError(rankflow('worker', '--gpus', 'a,b'), /--gpus expects ids like 0,1,2/);
    expectUserError(rankflow('worker', '--cpu-slots', '0'), /--cpu-slots must be an integer >= 1/);
    expectUserError(rankflow('worker', '--cpu-slots', '2', '--gpus', '0'), /either --gpus or --cpu-slots/);
    expectUserError(rankflow('submit'), /expected one recipe file/);
    expectUserError(rankflow('status', 'a', 'b'), /expected one sweep id/);
  });

  it('names a missing recipe file', () => {
    expectUserError(rankflow('submit', 'recipes/no-such-recipe.yaml'), /no-such-recipe\.yaml/);
  });

  it('names a bad config file field', async () => {
    const { mkdtemp, writeFile } = await import('node:fs/promises');
    const { tmpdir } = await import('node:os');
    const dir = await mkdtemp(join(tmpdir(), 'rankflow-cfg-'));
    const file = join(dir, 'rankflow.config.yaml');
    await writeFile(file, 'temporal: { adress: "x:7233" }\n');
    const r = spawnSync(process.execPath, [join(PROJECT_ROOT, 'cli', 'bin.mjs'), 'ls'], {
      cwd: PROJECT_ROOT,
      encoding: 'utf8',
      env: { ...process.env, RANKFLOW_CONFIG: file },
      timeout: 60_000,
    });
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/rankflow\.config\.yaml: .*field `temporal\.address`/);
    expect(r.stderr).toMatch(/`adress`/);
  });
});
