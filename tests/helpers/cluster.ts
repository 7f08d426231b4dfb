/** Test helpers: a Config pointing at the test services, a Temporal client, and an in-process worker. */
import { inject } from 'vitest';
import { randomBytes } from 'node:crypto';
import { Client, Connection } from '@temporalio/client';
import type { Config } from '../../cli/config.js';
import { DEFAULT_QUEUES } from '../../cli/config.js';
import { S3Store } from '../../activities/store.js';

export function uniqueId(prefix: string): string {
  return `${prefix}-${randomBytes(5).toString('hex')}`;
}

/** A config on the test services, with a fresh key prefix in the bucket so tests never see each other. */
export function testConfig(opts: { prefix?: string; queueSuffix?: string } = {}): Config {
  const s = inject('services');
  const suffix = opts.queueSuffix ?? randomBytes(4).toString('hex');
  return {
    temporalAddress: s.temporalAddress,
    namespace: s.namespace,
    store: {
      kind: 's3',
      endpoint: s.s3.endpoint,
      bucket: s.s3.bucket,
      region: s.s3.region,
      accessKeyId: s.s3.accessKeyId,
      secretAccessKey: s.s3.secretAccessKey,
      prefix: opts.prefix ?? uniqueId('test'),
    },
    queues: Object.fromEntries(Object.entries(DEFAULT_QUEUES).map(([k, v]) => [k, `${v}-${suffix}`])),
    embedded: false,
    source: 'tests',
  };
}

export function testStore(config: Config): S3Store {
  if (config.store.kind !== 's3') throw new Error('tests use the S3 server');
  return new S3Store(config.store);
}

export async function testClient(config: Config): Promise<{ client: Client; close: () => Promise<void> }> {
  const connection = await Connection.connect({ address: config.temporalAddress });
  return { client: new Client({ connection, namespace: config.namespace }), close: () => connection.close() };
}
