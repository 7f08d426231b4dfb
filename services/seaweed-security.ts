/**
 * SeaweedFS's own access control for the embedded S3 server. `weed mini` runs a master, a volume server, a
 * filer, an admin server and the S3 gateway, each with an HTTP and a gRPC port on loopback. Only the S3
 * gateway (which checks AWS SigV4 signatures against `s3-identities.json`) is meant for clients; the other
 * ports would otherwise let anyone on the machine list, read, write and delete every object.
 *
 * `writeSecurityConfig(stateDir)` writes `security.toml` (read by every component from its working folder, the
 * state folder) with:
 * - mutual TLS on every gRPC port and on the master, volume, filer and admin HTTP ports, with a CA and one
 *   certificate made for this state folder (the components present it to each other; nobody else has it),
 * - JWT signing keys for volume writes and reads and for filer writes and reads, so even a holder of a
 *   connection cannot use a file id without a fresh token,
 * - no directory listings or UI on the filer and volume servers, a random admin password.
 * Keys and certificates are made anew at every start (nothing outlives the processes that use them) and are
 * readable only by their owner (the state folder is 0700, the files 0600).
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';

const SECURITY_FILE = 'security.toml';
const TLS_DIR = 'tls';
const GRPC_COMPONENTS = ['master', 'volume', 'filer', 's3', 'admin', 'worker', 'msg_broker', 'msg_agent', 'mq'];
const HTTPS_COMPONENTS = ['master', 'volume', 'filer', 'admin'];

export class SecurityConfigError extends Error {}

function openssl(args: string[], cwd: string): void {
  try {
    execFileSync('openssl', args, { cwd, stdio: ['ignore', 'ignore', 'pipe'] });
  } catch (e) {
    const err = e as NodeJS.ErrnoException & { stderr?: Buffer };
    if (err.code === 'ENOENT') {
      throw new SecurityConfigError(
        'openssl is needed to secure the embedded S3 server (mutual TLS between its components) and is not on ' +
          'the PATH: install it (e.g. `apt-get install openssl`), or configure your own S3 store (RANKFLOW_S3_BUCKET)',
      );
    }
    throw new SecurityConfigError(
      `openssl ${args[0]} failed: ${
        String(err.stderr ?? err.message)
          .trim()
          .split('\n')[0]
      }`,
    );
  }
}

/** A CA and one certificate (server and client use, 127.0.0.1/localhost) signed by it, in `dir`. */
function makeCertificates(dir: string): { ca: string; cert: string; key: string } {
  fs.rmSync(dir, { recursive: true, force: true });
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];
  openssl(
    [
      'req',
      '-x509',
      ...ec,
      '-keyout',
      'ca.key',
      '-out',
      'ca.crt',
      '-days',
      '3650',
      '-subj',
      '/CN=rankflow-embedded-ca',
    ],
    dir,
  );
  openssl(['req', ...ec, '-keyout', 'node.key', '-out', 'node.csr', '-subj', '/CN=rankflow-embedded'], dir);
  fs.writeFileSync(
    path.join(dir, 'ext.cnf'),
    'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\nbasicConstraints=CA:FALSE\n',
  );
  openssl(
    [
      'x509',
      '-req',
      '-in',
      'node.csr',
      '-CA',
      'ca.crt',
      '-CAkey',
      'ca.key',
      '-CAcreateserial',
      '-out',
      'node.crt',
      '-days',
      '3650',
      '-extfile',
      'ext.cnf',
    ],
    dir,
  );
  for (const f of fs.readdirSync(dir)) fs.chmodSync(path.join(dir, f), 0o600);
  fs.rmSync(path.join(dir, 'ca.key')); // nothing else is ever signed with it
  return { ca: path.join(dir, 'ca.crt'), cert: path.join(dir, 'node.crt'), key: path.join(dir, 'node.key') };
}

const secret = (): string => randomBytes(32).toString('hex');

/** Writes `<stateDir>/security.toml` and its certificates (see the module comment). */
export function writeSecurityConfig(stateDir: string): void {
  const { ca, cert, key } = makeCertificates(path.join(stateDir, TLS_DIR));
  const pair = `cert = ${JSON.stringify(cert)}\nkey = ${JSON.stringify(key)}\n`;
  const sections = [
    `[jwt.signing]\nkey = "${secret()}"\n`,
    `[jwt.signing.read]\nkey = "${secret()}"\n`,
    `[jwt.filer_signing]\nkey = "${secret()}"\n`,
    `[jwt.filer_signing.read]\nkey = "${secret()}"\n`,
    '[access]\nui = false\n',
    '[filer.expose_directory_metadata]\nenabled = false\n',
    `[grpc]\nca = ${JSON.stringify(ca)}\n`,
    ...GRPC_COMPONENTS.map((c) => `[grpc.${c}]\n${pair}`),
    `[grpc.client]\n${pair}`,
    `[https.client]\nenabled = true\n${pair}ca = ${JSON.stringify(ca)}\n`,
    ...HTTPS_COMPONENTS.map((c) => `[https.${c}]\n${pair}ca = ${JSON.stringify(ca)}\n`),
    `[admin]\nuser = "rankflow"\npassword = "${secret()}"\n`,
  ];
  const file = path.join(stateDir, SECURITY_FILE);
  fs.writeFileSync(
    file,
    `# written by rankflow (services/seaweed-security.ts) at every start\n${sections.join('\n')}`,
    {
      mode: 0o600,
    },
  );
  fs.chmodSync(file, 0o600);
}
