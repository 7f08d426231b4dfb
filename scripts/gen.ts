/**
 * Regenerates every generated file (`npm run gen`; `npm run gen -- --check` exits 1 instead of writing when
 * one is stale):
 *
 * - the contract: JSON Schema of the run spec, events, result records, count output and describe document,
 *   generated from the zod schemas into runtime-native/rankflow_runtime/contract/ (schemas/contract.ts);
 * - schemas/methods.generated.json: the runtime's `describe` (methods, procedures, models, datasets), which
 *   planning reads instead of starting Python (`--contract-only` skips it: no Python needed).
 *
 * After adding a spec field in zod, or a method, dataset or option in the runtime: run it and commit the result.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { runScript } from '../cli/args.js';
import { PROJECT_ROOT } from '../core/paths.js';
import { CONTRACT_DIR, contractFiles } from '../schemas/contract.js';
import { describeRuntime } from '../launcher/runtime-calls.js';
import { SNAPSHOT_PATH, snapshotText } from '../launcher/snapshot.js';

function read(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return '';
  }
}

async function generated(contractOnly: boolean): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const [name, text] of Object.entries(contractFiles())) out[join(PROJECT_ROOT, CONTRACT_DIR, name)] = text;
  if (!contractOnly) out[SNAPSHOT_PATH] = snapshotText(await describeRuntime());
  return out;
}

runScript({
  name: 'gen',
  usage: 'npm run gen --',
  summary: 'regenerate the contract (JSON Schema from zod) and the describe snapshot',
  maxArgs: 0,
  options: {
    check: { type: 'boolean', help: 'exit 1 instead of writing when a generated file is stale' },
    'contract-only': { type: 'boolean', help: 'only the JSON Schemas (no Python needed)' },
  },
  async run({ values }) {
    const files = await generated(Boolean(values['contract-only']));
    const stale = Object.entries(files).filter(([path, text]) => read(path) !== text);
    const rel = (p: string): string => p.slice(PROJECT_ROOT.length + 1);
    if (values.check) {
      for (const [path] of stale) console.error(`${rel(path)} is stale: run \`npm run gen\` and commit it`);
      if (stale.length === 0) console.log(`gen: ${Object.keys(files).length} generated files are up to date`);
      return stale.length ? 1 : 0;
    }
    for (const [path, text] of stale) {
      mkdirSync(dirname(path), { recursive: true });
      writeFileSync(path, text);
      console.log(`gen: wrote ${rel(path)}`);
    }
    if (stale.length === 0) console.log(`gen: ${Object.keys(files).length} generated files are up to date`);
    return 0;
  },
});
