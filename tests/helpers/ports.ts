/**
 * What a process group listens on (from /proc), and what an unauthenticated client gets from a port: a plain
 * HTTP/1.1 request, a TLS handshake without a client certificate, and a gRPC call over cleartext HTTP/2.
 */
import fs from 'node:fs';
import http from 'node:http';
import http2 from 'node:http2';
import tls from 'node:tls';

export interface Listening {
  address: string;
  port: number;
}

function groupPids(pgid: number): number[] {
  const out: number[] = [];
  for (const e of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${e}/stat`, 'utf8');
      if (Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[2]) === pgid) out.push(Number(e));
    } catch {
      /* raced with exit */
    }
  }
  return out;
}

function hexAddress(hex: string): string {
  if (hex.length === 8) return [3, 2, 1, 0].map((i) => parseInt(hex.slice(i * 2, i * 2 + 2), 16)).join('.');
  return hex === '00000000000000000000000000000000' ? '::' : `ipv6:${hex}`;
}

/** Every TCP socket in LISTEN state owned by a process of the group `pgid`. */
export function listeningSockets(pgid: number): Listening[] {
  const inodes = new Set<string>();
  for (const pid of groupPids(pgid)) {
    for (const fd of fs.readdirSync(`/proc/${pid}/fd`)) {
      try {
        const m = /^socket:\[(\d+)\]$/.exec(fs.readlinkSync(`/proc/${pid}/fd/${fd}`));
        if (m) inodes.add(m[1]!);
      } catch {
        /* closed meanwhile */
      }
    }
  }
  const out: Listening[] = [];
  for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let lines: string[];
    try {
      lines = fs.readFileSync(table, 'utf8').trim().split('\n').slice(1);
    } catch {
      continue;
    }
    for (const line of lines) {
      const f = line.trim().split(/\s+/);
      if (f[3] !== '0A' || !inodes.has(f[9]!)) continue; // 0A = LISTEN
      const [addr, port] = f[1]!.split(':');
      out.push({ address: hexAddress(addr!), port: parseInt(port!, 16) });
    }
  }
  return out.sort((a, b) => a.port - b.port);
}

/** What came back: an HTTP status (and a body prefix), or the error that ended the attempt. */
export type Answer = { status: number; body: string } | { error: string };

export const served = (a: Answer): boolean => 'status' in a && a.status < 400;

export function plainHttp(port: number, path = '/'): Promise<Answer> {
  return new Promise((resolve) => {
    const req = http.get({ host: '127.0.0.1', port, path, timeout: 3_000 }, (res) => {
      let body = '';
      res.on('data', (d: Buffer) => (body += d.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: body.slice(0, 200) }));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', (e) => resolve({ error: e.message }));
  });
}

export function tlsWithoutCertificate(port: number): Promise<Answer> {
  return new Promise((resolve) => {
    const sock = tls.connect({ host: '127.0.0.1', port, rejectUnauthorized: false, timeout: 3_000 }, () => {
      sock.write('GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n');
    });
    let data = '';
    sock.on('data', (d: Buffer) => (data += d.toString()));
    sock.on('timeout', () => sock.destroy(new Error('timeout')));
    sock.on('error', (e) => resolve({ error: e.message }));
    sock.on('close', () => {
      const m = /^HTTP\/1\.\d (\d{3})/.exec(data);
      resolve(m ? { status: Number(m[1]), body: data.slice(0, 200) } : { error: `closed (${data.length} bytes)` });
    });
  });
}

/** A gRPC call (filer ListEntries of `/`) over cleartext HTTP/2: what an unauthenticated gRPC client gets. */
export function grpcCleartext(port: number, path = '/filer_pb.SeaweedFiler/ListEntries'): Promise<Answer> {
  return new Promise((resolve) => {
    const client = http2.connect(`http://127.0.0.1:${port}`);
    const done = (a: Answer): void => {
      client.close();
      resolve(a);
    };
    client.on('error', (e) => done({ error: e.message }));
    const req = client.request({
      ':method': 'POST',
      ':path': path,
      'content-type': 'application/grpc',
      te: 'trailers',
    });
    req.setTimeout(3_000, () => req.close());
    let status = 0;
    let grpcStatus: string | undefined;
    req.on('response', (h) => {
      status = Number(h[':status']);
      grpcStatus = h['grpc-status'] as string | undefined;
    });
    req.on('trailers', (t) => (grpcStatus = (t['grpc-status'] as string | undefined) ?? grpcStatus));
    req.on('error', (e) => done({ error: e.message }));
    req.on('close', () => {
      if (!status) return done({ error: 'no response' });
      // grpc-status 0 is a served call; anything else (or an HTTP error) is a refusal.
      done(
        grpcStatus === '0'
          ? { status: 200, body: 'grpc ok' }
          : { status: Math.max(status, 400), body: `grpc-status ${grpcStatus}` },
      );
    });
    // An empty ListEntriesRequest message: 5-byte gRPC frame header, length 0.
    req.end(Buffer.from([0, 0, 0, 0, 0]));
  });
}
