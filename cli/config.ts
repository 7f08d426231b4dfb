/**
 * Where rankflow's Temporal server and artifact store are. Resolution order: environment variables, then a
 * config file (`$RANKFLOW_CONFIG` or `./rankflow.config.yaml`), then the embedded default: a local
 * Temporal dev server (SQLite state) and a loopback SeaweedFS S3 server, started on demand and kept
 * running under `.state/services` (`rankflow services stop` stops them).
 */
import { existsSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { UserError } from '../core/errors.js';
import type { StoreConfig } from '../store/store.js';
import { defaultStateDir, readServicesFile } from '../services/embedded.js';
import { ensureServices } from '../services/lifecycle.js';

export const ConfigFile = z.strictObject({
  temporal: z.strictObject({ address: z.string(), namespace: z.string().default('default') }).optional(),
  store: z
    .union([
      z.strictObject({ kind: z.literal('local'), root: z.string() }),
      z.strictObject({
        kind: z.literal('s3'),
        bucket: z.string(),
        endpoint: z.string().optional(),
        prefix: z.string().optional(),
        region: z.string().optional(),
      }),
    ])
    .optional(),
  /** Task queue of training activities per device class. */
  queues: z.record(z.string(), z.string()).optional(),
});
export type ConfigFile = z.infer<typeof ConfigFile>;

export interface Config {
  temporalAddress: string;
  namespace: string;
  store: StoreConfig;
  queues: Record<string, string>;
  /** True when rankflow started (or reuses) its own local services. */
  embedded: boolean;
  source: string;
}

/** `control` serves workflows and light activities; the others serve training activities per device class. */
export const DEFAULT_QUEUES: Record<string, string> = {
  control: 'rankflow-control',
  cpu: 'rankflow-cpu',
  cuda: 'rankflow-gpu',
  auto: 'rankflow-cpu',
};

export function controlQueue(config: { queues: Record<string, string> }): string {
  return config.queues.control ?? 'rankflow-control';
}

function readConfigFile(): { file: ConfigFile; path: string } | null {
  const path = process.env.RANKFLOW_CONFIG ?? resolve('rankflow.config.yaml');
  if (!existsSync(path)) {
    if (process.env.RANKFLOW_CONFIG)
      throw new UserError(`${path}: config file not found (RANKFLOW_CONFIG points to it)`);
    return null;
  }
  let raw: unknown;
  try {
    raw = parseYaml(readFileSync(path, 'utf8'));
  } catch (e) {
    throw new UserError(`${path}: not valid YAML: ${(e as Error).message.split('\n')[0]}`);
  }
  const r = ConfigFile.safeParse(raw ?? {});
  if (!r.success) {
    const what = r.error.issues
      .map((i) => {
        const keys =
          'keys' in i && Array.isArray(i.keys)
            ? ` (unknown key ${i.keys.map((k) => `\`${String(k)}\``).join(', ')})`
            : '';
        return `field \`${i.path.join('.') || '(root)'}\`: ${i.message}${keys}`;
      })
      .join('; ');
    throw new UserError(`${path}: ${what}; see README "Where things run"`);
  }
  return { file: r.data, path };
}

function storeFromEnv(): StoreConfig | null {
  const local = process.env.RANKFLOW_STORE;
  if (local) {
    if (!local.startsWith('file:'))
      throw new UserError(`RANKFLOW_STORE=${local}: expected file:<folder> (for S3 set RANKFLOW_S3_BUCKET)`);
    return { kind: 'local', root: resolve(local.slice('file:'.length)) };
  }
  const bucket = process.env.RANKFLOW_S3_BUCKET;
  if (!bucket) return null;
  return {
    kind: 's3',
    bucket,
    endpoint: process.env.RANKFLOW_S3_ENDPOINT,
    prefix: process.env.RANKFLOW_S3_PREFIX,
    region: process.env.AWS_REGION,
    accessKeyId: process.env.AWS_ACCESS_KEY_ID,
    secretAccessKey: process.env.AWS_SECRET_ACCESS_KEY,
  };
}

/** Task queues: the defaults, then the config file, then RANKFLOW_QUEUE_<CLASS> (CPU, CUDA, CONTROL). */
function queuesFrom(cf: ConfigFile | undefined): Record<string, string> {
  const queues = { ...DEFAULT_QUEUES, ...(cf?.queues ?? {}) };
  for (const [k, v] of Object.entries(process.env)) {
    if (k.startsWith('RANKFLOW_QUEUE_') && v) queues[k.slice('RANKFLOW_QUEUE_'.length).toLowerCase()] = v;
  }
  return queues;
}

/** The Temporal frontend and namespace: environment variables, then the config file. */
function temporalFrom(cf: ConfigFile | undefined): { address: string | undefined; namespace: string } {
  const env = process.env;
  return {
    address: env.RANKFLOW_TEMPORAL_ADDRESS ?? env.TEMPORAL_ADDRESS ?? cf?.temporal?.address,
    namespace: env.RANKFLOW_TEMPORAL_NAMESPACE ?? env.TEMPORAL_NAMESPACE ?? cf?.temporal?.namespace ?? 'default',
  };
}

/** The artifact store: environment variables, then the config file (credentials always from the environment). */
function storeFrom(cf: ConfigFile | undefined): StoreConfig | null {
  const fromEnv = storeFromEnv();
  if (fromEnv || !cf?.store) return fromEnv;
  const s = cf.store;
  return s.kind === 'local'
    ? { kind: 'local', root: resolve(s.root) }
    : { ...s, accessKeyId: process.env.AWS_ACCESS_KEY_ID, secretAccessKey: process.env.AWS_SECRET_ACCESS_KEY };
}

/**
 * The embedded default: services that died are restarted with their state (also for `status` & co.); none
 * recorded are only started by commands that may start them (`start`).
 */
async function embedded(start: boolean, store: StoreConfig | null, queues: Record<string, string>): Promise<Config> {
  const stateDir = defaultStateDir();
  if (!start && !readServicesFile(stateDir)) {
    throw new UserError(
      'no rankflow services are running and none are configured; run `rankflow submit` (which starts them) or set TEMPORAL_ADDRESS',
    );
  }
  const file = await ensureServices(stateDir, { say: (m) => process.stderr.write(`rankflow: ${m} ...\n`) });
  const t = file.temporal!;
  const s = file.s3!;
  return {
    temporalAddress: t.address,
    namespace: t.namespace,
    store: store ?? {
      kind: 's3',
      endpoint: s.endpoint,
      bucket: s.bucket,
      region: s.region,
      accessKeyId: s.accessKeyId,
      secretAccessKey: s.secretAccessKey,
    },
    queues,
    embedded: true,
    source: `embedded services in ${stateDir}`,
  };
}

/**
 * Resolves the configuration; with nothing configured, reuses the embedded services if they run and
 * answer, or starts them (`start: false` makes that an error instead).
 */
export async function resolveConfig(opts: { start: boolean } = { start: true }): Promise<Config> {
  const cf = readConfigFile();
  const queues = queuesFrom(cf?.file);
  const { address, namespace } = temporalFrom(cf?.file);
  const store = storeFrom(cf?.file);
  if (address && store) {
    return {
      temporalAddress: address,
      namespace,
      store,
      queues,
      embedded: false,
      source: cf ? cf.path : 'environment',
    };
  }
  if (address) {
    throw new UserError(
      `TEMPORAL_ADDRESS is set (${address}) but no artifact store is: set RANKFLOW_S3_BUCKET (and RANKFLOW_S3_ENDPOINT for S3-compatible servers) or RANKFLOW_STORE=file:<folder>`,
    );
  }
  return await embedded(opts.start, store, queues);
}
