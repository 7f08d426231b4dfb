/**
 * The contract's JSON Schemas (runtime-native/rankflow_runtime/contract/) are generated from the zod schemas:
 * this fails while a committed file is stale (after a zod change without `npm run gen`).
 */
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { CONTRACT_DIR, contractFiles } from '../schemas/contract.js';
import { PROJECT_ROOT } from '../core/paths.js';

describe('contract (JSON Schema generated from zod)', () => {
  const dir = join(PROJECT_ROOT, CONTRACT_DIR);
  const files = contractFiles();

  it('every committed schema equals the one generated from zod', () => {
    for (const [name, text] of Object.entries(files)) {
      expect(readFileSync(join(dir, name), 'utf8'), `${CONTRACT_DIR}/${name} is stale: run \`npm run gen\``).toBe(text);
    }
    const committed = readdirSync(dir).filter((f) => f.endsWith('.schema.json'));
    expect(committed.sort(), 'a schema file no zod schema generates').toEqual(Object.keys(files).sort());
  });

  it('carries the rules the runtime enforces (exactly one of max_steps / epochs; strict objects)', () => {
    const spec = JSON.parse(files['runspec.schema.json']!) as {
      additionalProperties: boolean;
      properties: { training: { oneOf: unknown[]; 'x-message': string } };
    };
    expect(spec.additionalProperties).toBe(false);
    expect(spec.properties.training.oneOf).toHaveLength(2);
    expect(spec.properties.training['x-message']).toMatch(/exactly one must be set/);
  });
});
