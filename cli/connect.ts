/** Reaching the configured Temporal server and artifact store from a command, with one-line errors. */
import { cpus } from 'node:os';
import { Client, Connection } from '@temporalio/client';
import { UserError } from '../core/errors.js';
import { openReadyStore, type ArtifactStore } from '../store/store.js';
import type { Config } from './config.js';

export async function connect(config: Config): Promise<{ client: Client; close: () => Promise<void> }> {
  let connection: Connection;
  try {
    connection = await Connection.connect({ address: config.temporalAddress, connectTimeout: '10 seconds' });
  } catch (e) {
    throw new UserError(
      `cannot reach the Temporal server at ${config.temporalAddress} (${config.source}): ${(e as Error).message}`,
    );
  }
  return { client: new Client({ connection, namespace: config.namespace }), close: () => connection.close() };
}

/** The configured store, its bucket created if needed. */
export async function openConfiguredStore(config: Config): Promise<ArtifactStore> {
  return await openReadyStore(config.store);
}

/** CPU slots of the embedded worker: one per core (each run then uses one thread), at most 4. */
export function defaultCpuSlots(): number {
  return Math.max(1, Math.min(4, cpus().length));
}

/**
 * Runs a sweep keeps in flight unless told (`--concurrency`). On the embedded default, two per slot of its
 * worker: one training and one whose training already waits in the task queue, so a slot that frees starts the
 * next run at once instead of waiting for the workflow steps between two runs (result record, the sweep
 * starting the next run, its result lookup: 0.4-0.5 s per run, measured by `bench/sweep_bench.ts`); the slots
 * still bound how many train. Elsewhere 8: set it above the slots of all workers for the same effect.
 */
export function defaultConcurrency(config: Config): number {
  return config.embedded ? concurrencyFor(defaultCpuSlots()) : 8;
}

/** Runs in flight for a worker of `slots` slots: two per slot (see `defaultConcurrency`). */
export function concurrencyFor(slots: number): number {
  return 2 * slots;
}
