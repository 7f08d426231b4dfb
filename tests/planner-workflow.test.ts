/**
 * The planner inside a real Temporal workflow (the test services' dev server, a real worker with the
 * workflow bundle): `planning/` bundles for the deterministic sandbox and yields the same run ids as in
 * Node, so workflows may plan or re-plan on their own.
 */
import { NativeConnection, Worker } from '@temporalio/worker';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { planRecipe, sweepId } from '../planning/planner.js';
import { validateRecipe } from '../planning/validate.js';
import { MethodsSnapshot } from '../schemas/describe.js';
import snapshotJson from '../schemas/methods.generated.json' with { type: 'json' };
import { testClient, testConfig, uniqueId } from './helpers/cluster.js';

const SNAP = MethodsSnapshot.parse(snapshotJson);
const RECIPE = {
  name: 'in-workflow',
  model: 'tiny-encoder',
  datasets: ['synthetic/seq-cls', 'synthetic/regression'],
  methods: ['lora', 'full', { name: 'vera', options: { d_initial: [0.1, 1.0] } }],
  ranks: [4, 8],
  seeds: [0, 1],
  training: { max_steps: 20, lr: [1e-3, 1e-2] },
};

describe('planning/ in the Temporal workflow sandbox', () => {
  it('bundles, runs, and gives the same run ids and sweep id as in Node', async () => {
    const config = testConfig();
    const taskQueue = uniqueId('planner-wf');
    const connection = await NativeConnection.connect({ address: config.temporalAddress });
    const worker = await Worker.create({
      connection,
      namespace: config.namespace,
      taskQueue,
      workflowsPath: join(import.meta.dirname, 'planner-workflow.fixture.ts'),
    });
    const { client, close } = await testClient(config);
    try {
      const out = await worker.runUntil(
        client.workflow.execute('planInWorkflow', {
          taskQueue,
          workflowId: uniqueId('plan'),
          args: [RECIPE, SNAP.methods, SNAP.datasets],
          workflowExecutionTimeout: '2 minutes',
        }) as Promise<{ ids: string[]; sweep: string; issues: number }>,
      );
      const local = planRecipe(validateRecipe(RECIPE).recipe!, { methods: SNAP.methods, datasets: SNAP.datasets });
      expect(out.issues).toBe(0);
      expect(local.runs.length).toBe(2 * (2 * 2 * 2 + 2 * 2 + 2 * 2 * 2 * 2)); // datasets x (lora + full + vera)
      expect(out.ids).toEqual(local.runs.map((r) => r.id));
      expect(out.sweep).toBe(sweepId('in-workflow', out.ids));
    } finally {
      await close();
      await connection.close();
    }
  }, 180_000);
});
