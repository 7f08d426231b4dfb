/**
 * Issue 2's end-to-end smoke test on the real parts: the real Temporal dev server, the real S3 server and
 * the real Python runtime. A workflow's activity spawns `python -m rankflow_runtime smoke`, which trains a
 * two-layer MLP for a few steps; the activity uploads the file it wrote to S3 and reads it back.
 */
import { describe, expect, it } from 'vitest';
import { smokeWorkflow } from '../workflows/index.js';
import { controlQueue } from '../cli/config.js';
import { startWorker } from '../cli/worker.js';
import { testClient, testConfig, uniqueId } from './helpers/cluster.js';

describe('smoke: Temporal workflow -> activity -> Python runtime -> S3', () => {
  it('trains, lowers the loss, and round-trips the runtime output through S3 byte for byte', async () => {
    const config = testConfig();
    const worker = await startWorker(config, { slots: { cpu: 1 }, shutdownGraceS: 5 });
    const { client, close } = await testClient(config);
    try {
      const result = await client.workflow.execute(smokeWorkflow, {
        taskQueue: controlQueue(config),
        workflowId: uniqueId('smoke'),
        workflowExecutionTimeout: '3 minutes',
      });
      expect(result.roundTrip).toBe(true);
      expect(result.bytes).toBeGreaterThan(100);
      expect(result.sha256).toMatch(/^[0-9a-f]{64}$/);
      expect(result.losses.length).toBeGreaterThanOrEqual(3);
      expect(result.losses.at(-1)!).toBeLessThan(result.losses[0]! * 0.8);
    } finally {
      await close();
      await worker.shutdown();
    }
  }, 180_000);
});
