/**
 * The contract between the TypeScript side and the Python runtime, as JSON Schema generated from the zod
 * schemas here (zod stays the single source): the run spec the runtime reads, the events it prints, the
 * result records, `count`'s output and the `describe` document. The runtime validates run specs against
 * `runspec.schema.json` (rankflow_runtime/contract.py) and its tests check its own output against the rest.
 *
 * Add a field in zod, then regenerate: `npm run gen` (a test fails while a generated file is stale).
 */
import { z } from 'zod';
import { RunSpecFile } from './runspec.js';
import { RunnerEvent } from './events.js';
import { ResultRecord } from './result.js';
import { CountBatchOutput, CountOutput } from './count.js';
import { RuntimeDescription } from './describe.js';

/** Where the generated files live (inside the runtime package, which reads them), from the project root. */
export const CONTRACT_DIR = 'runtime-native/rankflow_runtime/contract';

const DOCUMENTS: Record<string, { schema: z.ZodType; source: string }> = {
  'runspec.schema.json': { schema: RunSpecFile, source: 'schemas/runspec.ts RunSpecFile' },
  'events.schema.json': { schema: RunnerEvent, source: 'schemas/events.ts RunnerEvent' },
  'result.schema.json': { schema: ResultRecord, source: 'schemas/result.ts ResultRecord' },
  'count.schema.json': {
    schema: z.union([CountOutput, CountBatchOutput]),
    source: 'schemas/count.ts CountOutput | CountBatchOutput',
  },
  'describe.schema.json': { schema: RuntimeDescription, source: 'schemas/describe.ts RuntimeDescription' },
};

/** The generated files: name -> text (stable formatting, so a stale file shows as a diff). */
export function contractFiles(): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, { schema, source }] of Object.entries(DOCUMENTS)) {
    const doc = z.toJSONSchema(schema, { target: 'draft-2020-12', unrepresentable: 'any' });
    const { $schema, ...rest } = doc as Record<string, unknown>;
    const head = { $schema, $comment: `generated from ${source} by \`npm run gen\`; do not edit` };
    out[name] = JSON.stringify({ ...head, ...rest }, null, 1) + '\n';
  }
  return out;
}
