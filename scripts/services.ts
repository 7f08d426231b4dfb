/**
 * Start, stop and inspect the local services (Temporal dev server, SeaweedFS S3 gateway): a thin entry
 * point over `services/embedded.ts`.
 *
 *   npx tsx scripts/services.ts start  [--state-dir DIR] [--no-temporal] [--no-s3] [--timeout SECONDS]
 *   npx tsx scripts/services.ts stop   [--state-dir DIR]
 *   npx tsx scripts/services.ts status [--state-dir DIR] [--json]
 *   npx tsx scripts/services.ts env    [--state-dir DIR] [--json]     (eval "$(npx tsx scripts/services.ts env)")
 *
 * The state dir defaults to `.state/services` (or RANKFLOW_STATE_DIR). Exit codes: 0 ok, 1 a service is
 * down or failed to start, 2 bad usage.
 */
import { UserError } from '../core/errors.js';
import { runScript, type CommandDef, type Values } from '../cli/args.js';
import {
  checkServices,
  defaultStateDir,
  livePids,
  readServicesFile,
  servicesEnv,
  ServiceError,
  startServices,
  stopServices,
  tailFile,
  temporalWebUi,
  type ServicesFile,
} from '../services/embedded.js';

const OPTIONS = {
  'state-dir': { type: 'string', arg: 'DIR', help: 'state folder (default .state/services or $RANKFLOW_STATE_DIR)' },
  'no-temporal': { type: 'boolean', help: 'start: without the Temporal dev server' },
  'no-s3': { type: 'boolean', help: 'start: without the S3 server' },
  timeout: { type: 'string', arg: 'SECONDS', help: 'start: how long to wait for readiness (default 90)' },
  json: { type: 'boolean', help: 'status, env: print JSON' },
} as const;
type Opts = Values<typeof OPTIONS>;

function printSummary(file: ServicesFile): void {
  if (file.temporal)
    process.stdout.write(
      `  temporal  ${file.temporal.address}  (pid ${file.temporal.pid}, log ${file.temporal.log})\n`,
    );
  const ui = temporalWebUi(file.temporal);
  if (ui) process.stdout.write(`  web ui    ${ui}  (Temporal Web UI: every sweep and run workflow)\n`);
  if (file.s3)
    process.stdout.write(
      `  s3        ${file.s3.endpoint}  bucket ${file.s3.bucket}  (pid ${file.s3.pid}, log ${file.s3.log})\n`,
    );
}

async function start(stateDir: string, v: Opts): Promise<number> {
  const timeoutS = v.timeout === undefined ? 90 : Number(v.timeout);
  if (!Number.isFinite(timeoutS) || timeoutS <= 0)
    throw new UserError(`--timeout: '${v.timeout}' is not a positive number of seconds`);
  const existing = readServicesFile(stateDir);
  if (existing && existing.state === 'ready' && livePids(existing).length > 0) {
    const health = await checkServices(existing, 5_000);
    if (!health.every((h) => h.ok)) {
      const why = health
        .filter((h) => !h.ok)
        .map((h) => h.error)
        .join('; ');
      throw new ServiceError(
        `services in ${stateDir} are running but unhealthy: ${why}; run 'npx tsx scripts/services.ts stop' first`,
      );
    }
    process.stdout.write(`services: already running from ${stateDir}\n`);
    printSummary(existing);
    return 0;
  }
  const t0 = Date.now();
  const s = await startServices({
    stateDir,
    temporal: !v['no-temporal'],
    s3: !v['no-s3'],
    readyTimeoutMs: timeoutS * 1000,
  });
  process.stdout.write(`services: ready in ${((Date.now() - t0) / 1000).toFixed(1)} s (state in ${stateDir})\n`);
  printSummary(s.file);
  return 0; // the services run in their own process groups and outlive this command
}

async function stop(stateDir: string): Promise<number> {
  const r = await stopServices(stateDir);
  if (!r) process.stdout.write(`services: nothing recorded in ${stateDir}\n`);
  else
    process.stdout.write(
      `services: stopped (temporal: ${r.temporal ?? 'not started'}, s3: ${r.s3 ?? 'not started'})\n`,
    );
  return 0;
}

async function status(stateDir: string, v: Opts): Promise<number> {
  const file = readServicesFile(stateDir);
  if (!file) {
    if (v.json) process.stdout.write(JSON.stringify({ running: false, stateDir }) + '\n');
    else process.stdout.write(`services: not running (nothing recorded in ${stateDir})\n`);
    return 1;
  }
  const health = await checkServices(file, 5_000);
  if (v.json) {
    const doc = { running: true, stateDir, state: file.state, services: health };
    process.stdout.write(JSON.stringify(doc, null, 2) + '\n');
  } else {
    for (const h of health) {
      process.stdout.write(`${h.name.padEnd(8)} pid ${h.pid}  ${h.address}  ${h.ok ? 'ok' : `DOWN: ${h.error}`}\n`);
      if (!h.ok) process.stdout.write(`--- last lines of ${h.log} ---\n${tailFile(h.log, 20)}\n`);
    }
  }
  return health.every((h) => h.ok) ? 0 : 1;
}

function env(stateDir: string, v: Opts): number {
  const file = readServicesFile(stateDir);
  if (!file)
    throw new ServiceError(
      `not running (nothing recorded in ${stateDir}); start them with 'npx tsx scripts/services.ts start'`,
    );
  const vars = servicesEnv(file);
  if (v.json) process.stdout.write(JSON.stringify(vars, null, 2) + '\n');
  else for (const [k, x] of Object.entries(vars)) process.stdout.write(`export ${k}='${x.replace(/'/g, `'\\''`)}'\n`);
  return 0;
}

const SERVICES: CommandDef<typeof OPTIONS> = {
  name: 'services',
  usage: 'npx tsx scripts/services.ts',
  summary: 'start, stop and inspect the embedded local services',
  args: 'start|stop|status|env',
  options: OPTIONS,
  async run({ values, positionals }) {
    const [cmd, ...more] = positionals;
    if (!cmd || more.length) throw new UserError('expected exactly one command: start, stop, status or env');
    const stateDir = values['state-dir'] ?? defaultStateDir();
    try {
      if (cmd === 'start') return await start(stateDir, values);
      if (cmd === 'stop') return await stop(stateDir);
      if (cmd === 'status') return await status(stateDir, values);
      if (cmd === 'env') return env(stateDir, values);
    } catch (e) {
      if (!(e instanceof ServiceError)) throw e;
      process.stderr.write(`services: ${e.message}\n`);
      return 1;
    }
    throw new UserError(`unknown command '${cmd}': use start, stop, status or env`);
  },
};

runScript(SERVICES);
