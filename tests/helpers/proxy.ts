/** A TCP proxy to a real server that a test can cut off (connections dropped, port closed) and restore. */
import { createServer, connect as netConnect, type Server, type Socket } from 'node:net';
import { freePort } from '../../services/embedded.js';

export interface TcpProxy {
  /** The proxy's address, with the target's scheme. */
  endpoint: string;
  cut: () => Promise<void>;
  restore: () => Promise<void>;
}

export async function tcpProxy(target: string): Promise<TcpProxy> {
  const url = new URL(target);
  const port = await freePort();
  const sockets = new Set<Socket>();
  let server: Server | null = null;
  const restore = (): Promise<void> =>
    new Promise((resolve) => {
      server = createServer((client) => {
        const upstream = netConnect(Number(url.port), url.hostname);
        for (const s of [client, upstream]) {
          sockets.add(s);
          s.on('close', () => sockets.delete(s));
          s.on('error', () => s.destroy());
        }
        client.pipe(upstream).pipe(client);
      });
      server.listen(port, '127.0.0.1', () => resolve());
    });
  const cut = (): Promise<void> =>
    new Promise((resolve) => {
      for (const s of sockets) s.destroy();
      if (server) server.close(() => resolve());
      else resolve();
      server = null;
    });
  await restore();
  return { endpoint: `${url.protocol}//127.0.0.1:${port}`, cut, restore };
}
