import { createServer, type RequestListener, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

/** A listening HTTP server with a graceful, idempotent close. */
export interface ListeningServer {
  server: Server;
  /** Base URL, e.g. `http://127.0.0.1:5000`. */
  url: string;
  /** Stop accepting, let in-flight requests finish, force-close sockets after `drainMs` (@default 10000). Idempotent. */
  close(drainMs?: number): Promise<void>;
}

/** Listen on `host:port` (0 picks a free port); resolves once listening, rejects on e.g. EADDRINUSE. */
export async function listen(handler: RequestListener, port: number, host: string): Promise<ListeningServer> {
  const server = createServer(handler);
  const pending = new Set<ServerResponse>();
  let closing: Promise<void> | undefined;

  // server.close() only drops idle sockets; a keep-alive socket whose request is in flight would stay
  // open until its client or the keep-alive timeout closes it, so those answers say `Connection: close`.
  server.on('request', (_req, res) => {
    if (closing) res.setHeader('connection', 'close');
    pending.add(res);
    res.once('close', () => pending.delete(res));
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const address = server.address() as AddressInfo;
  const url = `http://${address.address.includes(':') ? `[${address.address}]` : address.address}:${address.port}`;

  const close = (drainMs = 10_000): Promise<void> =>
    (closing ??= new Promise<void>((resolve, reject) => {
      const force = setTimeout(() => server.closeAllConnections(), drainMs);
      server.close((error) => {
        clearTimeout(force);
        if (error) reject(error);
        else resolve();
      });
      server.closeIdleConnections();
      for (const res of pending) if (!res.headersSent) res.setHeader('connection', 'close');
    }));
  return { server, url, close };
}
