import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

/** What a test backend saw, counted by itself: the evidence for the queue's invariants. */
export interface BackendStats {
  served: number;
  inFlight: number;
  maxInFlight: number;
  /** `x-seq` header of each request, in arrival order. */
  arrivals: string[];
  /** Last request seen, for forwarding-fidelity checks. */
  last?: { method: string; url: string; headers: IncomingMessage['headers']; body: Buffer };
}

export interface Backend {
  readonly id: string;
  readonly port: number;
  readonly stats: BackendStats;
  /** Service time of the next requests, in ms. */
  delayMs: number;
  /** Stop listening and cut every open connection (a crashed container). */
  kill(): Promise<void>;
  /** With `manual`: answer the oldest request still held. */
  answerNext(): void;
  /** With `manual`: requests held, not yet answered. */
  readonly held: number;
}

/**
 * A stand-in model container on 127.0.0.1: `GET /health`, and any other request answered after
 * `delayMs` with JSON naming the backend. It counts its own concurrency.
 */
export async function startBackend(
  id: string,
  options: {
    delayMs?: number;
    /** Hold every request until `answerNext()`. */
    manual?: boolean;
    port?: number;
    /** Loopback address to listen on. @default '127.0.0.1' */
    host?: string;
    /** Answer the request itself; return true when it did. */
    handler?: (req: IncomingMessage, res: ServerResponse, body: Buffer) => boolean;
  } = {},
): Promise<Backend> {
  const stats: BackendStats = { served: 0, inFlight: 0, maxInFlight: 0, arrivals: [] };
  const sockets = new Set<Socket>();
  const heldAnswers: Array<() => void> = [];
  const backend = {
    id,
    stats,
    delayMs: options.delayMs ?? 0,
    answerNext: () => heldAnswers.shift()?.(),
    get held() {
      return heldAnswers.length;
    },
  } as Backend & { port: number; kill: () => Promise<void> };
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      if (req.url === '/health') {
        res.setHeader('content-type', 'application/json');
        res.end(JSON.stringify({ status: 'ok', container: id }));
        return;
      }
      stats.inFlight++;
      stats.maxInFlight = Math.max(stats.maxInFlight, stats.inFlight);
      stats.arrivals.push(String(req.headers['x-seq'] ?? ''));
      stats.last = { method: req.method ?? '', url: req.url ?? '', headers: req.headers, body };
      const answer = (): void => {
        stats.inFlight--;
        stats.served++;
        if (options.handler?.(req, res, body)) return;
        res.setHeader('content-type', 'application/json');
        res.end(JSON.stringify({ backend: id, seq: req.headers['x-seq'] ?? null }));
      };
      if (options.manual) heldAnswers.push(answer);
      else if (backend.delayMs > 0) setTimeout(answer, backend.delayMs);
      else answer();
    });
  });
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(options.port ?? 0, options.host ?? '127.0.0.1', resolve));
  backend.port = (server.address() as AddressInfo).port;
  backend.kill = async () => {
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    for (const s of sockets) s.destroy();
    await closed;
  };
  return backend;
}
