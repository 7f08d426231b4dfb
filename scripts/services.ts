/**
 * Start, stop and inspect the local services (Temporal dev server, SeaweedFS S3 gateway).
 *
 *   npx tsx scripts/services.ts start  [--state-dir DIR] [--no-temporal] [--no-s3] [--timeout SECONDS]
 *   npx tsx scripts/services.ts stop   [--state-dir DIR]
 *   npx tsx scripts/services.ts status [--state-dir DIR] [--json]
 *   npx tsx scripts/services.ts env    [--state-dir DIR] [--json]     (eval "$(npx tsx scripts/services.ts env)")
 *
 * The state dir defaults to `.state/services` (or RANKFLOW_STATE_DIR). Exit codes: 0 ok, 1 a service is
 * down or failed to start, 2 bad usage.
 */
import { parseArgs } from 'node:util';
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
} from '../services/embedded.js';

const USAGE =
  'usage: tsx scripts/services.ts start|stop|status|env [--state-dir DIR] [--no-temporal] [--no-s3] [--timeout SECONDS] [--json]';

function fail(message: string, code = 1): never {
  process.stderr.write(`services: ${message}\n`);
  process.exit(code);
}

async function main(): Promise<void> {
  let parsed;
  try {
    parsed = parseArgs({
      allowPositionals: true,
      options: {
        'state-dir': { type: 'string' },
        'no-temporal': { type: 'boolean', default: false },
        'no-s3': { type: 'boolean', default: false },
        timeout: { type: 'string' },
        json: { type: 'boolean', default: false },
        help: { type: 'boolean', short: 'h', default: false },
      },
    });
  } catch (e) {
    fail(`${(e as Error).message}\n${USAGE}`, 2);
  }
  const { values, positionals } = parsed;
  if (values.help) {
    process.stdout.write(USAGE + '\n');
    return;
  }
  const cmd = positionals[0];
  if (positionals.length !== 1 || !cmd) fail(`expected exactly one command\n${USAGE}`, 2);
  const stateDir = values['state-dir'] ?? defaultStateDir();

  switch (cmd) {
    case 'start': {
      let timeoutS = 90;
      if (values.timeout !== undefined) {
        timeoutS = Number(values.timeout);
        if (!Number.isFinite(timeoutS) || timeoutS <= 0)
          fail(`--timeout: '${values.timeout}' is not a positive number of seconds`, 2);
      }
      const existing = readServicesFile(stateDir);
      if (existing && existing.state === 'ready' && livePids(existing).length > 0) {
        const health = await checkServices(existing, 5_000);
        if (health.every((h) => h.ok)) {
          process.stdout.write(`services: already running from ${stateDir}\n`);
          printSummary(existing);
          return;
        }
        fail(
          `services in ${stateDir} are running but unhealthy: ${health
            .filter((h) => !h.ok)
            .map((h) => h.error)
            .join('; ')}; run 'npx tsx scripts/services.ts stop' first`,
        );
      }
      const t0 = Date.now();
      const s = await startServices({
        stateDir,
        temporal: !values['no-temporal'],
        s3: !values['no-s3'],
        readyTimeoutMs: timeoutS * 1000,
      });
      process.stdout.write(`services: ready in ${((Date.now() - t0) / 1000).toFixed(1)} s (state in ${stateDir})\n`);
      printSummary(s.file);
      // The services run in their own process groups and outlive this command.
      return;
    }
    case 'stop': {
      const r = await stopServices(stateDir);
      if (!r) {
        process.stdout.write(`services: nothing recorded in ${stateDir}\n`);
        return;
      }
      process.stdout.write(
        `services: stopped (temporal: ${r.temporal ?? 'not started'}, s3: ${r.s3 ?? 'not started'})\n`,
      );
      return;
    }
    case 'status': {
      const file = readServicesFile(stateDir);
      if (!file) {
        if (values.json) process.stdout.write(JSON.stringify({ running: false, stateDir }) + '\n');
        else process.stdout.write(`services: not running (nothing recorded in ${stateDir})\n`);
        process.exit(1);
      }
      const health = await checkServices(file, 5_000);
      if (values.json) {
        process.stdout.write(
          JSON.stringify({ running: true, stateDir, state: file.state, services: health }, null, 2) + '\n',
        );
      } else {
        for (const h of health) {
          process.stdout.write(`${h.name.padEnd(8)} pid ${h.pid}  ${h.address}  ${h.ok ? 'ok' : `DOWN: ${h.error}`}\n`);
          if (!h.ok) process.stdout.write(`--- last lines of ${h.log} ---\n${tailFile(h.log, 20)}\n`);
        }
      }
      process.exit(health.every((h) => h.ok) ? 0 : 1);
    }
    // eslint-disable-next-line no-fallthrough
    case 'env': {
      const file = readServicesFile(stateDir);
      if (!file)
        fail(`not running (nothing recorded in ${stateDir}); start them with 'npx tsx scripts/services.ts start'`);
      const env = servicesEnv(file);
      if (values.json) process.stdout.write(JSON.stringify(env, null, 2) + '\n');
      else
        for (const [k, v] of Object.entries(env)) process.stdout.write(`export ${k}='${v.replace(/'/g, `'\\''`)}'\n`);
      return;
    }
    default:
      fail(`unknown command '${cmd}'\n${USAGE}`, 2);
  }
}

function printSummary(file: NonNullable<ReturnType<typeof readServicesFile>>): void {
  if (file.temporal)
    process.stdout.write(
      `  temporal  ${file.temporal.address}  (pid ${file.temporal.pid}, log ${file.temporal.log})\n`,
    );
  if (file.s3)
    process.stdout.write(
      `  s3        ${file.s3.endpoint}  bucket ${file.s3.bucket}  (pid ${file.s3.pid}, log ${file.s3.log})\n`,
    );
}

main().catch((e: unknown) => {
  if (e instanceof ServiceError) fail(e.message);
  fail((e as Error).stack ?? String(e));
});
