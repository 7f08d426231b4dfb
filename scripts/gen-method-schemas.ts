/**
 * Regenerate `schemas/methods.generated.json` from the runtime's registry
 * (`python -m rankflow_runtime describe`), so the planner can validate method and dataset options without
 * starting Python. Run after adding or changing a method:  npx tsx scripts/gen-method-schemas.ts
 * (`--check` exits 1 instead of writing when the committed snapshot is stale).
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { describeRuntime } from '../launcher/runtime-calls.js';
import { SNAPSHOT_PATH, snapshotText } from '../launcher/snapshot.js';
import { runScript } from '../cli/args.js';

async function main(check: boolean): Promise<number> {
  const text = snapshotText(await describeRuntime());
  const current = (() => {
    try {
      return readFileSync(SNAPSHOT_PATH, 'utf8');
    } catch {
      return '';
    }
  })();
  if (check) {
    if (current !== text) {
      console.error('schemas/methods.generated.json is stale: run `npx tsx scripts/gen-method-schemas.ts`');
      return 1;
    }
    console.log('schemas/methods.generated.json is up to date');
    return 0;
  }
  writeFileSync(SNAPSHOT_PATH, text);
  const n = Object.keys(JSON.parse(text).methods).length;
  console.log(`wrote schemas/methods.generated.json (${n} methods)`);
  return 0;
}

runScript({
  name: 'gen-method-schemas',
  usage: 'npx tsx scripts/gen-method-schemas.ts',
  summary: 'regenerate schemas/methods.generated.json from the runtime',
  maxArgs: 0,
  options: { check: { type: 'boolean', help: 'exit 1 instead of writing when the committed snapshot is stale' } },
  run: ({ values }) => main(Boolean(values.check)),
});
