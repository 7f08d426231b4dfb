/**
 * CLI start-up relative to a bare Node start, measured in one run (rounds interleaved, so machine load
 * hits every command alike; medians):
 *
 *   npx tsx bench/cli_bench.ts [--rounds 15]
 *
 * Prints, for `rankflow --version` and `rankflow validate recipes/quickstart.yaml`, the median wall time
 * and its ratio to `node -e 0` (goal for --version: at most 3x). The compiled CLI is built first if the
 * sources changed, so no round pays for a build.
 */
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { PROJECT_ROOT } from '../core/paths.js';
import { runScript } from '../cli/args.js';

const BIN = join(PROJECT_ROOT, 'cli', 'bin.mjs');
const CASES: [string, string[]][] = [
  ['node -e 0', ['-e', '0']],
  ['rankflow --version', [BIN, '--version']],
  ['rankflow validate recipes/quickstart.yaml', [BIN, 'validate', 'recipes/quickstart.yaml']],
];

function once(args: string[]): number {
  const t0 = process.hrtime.bigint();
  const r = spawnSync(process.execPath, args, { cwd: PROJECT_ROOT, encoding: 'utf8' });
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  if (r.status !== 0) throw new Error(`${args.join(' ')} exited ${r.status}: ${r.stderr}`);
  return ms;
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

runScript({
  name: 'cli_bench',
  usage: 'npx tsx bench/cli_bench.ts',
  summary: 'CLI start-up relative to node -e 0',
  maxArgs: 0,
  options: { rounds: { type: 'string', arg: 'N', help: 'interleaved rounds (default 15)' } },
  async run({ values }) {
    const rounds = Number(values.rounds ?? 15);
    once([BIN, '--version']); // builds dist/ if the sources changed
    const times = CASES.map(() => [] as number[]);
    for (let r = 0; r < rounds; r++) CASES.forEach(([, args], i) => times[i]!.push(once(args)));
    const base = median(times[0]!);
    console.log(`CLI start-up, median of ${rounds} interleaved rounds (Node ${process.version})`);
    CASES.forEach(([name], i) => {
      const m = median(times[i]!);
      console.log(`  ${name.padEnd(44)} ${m.toFixed(0).padStart(6)} ms  ${(m / base).toFixed(2)}x node -e 0`);
    });
    return 0;
  },
});
