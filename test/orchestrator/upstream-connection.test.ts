import { spawn, type ChildProcess } from 'node:child_process';
import { createServer as createHttpServer, type Server as HttpServer, type ServerResponse } from 'node:http';
import { connect, createServer as createTcpServer, type AddressInfo, type Server as TcpServer, type Socket } from 'node:net';
import { createInterface } from 'node:readline';
import { afterEach, describe, expect, it } from 'vitest';
import type { ResponseHead } from '../../orchestrator/src/upstream/http1-response-parser.js';
import { UpstreamConnection, UpstreamFailure, type CallSink, type ConnectionOptions } from '../../orchestrator/src/upstream/upstream-connection.js';
import { waitFor } from '../helpers/wait-for.js';

const OPTIONS: ConnectionOptions = { timeoutMs: 20_000, connectTimeoutMs: 1_000, idleTimeoutMs: 60_000, maxHeadBytes: 64 * 1024, maxLineBytes: 8 * 1024 };
const GET = { method: 'GET', path: '/', headers: {}, body: undefined };

/** What one call reported to its sink, and the connection's events. */
interface Recorded {
  heads: ResponseHead[];
  received: number;
  completed: boolean;
  failure: UpstreamFailure | undefined;
  idle: number;
  closed: boolean;
  /** Settles when the call completes or fails. */
  done: Promise<void>;
  sink: CallSink;
}

function recorder(onBody: (chunk: Buffer) => void = () => {}): Recorded {
  let settle!: () => void;
  const r: Recorded = {
    heads: [],
    received: 0,
    completed: false,
    failure: undefined,
    idle: 0,
    closed: false,
    done: new Promise<void>((resolve) => (settle = resolve)),
    sink: {
      head: (head) => r.heads.push(head),
      body: (chunk) => {
        r.received += chunk.length;
        onBody(chunk);
      },
      complete: () => {
        r.completed = true;
        settle();
      },
      fail: (error) => {
        r.failure = error;
        settle();
      },
    },
  };
  return r;
}

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** Open a connection whose events land in `r`; closed at the end of the test. */
function open(port: number, r: Recorded, options: Partial<ConnectionOptions> = {}): UpstreamConnection {
  const connection = new UpstreamConnection('127.0.0.1', port, { ...OPTIONS, ...options }, { idle: () => r.idle++, closed: () => (r.closed = true) });
  cleanups.push(() => connection.destroy(new UpstreamFailure(new Error('test over'), 'UPSTREAM_CLOSED')));
  return connection;
}

/** A real HTTP server on 127.0.0.1:0 answering with `handler`; its open sockets are counted. */
async function httpServer(handler: (res: ServerResponse) => void): Promise<{ server: HttpServer; port: number; sockets: Set<Socket> }> {
  const sockets = new Set<Socket>();
  const server = createHttpServer((_req, res) => handler(res));
  server.keepAliveTimeout = 60_000;
  server.on('connection', (socket: Socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  cleanups.push(() => new Promise((resolve) => server.close(resolve)), () => server.closeAllConnections());
  return { server, port: (server.address() as AddressInfo).port, sockets };
}

/**
 * A stand-in container speaking raw TCP: a real HTTP server cannot be made to send a malformed
 * answer, or bytes while no request is open. `answer` is called once a connection's request arrives.
 */
async function rawServer(answer: (socket: Socket) => void): Promise<number> {
  const sockets = new Set<Socket>();
  const server: TcpServer = createTcpServer((socket) => {
    sockets.add(socket);
    socket.once('data', () => answer(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  cleanups.push(() => {
    for (const s of sockets) s.destroy();
    return new Promise((resolve) => server.close(resolve));
  });
  return (server.address() as AddressInfo).port;
}

/**
 * A stand-in that takes no connection: a listening socket with a backlog of 0 that never accepts,
 * its one queue slot taken, so the kernel leaves further SYNs unanswered. Node's own servers accept
 * every connection, and any address outside 127.0.0.0/8 is off limits here, so Python holds it.
 */
async function unansweredPort(): Promise<number> {
  const child: ChildProcess = spawn('python3', ['-c', "import socket,sys\ns=socket.socket()\ns.bind(('127.0.0.1',0))\ns.listen(0)\nprint(s.getsockname()[1],flush=True)\nsys.stdin.read()"], {
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  cleanups.push(() => child.kill());
  const [line] = await createInterface({ input: child.stdout! })[Symbol.asyncIterator]().next().then((r) => [r.value as string]);
  const port = Number(line);
  // Take the one slot of the accept queue.
  const filler = connect(port, '127.0.0.1');
  cleanups.push(() => filler.destroy());
  await new Promise<void>((resolve, reject) => filler.once('connect', resolve).once('error', reject));
  return port;
}

describe('an upstream connection', () => {
  it('fails a call with UPSTREAM_CONNECT_TIMEOUT (never sent) when no connection opens within connectTimeoutMs, and closes', async () => {
    const port = await unansweredPort();
    const r = recorder();
    open(port, r, { connectTimeoutMs: 200 }).send(GET, r.sink);
    await r.done;
    expect(r.failure).toMatchObject({ code: 'UPSTREAM_CONNECT_TIMEOUT', neverSent: true, timedOut: false });
    expect(r.closed).toBe(true);
  });

  it('reports idle after a kept-alive answer, then closes itself after idleTimeoutMs of idleness', async () => {
    const { port, sockets } = await httpServer((res) => res.end('ok'));
    const r = recorder();
    const connection = open(port, r, { idleTimeoutMs: 150 });
    connection.send(GET, r.sink);
    await r.done;
    expect(r.completed).toBe(true);
    expect(r.idle).toBe(1);
    expect(connection.idle).toBe(true);
    expect(sockets.size).toBe(1);
    // Idle past idleTimeoutMs: closed from this side, before the server's own keep-alive timeout (60 s here).
    await waitFor(() => r.closed && sockets.size === 0);
    expect(connection.idle).toBe(false);
  });

  it('is not reused after an answer that closes the connection', async () => {
    const { port } = await httpServer((res) => res.setHeader('connection', 'close').end('bye'));
    const r = recorder();
    const connection = open(port, r);
    connection.send(GET, r.sink);
    await r.done;
    expect(r).toMatchObject({ completed: true, idle: 0, closed: true });
    expect(() => connection.send(GET, recorder().sink)).toThrow(/one call at a time/);
  });

  it('stops reading while paused, so the container is held back by TCP, and delivers every byte once resumed', async () => {
    const total = 16 * 1024 * 1024;
    const chunk = Buffer.alloc(64 * 1024, 'x');
    let blocked = false;
    let sent = 0;
    const { port } = await httpServer((res) => {
      res.writeHead(200, { 'content-length': total });
      const pump = (): void => {
        while (sent < total) {
          sent += chunk.length;
          if (!res.write(chunk)) {
            blocked = true;
            res.once('drain', () => {
              blocked = false;
              pump();
            });
            return;
          }
        }
        res.end();
      };
      pump();
    });
    let connection!: UpstreamConnection;
    let holding = true;
    const r = recorder(() => holding && connection.pause());
    connection = open(port, r);
    connection.send(GET, r.sink);
    // Paused at the first chunk: the socket buffers fill and the server's writes stop.
    await waitFor(() => r.received > 0 && blocked);
    const receivedWhilePaused = r.received;
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(blocked).toBe(true);
    expect(r.received).toBe(receivedWhilePaused);
    expect(r.received).toBeLessThan(total);
    expect(sent).toBeLessThan(total);

    // Resumed for good: the rest flows and the call completes.
    holding = false;
    connection.resume();
    await r.done;
    expect(r.completed).toBe(true);
    expect(r.received).toBe(total);
  });

  it('fails a malformed answer with UPSTREAM_BAD_RESPONSE (sent) and closes the connection', async () => {
    const port = await rawServer((socket) => socket.write('HTTP/1.1 20 OK\r\ncontent-length: 0\r\n\r\n'));
    const r = recorder();
    open(port, r).send(GET, r.sink);
    await r.done;
    expect(r.failure).toMatchObject({ code: 'UPSTREAM_BAD_RESPONSE', neverSent: false });
    expect(r.closed).toBe(true);
  });

  it('fails an answer whose head is larger than maxHeadBytes, and one whose chunk line is longer than maxLineBytes', async () => {
    const { port } = await httpServer((res) => res.setHeader('x-big', 'y'.repeat(2_000)).end('ok'));
    const big = recorder();
    open(port, big, { maxHeadBytes: 1_024 }).send(GET, big.sink);
    await big.done;
    expect(big.failure).toMatchObject({ code: 'UPSTREAM_BAD_RESPONSE' });
    expect(big.failure!.message).toMatch(/head over 1024 bytes/);

    const chunked = await rawServer((socket) => socket.write(`HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2;${'e'.repeat(200)}\r\nok\r\n0\r\n\r\n`));
    const long = recorder();
    open(chunked, long, { maxLineBytes: 128 }).send(GET, long.sink);
    await long.done;
    expect(long.failure).toMatchObject({ code: 'UPSTREAM_BAD_RESPONSE' });
    expect(long.failure!.message).toMatch(/line over 128 bytes/);
  });

  it('closes a connection the container sends bytes on while no request is open', async () => {
    const port = await rawServer((socket) => {
      socket.write('HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok');
      setTimeout(() => socket.write('HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n'), 50);
    });
    const r = recorder();
    const connection = open(port, r);
    connection.send(GET, r.sink);
    await r.done;
    expect(r).toMatchObject({ completed: true, idle: 1 });
    // Taken for the answer to the next request, it would be answered by a stranger: the connection goes.
    await waitFor(() => r.closed);
    expect(connection.idle).toBe(false);
  });
});
