/**
 * Identities: a run's id (`run-` + SHA-256 of the canonical JSON of its spec, so a run met twice is one run),
 * a sweep's id, and the key of a spec's parameter count (what the count depends on).
 */
import type { PlannedRun, RunSpec } from '../schemas/runspec.js';
import { hashValue } from './canonical.js';
import { Sha256 } from './hash.js';
import type { CountResult } from './plan-types.js';

export const SPEC_SCHEMA = 'rankflow.run/v1' as const;

/**
 * The key of the parameter count of a spec: what the count depends on (model architecture, dataset shape,
 * method, head). Whether weights are loaded (`random_init`) does not change a count.
 */
export function countKey(spec: RunSpec): string {
  return hashValue(
    {
      model: { ...spec.model, random_init: true },
      dataset: {
        name: spec.dataset.name,
        max_length: spec.dataset.max_length,
        options: spec.dataset.options,
        // your own data: the label count depends on the files and the columns
        ...(spec.dataset.files
          ? {
              files: spec.dataset.files,
              columns: spec.dataset.columns ?? {},
              labels: spec.dataset.labels ?? null,
              problem_type: spec.dataset.problem_type ?? null,
              data_root: spec.dataset.data_root,
            }
          : {}),
      },
      method: spec.method,
      train_head: spec.training.train_head,
      // what a run does changes its count (compress trains nothing); absent for plain runs: keys unchanged
      ...(spec.procedure ? { procedure: spec.procedure } : {}),
    },
    24,
  );
}

/** A planned run's `params` from its count (marked estimated when the count is not exact). */
export const paramsOf = (c: CountResult): NonNullable<PlannedRun['params']> => ({
  trainable: c.trainable,
  total: c.total,
  ...(c.exact === false ? { estimated: true as const } : {}),
  ...(c.head !== undefined ? { head: c.head } : {}),
});

/** The spec to send to `count`: the architecture only (random init), since counting needs no weights. */
export function countableSpec(spec: RunSpec): RunSpec {
  return spec.model.random_init ? spec : { ...spec, model: { ...spec.model, random_init: true } };
}

/** The spec whose `total` count is the size of the full model a run adapts (for "% of full model"). */
export function fullModelSpec(spec: RunSpec): RunSpec {
  const { procedure: _procedure, inputs: _inputs, ...plain } = spec;
  return {
    ...plain,
    method: { name: 'full', rank: null, options: {}, targets: [] },
    training: { ...spec.training, train_head: true },
  };
}

/** `run-` + 32 hex characters of SHA-256 over the canonical JSON of the spec. */
export function runId(spec: RunSpec): string {
  return 'run-' + hashValue(spec, 32);
}

/** The sweep id: a hash of the recipe name and the sorted run ids. */
export function sweepId(recipeName: string, runIds: readonly string[]): string {
  const h = new Sha256().update(recipeName + '\n');
  for (const id of [...runIds].sort()) h.update(id + '\n');
  return 'sweep-' + h.hex().slice(0, 24);
}
