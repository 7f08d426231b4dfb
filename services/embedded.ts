/**
 * Local services for tests and the embedded default: a Temporal dev server and an S3-compatible server
 * (SeaweedFS), both real binaries built by `scripts/setup.sh` into `.tools/bin/`, bound to 127.0.0.1 on free
 * ports, with state and logs under a git-ignored state directory (default `.state/services`).
 *
 * `startServices()` spawns them in their own process groups, waits for readiness (every wait has a timeout),
 * and writes `<stateDir>/services.json` so that `stop`/`status`/`env` in another process can find them.
 * `stopServices(stateDir)` sends SIGTERM to each process group and SIGKILL after a grace period.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { z } from 'zod';
import {
  CreateBucketCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadBucketCommand,
  PutObjectCommand,
} from '@aws-sdk/client-s3';
import { PROJECT_ROOT } from '../core/paths.js';
import { makeS3Client } from '../store/s3.js';
import { writeSecurityConfig } from './seaweed-security.js';

/** Default state directory; `RANKFLOW_STATE_DIR` overrides it. */
export const defaultStateDir = (): string =>
  path.resolve(process.env.RANKFLOW_STATE_DIR ?? path.join(PROJECT_ROOT, '.state', 'services'));
/** Where `scripts/setup.sh` puts the `temporal` and `weed` binaries; `RANKFLOW_TOOLS_BIN` overrides it. */
export const toolsBin = (): string =>
  path.resolve(process.env.RANKFLOW_TOOLS_BIN ?? path.join(PROJECT_ROOT, '.tools', 'bin'));

export const SERVICES_FILE = 'services.json';
export const DEFAULT_BUCKET = 'rankflow';
export const DEFAULT_REGION = 'us-east-1';

/** A service failed to start, died, or did not answer in time. The message is one readable paragraph. */
export class ServiceError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ServiceError';
  }
}

// ---------------------------------------------------------------------------------------------------------
// services.json: the hand-over between the process that starts the services and any other process.

const TemporalRecord = z.strictObject({
  address: z.string(),
  namespace: z.string(),
  pid: z.number().int(),
  ports: z.strictObject({
    grpc: z.number().int(),
    http: z.number().int(),
    metrics: z.number().int(),
    /** The Web UI's port (absent in records of servers started headless, before it was served). */
    ui: z.number().int().optional(),
  }),
  db: z.string(),
  log: z.string(),
});
export type TemporalRecord = z.infer<typeof TemporalRecord>;

const S3Record = z.strictObject({
  server: z.literal('seaweedfs'),
  endpoint: z.string(),
  bucket: z.string(),
  region: z.string(),
  accessKeyId: z.string(),
  secretAccessKey: z.string(),
  pid: z.number().int(),
  ports: z.record(z.string(), z.number().int()),
  dataDir: z.string(),
  log: z.string(),
});
export type S3Record = z.infer<typeof S3Record>;

export const ServicesFile = z.strictObject({
  schema: z.literal('rankflow.services/v1'),
  stateDir: z.string(),
  startedAt: z.string(),
  /** `starting` while readiness checks run; `ready` once every requested service answered. */
  state: z.enum(['starting', 'ready']),
  temporal: TemporalRecord.nullable(),
  s3: S3Record.nullable(),
});
export type ServicesFile = z.infer<typeof ServicesFile>;

export function readServicesFile(stateDir = defaultStateDir()): ServicesFile | null {
  const file = path.join(stateDir, SERVICES_FILE);
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch {
    return null;
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw new ServiceError(`${file}: not valid JSON (${(e as Error).message}); delete it and start the services again`);
  }
  const parsed = ServicesFile.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new ServiceError(
      `${file}: field '${issue?.path.join('.') ?? '?'}': ${issue?.message ?? 'invalid'}; delete it and start the services again`,
    );
  }
  return parsed.data;
}

export function writeServicesFile(stateDir: string, data: ServicesFile): void {
  const file = path.join(stateDir, SERVICES_FILE);
  const tmp = `${file}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, JSON.stringify(data, null, 2) + '\n', { mode: 0o600 });
  fs.renameSync(tmp, file);
}

// ---------------------------------------------------------------------------------------------------------
// small helpers

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Ask the kernel for a free TCP port on 127.0.0.1 (bind to port 0, read it, close). */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.once('error', reject);
    srv.listen({ host: '127.0.0.1', port: 0, exclusive: true }, () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => (port ? resolve(port) : reject(new Error('could not read the bound port'))));
    });
  });
}

/** `n` distinct free ports. SeaweedFS derives nothing from them: every port is passed explicitly. */
export async function freePorts(n: number): Promise<number[]> {
  const out = new Set<number>();
  for (let i = 0; out.size < n && i < n * 20; i++) out.add(await freePort());
  if (out.size < n) throw new ServiceError(`could not find ${n} free ports on 127.0.0.1`);
  return [...out];
}

/** True when a process with this pid exists and is not a zombie. */
export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    return state !== 'Z' && state !== 'X';
  } catch {
    return true; // no /proc (not Linux): trust kill(0)
  }
}

/** True when any process of the group led by `pgid` is still alive. */
export function groupAlive(pgid: number): boolean {
  try {
    process.kill(-pgid, 0);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  // kill(-pgid, 0) also succeeds for zombies; the leader's state decides when it is ours to judge.
  return pidAlive(pgid) || groupHasLiveMembers(pgid);
}

function groupHasLiveMembers(pgid: number): boolean {
  let entries: string[];
  try {
    entries = fs.readdirSync('/proc');
  } catch {
    return true;
  }
  for (const e of entries) {
    if (!/^\d+$/.test(e)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${e}/stat`, 'utf8');
      const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      // rest[0] = state, rest[1] = ppid, rest[2] = pgrp
      if (Number(rest[2]) === pgid && rest[0] !== 'Z' && rest[0] !== 'X') return true;
    } catch {
      /* raced with exit */
    }
  }
  return false;
}

/** The last `lines` lines of a log file, or a note that it is missing. */
export function tailFile(file: string, lines = 40): string {
  try {
    const fd = fs.openSync(file, 'r');
    try {
      const size = fs.fstatSync(fd).size;
      const len = Math.min(size, 64 * 1024);
      const buf = Buffer.alloc(len);
      fs.readSync(fd, buf, 0, len, size - len);
      const all = buf.toString('utf8').split('\n');
      if (all[all.length - 1] === '') all.pop();
      return all.slice(-lines).join('\n');
    } finally {
      fs.closeSync(fd);
    }
  } catch {
    return `(no log at ${file})`;
  }
}

function withLog(message: string, log: string): string {
  return `${message}\n--- last lines of ${log} ---\n${tailFile(log)}\n--- end of log ---`;
}

/** Run `fn` with a hard deadline: rejects with `what timed out after Nms` instead of waiting forever. */
export async function withTimeout<T>(what: string, ms: number, fn: (signal: AbortSignal) => Promise<T>): Promise<T> {
  const ac = new AbortController();
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      ac.abort();
      reject(new ServiceError(`${what} timed out after ${ms} ms`));
    }, ms);
  });
  try {
    return await Promise.race([fn(ac.signal), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

// ---------------------------------------------------------------------------------------------------------
// process management

interface Spawned {
  name: string;
  child: ChildProcess;
  pid: number;
  log: string;
  /** Set when the process exits: `code N` or `signal S`. */
  exited: string | null;
  exitedPromise: Promise<void>;
}

/**
 * The servers get the caller's environment minus AWS_* and TEMPORAL_*: SeaweedFS would otherwise add the
 * caller's AWS keys as an extra admin identity, and the Temporal CLI reads TEMPORAL_* as client settings.
 */
function serviceEnv(): NodeJS.ProcessEnv {
  return Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^(AWS_|TEMPORAL_)/.test(k)));
}

function spawnLogged(name: string, cmd: string, args: string[], log: string, cwd: string): Spawned {
  if (!fs.existsSync(cmd)) {
    throw new ServiceError(`${name}: ${cmd} not found; run 'bash scripts/setup.sh' first`);
  }
  fs.mkdirSync(path.dirname(log), { recursive: true });
  fs.appendFileSync(log, `\n=== ${new Date().toISOString()} ${name}: ${cmd} ${args.join(' ')}\n`);
  const fd = fs.openSync(log, 'a');
  let child: ChildProcess;
  try {
    // detached: a new process group, so stop() reaches every child the server spawned, and the
    // service outlives a short-lived CLI that started it.
    child = spawn(cmd, args, { cwd, detached: true, stdio: ['ignore', fd, fd], env: serviceEnv() });
  } finally {
    fs.closeSync(fd);
  }
  if (child.pid === undefined) throw new ServiceError(`${name}: could not spawn ${cmd}`);
  const s: Spawned = { name, child, pid: child.pid, log, exited: null, exitedPromise: Promise.resolve() };
  s.exitedPromise = new Promise<void>((resolve) => {
    child.once('exit', (code, signal) => {
      s.exited = signal ? `signal ${signal}` : `code ${code}`;
      resolve();
    });
    child.once('error', (err) => {
      s.exited = `spawn error ${err.message}`;
      resolve();
    });
  });
  child.unref();
  return s;
}

/**
 * Stop a process group: SIGTERM, wait up to `graceMs`, then SIGKILL and wait up to 5 s more.
 * Returns how it ended. Works for groups started by another process (polls /proc).
 */
export async function stopProcessGroup(
  pgid: number,
  graceMs = 10_000,
  exited?: Promise<void>,
): Promise<'not-running' | 'terminated' | 'killed'> {
  const gone = async (ms: number) => {
    const deadline = Date.now() + ms;
    while (Date.now() < deadline) {
      if (!groupAlive(pgid)) return true;
      await Promise.race([sleep(100), exited ?? sleep(100)]);
    }
    return !groupAlive(pgid);
  };
  if (!groupAlive(pgid)) return 'not-running';
  try {
    process.kill(-pgid, 'SIGTERM');
  } catch {
    return 'not-running';
  }
  if (await gone(graceMs)) return 'terminated';
  try {
    process.kill(-pgid, 'SIGKILL');
  } catch {
    /* already gone */
  }
  if (await gone(5_000)) return 'killed';
  throw new ServiceError(`process group ${pgid} survived SIGKILL for 5 s`);
}

/** Poll `probe` until it resolves, the process exits, or `timeoutMs` passes; errors carry the log tail. */
async function waitReady(s: Spawned, what: string, timeoutMs: number, probe: () => Promise<void>): Promise<void> {
  const start = Date.now();
  let last = 'no answer yet';
  while (Date.now() - start < timeoutMs) {
    if (s.exited) {
      throw new ServiceError(withLog(`${what} exited during start-up (${s.exited})`, s.log));
    }
    try {
      await probe();
      return;
    } catch (e) {
      last = (e as Error).message.split('\n')[0] ?? String(e);
    }
    await Promise.race([sleep(250), s.exitedPromise]);
  }
  if (s.exited) throw new ServiceError(withLog(`${what} exited during start-up (${s.exited})`, s.log));
  throw new ServiceError(
    withLog(`${what} was not ready after ${Math.round(timeoutMs / 1000)} s (last probe: ${last})`, s.log),
  );
}

// ---------------------------------------------------------------------------------------------------------
// probes (also used by `status` and by tests)

/** One DescribeNamespace call against the Temporal frontend, bounded by `timeoutMs`. */
export async function probeTemporal(address: string, namespace = 'default', timeoutMs = 3_000): Promise<void> {
  const { Connection } = await import('@temporalio/client');
  await withTimeout(`Temporal at ${address}`, timeoutMs, async () => {
    let conn: Awaited<ReturnType<typeof Connection.connect>> | undefined;
    try {
      conn = await Connection.connect({ address, connectTimeout: Math.max(500, timeoutMs - 500) });
      const c = conn;
      await c.withDeadline(Date.now() + timeoutMs, () => c.workflowService.describeNamespace({ namespace }));
    } catch (e) {
      throw new ServiceError(`Temporal at ${address} did not answer: ${(e as Error).message.split('\n')[0]}`);
    } finally {
      await conn?.close().catch(() => undefined);
    }
  });
}

/** What the embedded S3 server needs to be reached (always an endpoint and keys). */
export interface S3Access {
  endpoint: string;
  region: string;
  accessKeyId: string;
  secretAccessKey: string;
}

/** Create the bucket if needed and round-trip a tiny object: proves the gateway, filer and volume all work. */
export async function probeS3(a: S3Access, bucket: string, timeoutMs = 5_000): Promise<void> {
  const client = makeS3Client(a, {
    connectionTimeoutMs: Math.min(2_000, timeoutMs),
    requestTimeoutMs: timeoutMs,
    maxAttempts: 1,
  });
  try {
    await withTimeout(`S3 at ${a.endpoint}`, timeoutMs, async (abortSignal) => {
      try {
        try {
          await client.send(new HeadBucketCommand({ Bucket: bucket }), { abortSignal });
        } catch (e) {
          const status = (e as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
          if (status !== 404) throw e;
          await client.send(new CreateBucketCommand({ Bucket: bucket }), { abortSignal });
        }
        const Key = `_rankflow/ready-${process.pid}`;
        const body = `ready ${Date.now()}`;
        await client.send(new PutObjectCommand({ Bucket: bucket, Key, Body: body }), { abortSignal });
        const got = await client.send(new GetObjectCommand({ Bucket: bucket, Key }), { abortSignal });
        const text = await got.Body?.transformToString();
        if (text !== body) throw new Error(`read back ${JSON.stringify(text)} instead of ${JSON.stringify(body)}`);
        await client.send(new DeleteObjectCommand({ Bucket: bucket, Key }), { abortSignal });
      } catch (e) {
        const err = e as Error & { code?: string; Code?: string };
        const why = err.name && err.name !== 'Error' ? `${err.name}: ${err.message}` : err.message;
        throw new ServiceError(`S3 at ${a.endpoint} (bucket ${bucket}) did not answer: ${why.split('\n')[0]}`);
      }
    });
  } finally {
    client.destroy();
  }
}

// ---------------------------------------------------------------------------------------------------------
// starting each service

export interface StartedTemporal {
  record: TemporalRecord;
  spawned: Spawned;
}

export async function startTemporal(opts: {
  stateDir: string;
  readyTimeoutMs?: number;
  /** Override the frontend gRPC port (tests use this to provoke a start-up failure). */
  port?: number;
  /** All three ports (a restart on the ports clients already know). */
  ports?: TemporalRecord['ports'];
}): Promise<StartedTemporal> {
  const bin = path.join(toolsBin(), 'temporal');
  const [grpc, http, metrics, uiPort] = opts.ports
    ? [opts.ports.grpc, opts.ports.http, opts.ports.metrics, opts.ports.ui ?? (await freePort())]
    : await freePorts(4);
  const port = opts.port ?? grpc!;
  const db = path.join(opts.stateDir, 'temporal.db');
  const log = path.join(opts.stateDir, 'temporal.log');
  const args = [
    'server',
    'start-dev',
    '--ip',
    '127.0.0.1',
    '--port',
    String(port),
    '--http-port',
    String(http),
    '--metrics-port',
    String(metrics),
    // The Web UI (every sweep and run workflow, their histories and heartbeats), on loopback only, on a free port
    // (not the fixed grpc+1000), with no newsfeed request leaving the machine.
    '--ui-ip',
    '127.0.0.1',
    '--ui-port',
    String(uiPort),
    '--ui-disable-news-fetch',
    // The SQLite file keeps every workflow across restarts of the dev server.
    '--db-filename',
    db,
    '--log-level',
    'warn',
  ];
  const spawned = spawnLogged('temporal', bin, args, log, opts.stateDir);
  const address = `127.0.0.1:${port}`;
  const record: TemporalRecord = {
    address,
    namespace: 'default',
    pid: spawned.pid,
    ports: { grpc: port, http: http!, metrics: metrics!, ui: uiPort! },
    db,
    log,
  };
  return { record, spawned };
}

/** The Temporal Web UI of a recorded dev server (null for one started headless), or a page in it. */
export function temporalWebUi(t: TemporalRecord | null | undefined, workflowId?: string): string | null {
  if (!t?.ports.ui) return null;
  const base = `http://127.0.0.1:${t.ports.ui}`;
  return workflowId === undefined
    ? base
    : `${base}/namespaces/${encodeURIComponent(t.namespace)}/workflows/${encodeURIComponent(workflowId)}`;
}

export interface StartedS3 {
  record: S3Record;
  spawned: Spawned;
}

/** Credentials are made once per state directory and kept there (git-ignored), so data stays reachable. */
function s3Credentials(stateDir: string): { accessKeyId: string; secretAccessKey: string } {
  const file = path.join(stateDir, 's3-credentials.json');
  try {
    const c = JSON.parse(fs.readFileSync(file, 'utf8')) as { accessKeyId?: unknown; secretAccessKey?: unknown };
    if (typeof c.accessKeyId === 'string' && typeof c.secretAccessKey === 'string') {
      return { accessKeyId: c.accessKeyId, secretAccessKey: c.secretAccessKey };
    }
  } catch {
    /* make new ones */
  }
  const creds = {
    accessKeyId: 'RF' + randomBytes(9).toString('hex').toUpperCase(),
    secretAccessKey: randomBytes(30).toString('base64url'),
  };
  fs.writeFileSync(file, JSON.stringify(creds) + '\n', { mode: 0o600 });
  return creds;
}

export async function startS3(opts: {
  stateDir: string;
  bucket?: string;
  /** Every port (a restart on the ports clients already know). */
  ports?: Record<string, number>;
}): Promise<StartedS3> {
  const bin = path.join(toolsBin(), 'weed');
  const bucket = opts.bucket ?? DEFAULT_BUCKET;
  const dataDir = path.join(opts.stateDir, 's3-data');
  fs.mkdirSync(dataDir, { recursive: true });
  const log = path.join(opts.stateDir, 's3.log');
  const creds = s3Credentials(opts.stateDir);
  const configFile = path.join(opts.stateDir, 's3-identities.json');
  // Only this identity exists, so every request must be signed with these keys (no anonymous access).
  fs.writeFileSync(
    configFile,
    JSON.stringify(
      {
        identities: [
          {
            name: 'rankflow',
            credentials: [{ accessKey: creds.accessKeyId, secretKey: creds.secretAccessKey }],
            actions: ['Admin', 'Read', 'List', 'Tagging', 'Write'],
          },
        ],
      },
      null,
      2,
    ) + '\n',
    { mode: 0o600 },
  );
  const names = [
    's3',
    's3Grpc',
    'master',
    'masterGrpc',
    'volume',
    'volumeGrpc',
    'filer',
    'filerGrpc',
    'admin',
    'adminGrpc',
  ] as const;
  const list = opts.ports ? names.map((n) => opts.ports![n]!) : await freePorts(names.length);
  const ports = Object.fromEntries(names.map((n, i) => [n, list[i]!])) as Record<(typeof names)[number], number>;
  // SeaweedFS's access control for every port but the S3 gateway's (see seaweed-security.ts).
  try {
    writeSecurityConfig(opts.stateDir);
  } catch (e) {
    throw new ServiceError((e as Error).message);
  }
  const args = [
    'mini',
    `-dir=${dataDir}`,
    '-ip=127.0.0.1',
    '-ip.bind=127.0.0.1',
    `-s3.port=${ports.s3}`,
    `-s3.port.grpc=${ports.s3Grpc}`,
    `-master.port=${ports.master}`,
    `-master.port.grpc=${ports.masterGrpc}`,
    `-volume.port=${ports.volume}`,
    `-volume.port.grpc=${ports.volumeGrpc}`,
    `-filer.port=${ports.filer}`,
    `-filer.port.grpc=${ports.filerGrpc}`,
    `-s3.config=${configFile}`,
    '-s3.port.iceberg=0',
    '-s3.port.lance=0',
    '-webdav=false',
    '-admin.ui=false', // mini still runs its admin server and maintenance worker: give them free ports too
    `-admin.port=${ports.admin}`,
    `-admin.port.grpc=${ports.adminGrpc}`,
    '-master.telemetry=false',
  ];
  const spawned = spawnLogged('seaweedfs', bin, args, log, opts.stateDir);
  const record: S3Record = {
    server: 'seaweedfs',
    endpoint: `http://127.0.0.1:${ports.s3}`,
    bucket,
    region: DEFAULT_REGION,
    ...creds,
    pid: spawned.pid,
    ports,
    dataDir,
    log,
  };
  return { record, spawned };
}

// ---------------------------------------------------------------------------------------------------------
// the composite API

export interface StartOptions {
  /** Where state, logs and services.json live (default `.state/services`, or `RANKFLOW_STATE_DIR`). */
  stateDir?: string;
  temporal?: boolean;
  s3?: boolean;
  bucket?: string;
  /** How long each service may take to answer its readiness probe (default 90 s). */
  readyTimeoutMs?: number;
  /** SIGTERM-to-SIGKILL grace period used by stop() (default 10 s). */
  stopGraceMs?: number;
  /** Fixed Temporal gRPC port instead of a free one (tests use a busy port to provoke a start-up failure). */
  temporalPort?: number;
}

export interface Services {
  stateDir: string;
  /** `127.0.0.1:<port>`; undefined when started with `temporal: false`. */
  temporalAddress: string | undefined;
  temporalNamespace: string;
  /** `http://127.0.0.1:<port>`; undefined when started with `s3: false`. */
  s3Endpoint: string | undefined;
  s3Bucket: string;
  s3Region: string;
  accessKeyId: string;
  secretAccessKey: string;
  pids: { temporal?: number; s3?: number };
  /** The parsed services.json. */
  file: ServicesFile;
  /**
   * Throws a ServiceError (with the log tail) if a service this process started has exited since.
   * Only meaningful in the process that called startServices().
   */
  assertAlive(): void;
  /** Stops everything this call started; idempotent. */
  stop(): Promise<void>;
}

function toServices(file: ServicesFile, spawned: Spawned[], graceMs: number): Services {
  let stopped: Promise<void> | null = null;
  return {
    stateDir: file.stateDir,
    temporalAddress: file.temporal?.address,
    temporalNamespace: file.temporal?.namespace ?? 'default',
    s3Endpoint: file.s3?.endpoint,
    s3Bucket: file.s3?.bucket ?? DEFAULT_BUCKET,
    s3Region: file.s3?.region ?? DEFAULT_REGION,
    accessKeyId: file.s3?.accessKeyId ?? '',
    secretAccessKey: file.s3?.secretAccessKey ?? '',
    pids: { temporal: file.temporal?.pid, s3: file.s3?.pid },
    file,
    assertAlive() {
      for (const s of spawned) {
        if (s.exited) throw new ServiceError(withLog(`${s.name} (pid ${s.pid}) has exited (${s.exited})`, s.log));
      }
    },
    stop() {
      stopped ??= (async () => {
        await Promise.all(spawned.map((s) => stopProcessGroup(s.pid, graceMs, s.exitedPromise)));
        removeServicesFileIfOurs(file);
      })();
      return stopped;
    },
  };
}

function removeServicesFileIfOurs(file: ServicesFile): void {
  try {
    const now = readServicesFile(file.stateDir);
    if (now && now.startedAt === file.startedAt) fs.rmSync(path.join(file.stateDir, SERVICES_FILE), { force: true });
  } catch {
    /* a broken file is left for the user to see */
  }
}

/** Pids from a services file that still run. */
export function livePids(file: ServicesFile): number[] {
  return [file.temporal?.pid, file.s3?.pid].filter((p): p is number => p !== undefined && groupAlive(p));
}

/** Starts the Temporal dev server; `ready` resolves once it answers (rejects with its log tail if it does not). */
export async function launchTemporal(
  stateDir: string,
  readyTimeoutMs: number,
  opts: { port?: number; ports?: TemporalRecord['ports'] } = {},
): Promise<StartedTemporal & { ready: Promise<void> }> {
  const t = await startTemporal({ stateDir, ...opts });
  const what = `Temporal dev server (pid ${t.spawned.pid}, ${t.record.address})`;
  const ready = waitReady(t.spawned, what, readyTimeoutMs, () =>
    probeTemporal(t.record.address, t.record.namespace, 3_000),
  );
  ready.catch(() => undefined); // awaited by the caller; never an unhandled rejection meanwhile
  return { ...t, ready };
}

/** Starts the SeaweedFS S3 server; `ready` resolves once an object round-trips through its gateway. */
export async function launchS3(
  stateDir: string,
  readyTimeoutMs: number,
  opts: { bucket?: string; ports?: Record<string, number> } = {},
): Promise<StartedS3 & { ready: Promise<void> }> {
  const s = await startS3({ stateDir, ...opts });
  const what = `SeaweedFS S3 gateway (pid ${s.spawned.pid}, ${s.record.endpoint})`;
  const ready = waitReady(s.spawned, what, readyTimeoutMs, () => probeS3(s.record, s.record.bucket, 5_000));
  ready.catch(() => undefined);
  return { ...s, ready };
}

/**
 * Makes `dir` (and the project's `.state` above it, when it is there) private: created 0700, and chmod'ed to
 * 0700 if it already existed, so no other user can read state, logs, credentials or checkpoints.
 */
export function privateDir(dir: string): void {
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  const projectState = path.join(PROJECT_ROOT, '.state');
  for (let d = path.resolve(dir); ; d = path.dirname(d)) {
    fs.chmodSync(d, 0o700);
    if (d === projectState || !d.startsWith(projectState + path.sep)) break;
  }
}

/**
 * Start the requested services (both by default) on free loopback ports and wait until they answer.
 * Fails with a ServiceError if services recorded in the same state dir are still running.
 */
export async function startServices(opts: StartOptions = {}): Promise<Services> {
  const stateDir = path.resolve(opts.stateDir ?? defaultStateDir());
  const wantTemporal = opts.temporal ?? true;
  const wantS3 = opts.s3 ?? true;
  const readyTimeoutMs = opts.readyTimeoutMs ?? 90_000;
  const graceMs = opts.stopGraceMs ?? 10_000;
  privateDir(stateDir);

  const existing = readServicesFile(stateDir);
  if (existing) {
    const live = livePids(existing);
    if (live.length > 0) {
      throw new ServiceError(
        `services are already running from ${stateDir} (pids ${live.join(', ')}); ` +
          '`rankflow services stop` stops them (or use another state dir)',
      );
    }
    fs.rmSync(path.join(stateDir, SERVICES_FILE), { force: true });
  }

  const spawned: Spawned[] = [];
  const file: ServicesFile = {
    schema: 'rankflow.services/v1',
    stateDir,
    startedAt: new Date().toISOString(),
    state: 'starting',
    temporal: null,
    s3: null,
  };
  try {
    const waits: Promise<void>[] = [];
    if (wantTemporal) {
      const t = await launchTemporal(stateDir, readyTimeoutMs, { port: opts.temporalPort });
      spawned.push(t.spawned);
      file.temporal = t.record;
      waits.push(t.ready);
    }
    if (wantS3) {
      const s = await launchS3(stateDir, readyTimeoutMs, { bucket: opts.bucket });
      spawned.push(s.spawned);
      file.s3 = s.record;
      waits.push(s.ready);
    }
    // Written before the readiness wait, so `stop` in another process can clean up a start that hangs.
    writeServicesFile(stateDir, file);
    const results = await Promise.allSettled(waits);
    const failed = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed.length > 0)
      throw failed.length === 1
        ? failed[0]!.reason
        : new ServiceError(failed.map((f) => (f.reason as Error).message).join('\n'));
    file.state = 'ready';
    writeServicesFile(stateDir, file);
    return toServices(file, spawned, graceMs);
  } catch (e) {
    await Promise.all(spawned.map((s) => stopProcessGroup(s.pid, 3_000, s.exitedPromise).catch(() => undefined)));
    removeServicesFileIfOurs(file);
    throw e;
  }
}

/** Stop the services recorded in `stateDir` (from any process). Returns what happened to each. */
export async function stopServices(
  stateDir = defaultStateDir(),
  graceMs = 10_000,
): Promise<{ temporal?: string; s3?: string } | null> {
  const file = readServicesFile(stateDir);
  if (!file) return null;
  const out: { temporal?: string; s3?: string } = {};
  await Promise.all([
    file.temporal ? stopProcessGroup(file.temporal.pid, graceMs).then((r) => (out.temporal = r)) : undefined,
    file.s3 ? stopProcessGroup(file.s3.pid, graceMs).then((r) => (out.s3 = r)) : undefined,
  ]);
  fs.rmSync(path.join(stateDir, SERVICES_FILE), { force: true });
  return out;
}

export interface ServiceHealth {
  name: 'temporal' | 's3';
  pid: number;
  address: string;
  running: boolean;
  ok: boolean;
  /** Why it is not ok: one line. */
  error?: string;
  log: string;
}

/** Check each recorded service: is its process alive and does it answer a real request within `timeoutMs`? */
export async function checkServices(file: ServicesFile, timeoutMs = 5_000): Promise<ServiceHealth[]> {
  const checks: Promise<ServiceHealth>[] = [];
  if (file.temporal) {
    const t = file.temporal;
    checks.push(
      (async () => {
        const running = groupAlive(t.pid);
        const base = { name: 'temporal' as const, pid: t.pid, address: t.address, running, log: t.log };
        if (!running) return { ...base, ok: false, error: `Temporal dev server (pid ${t.pid}) is not running` };
        try {
          await probeTemporal(t.address, t.namespace, timeoutMs);
          return { ...base, ok: true };
        } catch (e) {
          return { ...base, ok: false, error: (e as Error).message };
        }
      })(),
    );
  }
  if (file.s3) {
    const s = file.s3;
    checks.push(
      (async () => {
        const running = groupAlive(s.pid);
        const base = { name: 's3' as const, pid: s.pid, address: s.endpoint, running, log: s.log };
        if (!running) return { ...base, ok: false, error: `SeaweedFS S3 gateway (pid ${s.pid}) is not running` };
        try {
          await probeS3(s, s.bucket, timeoutMs);
          return { ...base, ok: true };
        } catch (e) {
          return { ...base, ok: false, error: (e as Error).message };
        }
      })(),
    );
  }
  return Promise.all(checks);
}

/**
 * Environment variables that point a process at the recorded services. The AWS_* names are the ones the
 * AWS SDK reads by itself; TEMPORAL_ADDRESS is the one the Temporal CLI reads.
 */
export function servicesEnv(file: ServicesFile): Record<string, string> {
  const env: Record<string, string> = { RANKFLOW_STATE_DIR: file.stateDir };
  if (file.temporal) {
    env.RANKFLOW_TEMPORAL_ADDRESS = file.temporal.address;
    env.RANKFLOW_TEMPORAL_NAMESPACE = file.temporal.namespace;
    env.TEMPORAL_ADDRESS = file.temporal.address;
  }
  if (file.s3) {
    env.RANKFLOW_S3_ENDPOINT = file.s3.endpoint;
    env.RANKFLOW_S3_BUCKET = file.s3.bucket;
    env.AWS_ACCESS_KEY_ID = file.s3.accessKeyId;
    env.AWS_SECRET_ACCESS_KEY = file.s3.secretAccessKey;
    env.AWS_REGION = file.s3.region;
    env.AWS_REQUEST_CHECKSUM_CALCULATION = 'WHEN_REQUIRED';
    env.AWS_RESPONSE_CHECKSUM_VALIDATION = 'WHEN_REQUIRED';
  }
  return env;
}
