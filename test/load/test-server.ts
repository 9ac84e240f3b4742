import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

/** What the test server saw, counted on its side: the evidence for the load script's numbers. */
export interface ServerStats {
  requests: number;
  inFlight: number;
  maxInFlight: number;
  /** Answers per `x-served-by` value it sent. */
  servedBy: Map<string, number>;
  /** The last request's method, content type and body. */
  last?: { method: string; contentType: string | undefined; body: string };
}

export interface TestServer {
  url: string;
  stats: ServerStats;
  close(): Promise<void>;
}

export interface TestServerOptions {
  /** Names put in `x-served-by`, in turn; empty to send no header. @default ['c1', 'c2', 'c3'] */
  containers?: string[];
  /** Time before the n-th request (from 0) is answered, in ms. @default 0 */
  delayMs?: (n: number) => number;
  /** Status of the n-th answer. @default 200 */
  status?: (n: number) => number;
  /** Never answer (for timeouts). */
  hang?: boolean;
}

/** A stand-in orchestrator on 127.0.0.1, any port, that counts requests and its own concurrency. */
export async function startTestServer(options: TestServerOptions = {}): Promise<TestServer> {
  const containers = options.containers ?? ['c1', 'c2', 'c3'];
  const stats: ServerStats = { requests: 0, inFlight: 0, maxInFlight: 0, servedBy: new Map() };
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const n = stats.requests++;
    stats.inFlight++;
    stats.maxInFlight = Math.max(stats.maxInFlight, stats.inFlight);
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      stats.last = { method: req.method ?? '', contentType: req.headers['content-type'], body: Buffer.concat(chunks).toString() };
      if (options.hang) return;
      const answer = (): void => {
        stats.inFlight--;
        const container = containers[n % Math.max(containers.length, 1)];
        if (container !== undefined) {
          res.setHeader('x-served-by', container);
          stats.servedBy.set(container, (stats.servedBy.get(container) ?? 0) + 1);
        }
        res.statusCode = options.status?.(n) ?? 200;
        res.setHeader('content-type', 'application/json');
        res.end(JSON.stringify({ n }));
      };
      const delayMs = options.delayMs?.(n) ?? 0;
      if (delayMs > 0) setTimeout(answer, delayMs);
      else answer();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/new_request`,
    stats,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** A loopback URL nothing listens on: a port just freed. */
export async function refusingUrl(): Promise<string> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return `http://127.0.0.1:${port}/new_request`;
}
