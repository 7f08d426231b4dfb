/**
 * Test-only Temporal workflow: plans a recipe inside the workflow sandbox (deterministic, no Node
 * built-ins), to prove that `planning/` is importable from workflows and gives the same ids there.
 */
import { planRecipe, sweepId } from '../planning/planner.js';
import { validateRecipe } from '../planning/validate.js';
import type { MethodDescription } from '../schemas/describe.js';

export async function planInWorkflow(
  raw: unknown,
  methods: Record<string, MethodDescription>,
  datasets: Record<string, unknown>,
): Promise<{ ids: string[]; sweep: string; issues: number }> {
  const v = validateRecipe(raw);
  if (!v.recipe) return { ids: [], sweep: '', issues: v.issues.length };
  const r = planRecipe(v.recipe, { methods, datasets });
  return {
    ids: r.runs.map((x) => x.id),
    sweep: sweepId(
      v.recipe.name,
      r.runs.map((x) => x.id),
    ),
    issues: r.issues.length,
  };
}
