/** Test helpers: a Config pointing at the test services, a Temporal client, and an in-process worker. */
import { inject } from 'vitest';
import { randomBytes } from 'node:crypto';
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { PROJECT_ROOT } from '../../core/paths.js';
import { Client, Connection } from '@temporalio/client';
import type { Config } from '../../cli/config.js';
import { DEFAULT_QUEUES } from '../../cli/config.js';
import { S3Store } from '../../store/store.js';

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

/** The environment that points the `rankflow` command at a config (as on a cluster: no config file). */
export function cliEnv(config: Config): NodeJS.ProcessEnv {
  const s = config.store as Extract<Config['store'], { kind: 's3' }>;
  return {
    ...process.env,
    RANKFLOW_CONFIG: '',
    RANKFLOW_TEMPORAL_ADDRESS: config.temporalAddress,
    RANKFLOW_S3_ENDPOINT: s.endpoint,
    RANKFLOW_S3_BUCKET: s.bucket,
    RANKFLOW_S3_PREFIX: s.prefix,
    AWS_ACCESS_KEY_ID: s.accessKeyId,
    AWS_SECRET_ACCESS_KEY: s.secretAccessKey,
    AWS_REGION: s.region,
    RANKFLOW_QUEUE_CONTROL: config.queues.control,
    RANKFLOW_QUEUE_CPU: config.queues.cpu,
  };
}

/** Runs the real `rankflow` command with that environment. */
export function rankflowCli(
  config: Config,
  ...args: string[]
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, [join(PROJECT_ROOT, 'cli', 'bin.mjs'), ...args], {
      cwd: PROJECT_ROOT,
      env: cliEnv(config),
    });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d) => (stdout += d));
    p.stderr.on('data', (d) => (stderr += d));
    p.on('error', reject);
    p.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

/** A `rankflow worker` process (one CPU slot) pointed at a config, for tests that kill workers. */
export function workerProcess(config: Config): ChildProcess {
  return spawn(process.execPath, [join(PROJECT_ROOT, 'cli', 'bin.mjs'), 'worker', '--cpu-slots', '1'], {
    env: cliEnv(config),
    stdio: ['ignore', 'inherit', 'inherit'],
  });
}
