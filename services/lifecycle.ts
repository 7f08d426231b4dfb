/**
 * Keeping the embedded services up for the `rankflow` command: `ensureServices(stateDir)` returns services
 * that run and answer. None recorded: it starts them. One of them dead (killed, crashed, the machine slept):
 * it restarts that one alone, on the ports every client and worker already knows and with the same state
 * (Temporal's SQLite file, SeaweedFS's data folder), so sweeps and background workers carry on. A service that
 * runs but does not answer is reported, never killed behind the user's back. A lock file serialises
 * commands that start or restart services at the same time.
 */
import fs from 'node:fs';
import path from 'node:path';
import {
  checkServices,
  launchS3,
  launchTemporal,
  pidAlive,
  privateDir,
  readServicesFile,
  ServiceError,
  startServices,
  stopProcessGroup,
  temporalWebUi,
  writeServicesFile,
  type ServiceHealth,
  type ServicesFile,
} from './embedded.js';

const LOCK_FILE = 'services.lock';
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Runs `fn` holding `<stateDir>/services.lock` (a lock whose holder died is taken over). */
export async function withServicesLock<T>(stateDir: string, fn: () => Promise<T>, waitMs = 180_000): Promise<T> {
  privateDir(stateDir);
  const lock = path.join(stateDir, LOCK_FILE);
  const deadline = Date.now() + waitMs;
  for (;;) {
    try {
      fs.writeFileSync(lock, String(process.pid), { flag: 'wx', mode: 0o600 });
      break;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      const holder = Number(fs.readFileSync(lock, 'utf8').trim());
      if (!Number.isInteger(holder) || holder <= 0 || !pidAlive(holder)) {
        fs.rmSync(lock, { force: true }); // its holder is gone
        continue;
      }
      if (Date.now() > deadline) {
        throw new ServiceError(
          `another rankflow command (pid ${holder}) has been starting the services for minutes; wait for it or stop it`,
        );
      }
      await sleep(200);
    }
  }
  try {
    return await fn();
  } finally {
    fs.rmSync(lock, { force: true });
  }
}

export interface EnsureOptions {
  /** One line per action taken (start, restart). */
  say?: (msg: string) => void;
  readyTimeoutMs?: number;
}

/** Restarts the dead services of `file` on their recorded ports; returns the updated record. */
async function restartDead(
  file: ServicesFile,
  dead: ('temporal' | 's3')[],
  readyTimeoutMs: number,
): Promise<ServicesFile> {
  const next: ServicesFile = { ...file, state: 'starting' };
  const waits: Promise<void>[] = [];
  if (dead.includes('temporal') && file.temporal) {
    const t = await launchTemporal(file.stateDir, readyTimeoutMs, { ports: file.temporal.ports });
    next.temporal = t.record;
    waits.push(t.ready);
  }
  if (dead.includes('s3') && file.s3) {
    const s = await launchS3(file.stateDir, readyTimeoutMs, { bucket: file.s3.bucket, ports: file.s3.ports });
    next.s3 = s.record;
    waits.push(s.ready);
  }
  writeServicesFile(file.stateDir, next);
  await Promise.all(waits);
  next.state = 'ready';
  writeServicesFile(file.stateDir, next);
  return next;
}

/** Stops whatever of `file` still runs (a failed restart leaves nothing half up). */
async function stopRecorded(file: ServicesFile): Promise<void> {
  const pids = [file.temporal?.pid, file.s3?.pid].filter((p): p is number => p !== undefined);
  await Promise.all(pids.map((p) => stopProcessGroup(p, 10_000).catch(() => undefined)));
  fs.rmSync(path.join(file.stateDir, 'services.json'), { force: true });
}

/** Says where the Temporal Web UI of freshly started services is (every sweep and run workflow can be watched there). */
function announced(file: ServicesFile, say: (msg: string) => void): ServicesFile {
  const ui = temporalWebUi(file.temporal);
  if (ui) say(`Temporal Web UI: ${ui} (every sweep and run workflow, with its history and heartbeats)`);
  return file;
}

/**
 * Health of the recorded services. A server that runs but is slow to answer (a loaded machine; SeaweedFS busy just
 * after a sweep: seen to miss 5 s twice, then answer in 0.4 s) is asked once more with a longer limit before it is
 * called hung; a dead one is not waited for.
 */
async function checkedPatiently(file: ServicesFile): Promise<ServiceHealth[]> {
  const health = await checkServices(file, 5_000);
  if (!health.some((h) => !h.ok && h.running)) return health;
  return await checkServices(file, 30_000);
}

/** See the module comment. Throws a ServiceError with one readable paragraph when it cannot. */
export async function ensureServices(stateDir: string, opts: EnsureOptions = {}): Promise<ServicesFile> {
  const say = opts.say ?? (() => undefined);
  const readyTimeoutMs = opts.readyTimeoutMs ?? 90_000;
  return await withServicesLock(stateDir, async () => {
    const file = readServicesFile(stateDir);
    if (!file || !file.temporal || !file.s3) {
      if (file) await stopRecorded(file);
      say(`starting the embedded Temporal dev server and S3 server (state in ${stateDir})`);
      return announced((await startServices({ stateDir, readyTimeoutMs })).file, say);
    }
    const health = await checkedPatiently(file);
    if (health.every((h) => h.ok)) return file;
    const hung = health.find((h) => !h.ok && h.running);
    if (hung) {
      throw new ServiceError(
        `the embedded ${hung.name === 's3' ? 'S3 server' : 'Temporal dev server'} (pid ${hung.pid}) runs but does not ` +
          `answer at ${hung.address} (${hung.error}); if it stays so, \`rankflow services stop\` and run the command again`,
      );
    }
    const dead = health.filter((h) => !h.ok).map((h) => h.name);
    say(`the embedded ${dead.join(' and ')} had stopped: restarting it on the same ports with the same state`);
    try {
      const next = await restartDead(file, dead, readyTimeoutMs);
      return dead.includes('temporal') ? announced(next, say) : next;
    } catch (e) {
      // The old ports are taken, say: start everything afresh (background workers follow the new addresses).
      say(`could not restart on the same ports (${(e as Error).message.split('\n')[0]}); starting afresh`);
      await stopRecorded(readServicesFile(stateDir) ?? file);
      return announced((await startServices({ stateDir, readyTimeoutMs })).file, say);
    }
  });
}
