/**
 * The committed `describe` snapshot (`schemas/methods.generated.json`): the runtime's methods, models and
 * datasets, so that planning can check a recipe without starting Python. Regenerate it with
 * `npm run gen` (which runs `scripts/gen-method-schemas.ts`).
 */
import { join } from 'node:path';
import { PROJECT_ROOT } from '../core/paths.js';
import { MethodsSnapshot, type RuntimeDescription } from '../schemas/describe.js';

export const SNAPSHOT_PATH = join(PROJECT_ROOT, 'schemas', 'methods.generated.json');

/** The snapshot text for a `describe` output: machine-dependent version fields dropped, stable formatting. */
export function snapshotText(d: RuntimeDescription): string {
  const snap: MethodsSnapshot = {
    generated_by: 'python -m rankflow_runtime describe; regenerate with `npm run gen`',
    methods: d.methods,
    procedures: d.procedures,
    models: d.models,
    datasets: d.datasets,
    metrics: d.metrics,
  };
  return JSON.stringify(MethodsSnapshot.parse(snap), null, 2) + '\n';
}
