import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { createServer, Socket, type Server } from 'node:net';
import { Readable } from 'node:stream';
import { text } from 'node:stream/consumers';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { UpstreamClient, UpstreamFailure, type UpstreamAddress, type UpstreamResponse } from '../../orchestrator/src/upstream/upstream-client.js';
import { upstreamOptions } from '../helpers/upstream.js';
import { waitFor } from '../helpers/wait-for.js';

/** A scripted container: a raw TCP server that answers each request head with whatever the test says. */
class ScriptedContainer {
  readonly requests: string[] = [];
  readonly sockets = new Set<Socket>();
  connections = 0;
  #server: Server;

  constructor(answer: (request: string, socket: Socket) => void) {
    this.#server = createServer((socket) => {
      this.connections++;
      this.sockets.add(socket);
      socket.on('close', () => this.sockets.delete(socket));
      let pending = '';
      socket.on('data', (chunk) => {
        pending += chunk.toString('latin1');
        for (;;) {
          const end = pending.indexOf('\r\n\r\n');
          if (end === -1) return;
          const length = Number(/content-length: (\d+)/i.exec(pending.slice(0, end))?.[1] ?? 0);
          if (pending.length < end + 4 + length) return;
          const request = pending.slice(0, end + 4 + length);
          pending = pending.slice(request.length);
          this.requests.push(request);
          answer(request, socket);
        }
      });
    });
  }

  async listen(): Promise<UpstreamAddress> {
    await new Promise<void>((resolve) => this.#server.listen(0, '127.0.0.1', resolve));
    const { port } = this.#server.address() as { port: number };
    return { id: `c${port}`, host: '127.0.0.1', port };
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise((resolve) => this.#server.close(resolve));
  }
}

const OK = 'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{"ok":true}';
const post = { method: 'POST', path: '/run_model?x=1', headers: { 'content-type': 'application/json', 'x-request-id': 'r1' }, body: Buffer.from('{"text":"hi"}') };

/** The client sockets this process opens from now on (Node's net diagnostics channel), until the test ends. */
function clientSockets(): Socket[] {
  const opened: Socket[] = [];
  const onSocket = (message: unknown): void => void opened.push((message as { socket: Socket }).socket);
  subscribe('net.client.socket', onSocket);
  unsubscribers.push(() => unsubscribe('net.client.socket', onSocket));
  return opened;
}

let client: UpstreamClient | undefined;
let containers: ScriptedContainer[] = [];
let unsubscribers: Array<() => void> = [];
afterEach(async () => {
  for (const stop of unsubscribers) stop();
  unsubscribers = [];
  await client?.close();
  for (const c of containers) await c.close();
  [client, containers] = [undefined, []];
});

async function scripted(answer: (request: string, socket: Socket) => void): Promise<{ server: ScriptedContainer; container: UpstreamAddress }> {
  const server = new ScriptedContainer(answer);
  containers.push(server);
  return { server, container: await server.listen() };
}

const failureOf = (promise: Promise<unknown>): Promise<UpstreamFailure> =>
  promise.then(
    () => expect.fail('the call should have failed'),
    (error: unknown) => {
      expect(error).toBeInstanceOf(UpstreamFailure);
      return error as UpstreamFailure;
    },
  );

describe('upstream client', () => {
  it('writes the request head and body as given, and reuses one connection for calls in sequence', async () => {
    const { server, container } = await scripted((_, socket) => socket.write(OK));
    client = new UpstreamClient(upstreamOptions({ timeoutMs: 2_000, connectTimeoutMs: 1_000 }));
    for (let i = 0; i < 3; i++) {
      const answer = await client.send(container, post);
      expect(answer.statusCode).toBe(200);
      expect(answer.headers['content-type']).toBe('application/json');
      expect(Buffer.isBuffer(answer.body) && answer.body.toString()).toBe('{"ok":true}');
    }
    expect(server.connections).toBe(1);
    expect(server.requests[0]).toBe(
      `POST /run_model?x=1 HTTP/1.1\r\nhost: 127.0.0.1:${container.port}\r\ncontent-type: application/json\r\nx-request-id: r1\r\ncontent-length: 13\r\n\r\n{"text":"hi"}`,
    );
  });

  it('writes the request before send returns when a connection is open (a freed container gets its next request at once)', async () => {
    const { server, container } = await scripted((_, socket) => socket.write(OK));
    client = new UpstreamClient(upstreamOptions({ timeoutMs: 2_000, connectTimeoutMs: 1_000 }));
    await client.send(container, post);
    const write = vi.spyOn(Socket.prototype, 'write');
    try {
      const next = client.send(container, post);
      expect(write).toHaveBeenCalledTimes(1);
      await next;
    } finally {
      write.mockRestore();
    }
    expect(server.connections).toBe(1);
  });

  it('keeps at most maxIdlePerAddress idle connections per address, closing the rest as they are freed', async () => {
    const waiting: Socket[] = [];
    let together = 2;
    const { server, container } = await scripted((_, socket) => {
      // The first two calls are in flight on their own connections before either is answered.
      waiting.push(socket);
      if (waiting.length === together) for (const s of waiting.splice(0)) s.write(OK);
    });
    client = new UpstreamClient(upstreamOptions({ maxIdlePerAddress: 1 }));
    await Promise.all([client.send(container, post), client.send(container, post)]);
    expect(server.connections).toBe(2);
    await waitFor(() => server.sockets.size === 1);
    // The one kept is reused.
    together = 1;
    await client.send(container, post);
    expect(server.connections).toBe(2);
  });

  it('opens a new connection after an answer that closes it, and after the container closed an idle one', async () => {
    let closeNext = true;
    const { server, container } = await scripted((_, socket) => {
      socket.write(closeNext ? 'HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok' : OK);
      if (closeNext) socket.end();
    });
    const opened = clientSockets();
    client = new UpstreamClient(upstreamOptions({ timeoutMs: 2_000, connectTimeoutMs: 1_000 }));
    expect((await client.send(container, post)).statusCode).toBe(200);
    closeNext = false;
    expect((await client.send(container, post)).statusCode).toBe(200);
    expect(server.connections).toBe(2);
    for (const s of server.sockets) s.end();
    // The client has seen the container close its idle connection.
    await waitFor(() => opened.length === 2 && opened.every((s) => s.closed));
    expect((await client.send(container, post)).statusCode).toBe(200);
    expect(server.connections).toBe(3);
  });

  it('streams an answer larger than the buffer, and reads a small one delimited by the close whole', async () => {
    const big = 'x'.repeat(200_000);
    const { container } = await scripted((request, socket) => {
      if (request.includes('/close')) socket.end('HTTP/1.0 200 OK\r\n\r\nuntil the close');
      else socket.write(`HTTP/1.1 200 OK\r\nContent-Length: ${big.length}\r\n\r\n${big}`);
    });
    client = new UpstreamClient(upstreamOptions({ timeoutMs: 2_000, connectTimeoutMs: 1_000, bufferBytes: 1024 }));
    const answer: UpstreamResponse = await client.send(container, post);
    expect(answer.body).toBeInstanceOf(Readable);
    expect(await text(answer.body as Readable)).toBe(big);
    const closing = await client.send(container, { ...post, path: '/close' });
    expect(Buffer.isBuffer(closing.body) && closing.body.toString()).toBe('until the close');
  });

  it('keeps each body chunk intact while later reads arrive, on this connection and on others (reads share one buffer)', async () => {
    // Each answer comes in two reads, 30 ms apart, with different bytes; two containers answer at the same time.
    const answerIn = (fill: string) => (_: string, socket: Socket) => {
      socket.write(`HTTP/1.1 200 OK\r\nContent-Length: 2000\r\n\r\n${fill.repeat(1000)}`);
      setTimeout(() => socket.write(fill.toUpperCase().repeat(1000)), 30);
    };
    const a = await scripted(answerIn('a'));
    const b = await scripted(answerIn('b'));
    client = new UpstreamClient(upstreamOptions({ timeoutMs: 2_000, connectTimeoutMs: 1_000 }));
    const [fromA, fromB] = await Promise.all([client.send(a.container, post), client.send(b.container, post)]);
    expect((fromA.body as Buffer).toString()).toBe(`${'a'.repeat(1000)}${'A'.repeat(1000)}`);
    expect((fromB.body as Buffer).toString()).toBe(`${'b'.repeat(1000)}${'B'.repeat(1000)}`);
  });

  it('tells a refused connection (never sent) from a container that closed mid-answer (sent)', async () => {
    const { container } = await scripted((_, socket) => socket.end('HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nabc'));
    client = new UpstreamClient(upstreamOptions({ timeoutMs: 2_000, connectTimeoutMs: 1_000 }));
    const cut = await failureOf(client.send(container, post));
    expect(cut).toMatchObject({ code: 'UPSTREAM_CLOSED', neverSent: false, timedOut: false });

    const gone = await scripted(() => {});
    await gone.server.close();
    const refused = await failureOf(client.send(gone.container, post));
    expect(refused).toMatchObject({ code: 'ECONNREFUSED', neverSent: true });
  });

  it('times out a container that accepts and never answers, and reports a broken answer', async () => {
    const { container } = await scripted((request, socket) => {
      if (request.includes('/broken')) socket.write('HTTP/1.1 200 OK\r\nContent-Length: nope\r\n\r\n');
    });
    client = new UpstreamClient(upstreamOptions({ timeoutMs: 200, connectTimeoutMs: 1_000 }));
    const hung = await failureOf(client.send(container, post));
    expect(hung).toMatchObject({ code: 'UPSTREAM_TIMEOUT', timedOut: true, neverSent: false });
    const broken = await failureOf(client.send(container, { ...post, path: '/broken' }));
    expect(broken).toMatchObject({ code: 'UPSTREAM_BAD_RESPONSE', neverSent: false });
    expect(broken.message).toMatch(/bad Content-Length/);
  });

  it('aborts a call on its signal (health probes)', async () => {
    const { container } = await scripted(() => {});
    client = new UpstreamClient(upstreamOptions({ timeoutMs: 5_000, connectTimeoutMs: 1_000 }));
    const aborted = await failureOf(client.send(container, { method: 'GET', path: '/health', headers: {}, body: undefined, signal: AbortSignal.timeout(100) }));
    expect(aborted.code).toBe('UPSTREAM_ABORTED');
    expect((aborted.cause as Error).name).toBe('TimeoutError');
  });

  it('refuses a header value that would split the request head, without writing anything', async () => {
    const { server, container } = await scripted((_, socket) => socket.write(OK));
    const opened = clientSockets();
    client = new UpstreamClient(upstreamOptions({ timeoutMs: 2_000, connectTimeoutMs: 1_000 }));
    await expect(client.send(container, { ...post, headers: { 'x-evil': 'a\r\nx-injected: 1' } })).rejects.toThrow(/line break/);
    // Not one byte left the client (written or queued for the connect), so none can reach the container.
    expect(opened.map((s) => s.bytesWritten)).toEqual(opened.map(() => 0));
    expect(server.requests).toEqual([]);
  });
});
