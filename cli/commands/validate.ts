/** `rankflow validate recipe.yaml...`: check recipes (schema, names, options, axes) without planning or counting. */
import { planStages } from '../../planning/stages.js';
import { UserError } from '../../core/errors.js';
import { formatIssues, readRecipe, snapshot } from '../recipe-io.js';
import { defineCommand } from '../args.js';

export const validateCommand = defineCommand({
  name: 'validate',
  summary: 'check recipes without planning',
  args: '<recipe.yaml> [more.yaml ...]',
  description: `Check recipes without counting parameters or planning for real: YAML syntax, unknown keys, types, method
names and options (against schemas/methods.generated.json), datasets, axes and the run limit. Every
problem is printed with file:line:col. Exit code 0 when all are valid, 2 otherwise.`,
  options: {},
  async run({ positionals: files }) {
    if (files.length === 0)
      throw new UserError('validate: missing the recipe file; usage: rankflow validate <recipe.yaml>');
    const { methods, datasets, procedures } = snapshot();
    const failures: string[] = [];
    for (const f of files) {
      try {
        const { loaded, recipe } = readRecipe(f, { methods, datasets, procedures });
        const r = planStages(recipe, { methods, datasets, procedures });
        if (r.issues.length) {
          failures.push(...formatIssues(r.issues, loaded.locate));
          continue;
        }
        for (const w of formatIssues(r.warnings, loaded.locate)) console.error(`rankflow: warning: ${w}`);
        const what = r.countRequests.length
          ? 'runs chosen by budget matching at plan time'
          : `${r.runs.length} run${r.runs.length === 1 ? '' : 's'}`;
        console.log(`${f}: ok (${what})`);
      } catch (e) {
        if (!(e instanceof UserError)) throw e;
        failures.push(e.message);
      }
    }
    if (failures.length) throw new UserError(failures.join('\n'));
    return 0;
  },
});
