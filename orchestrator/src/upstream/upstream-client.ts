import type { IncomingHttpHeaders } from 'node:http';
import { Readable } from 'node:stream';
import type { OrchestratorConfig } from '../config.js';
import type { ResponseHeaders } from './http1-response-parser.js';
import { UpstreamConnection, UpstreamFailure, type CallSink, type ConnectionOptions, type UpstreamRequest } from './upstream-connection.js';

export { UpstreamFailure, type UpstreamRequest } from './upstream-connection.js';

/** A container's answer: whole when it was small, otherwise a stream that ends when the container has sent all of it. */
export interface UpstreamResponse {
  statusCode: number;
  headers: ResponseHeaders;
  body: Buffer | Readable;
}

/** Where a call goes: any object with an id (connections are kept per id), a host and a port; a pool's container is one. */
export interface UpstreamAddress {
  readonly id: string;
  readonly host: string;
  readonly port: number;
}

/** The client's limits; the orchestrator takes each from its config (see config.ts for the defaults and why). */
export interface UpstreamClientOptions extends ConnectionOptions {
  /** Answers up to this size, in bytes, are read whole before `send` resolves; larger ones are streamed. */
  bufferBytes: number;
  /** Idle keep-alive connections kept per address; one more freed is closed. */
  maxIdlePerAddress: number;
}

/** The client's options from the orchestrator's config. */
export const upstreamOptionsFrom = (config: OrchestratorConfig): UpstreamClientOptions => ({
  timeoutMs: config.upstreamTimeoutMs,
  connectTimeoutMs: config.connectTimeoutMs,
  idleTimeoutMs: config.upstreamIdleTimeoutMs,
  maxIdlePerAddress: config.upstreamMaxIdlePerContainer,
  bufferBytes: config.upstreamBufferBytes,
  maxHeadBytes: config.upstreamMaxHeadBytes,
  maxLineBytes: config.upstreamMaxLineBytes,
});

interface Connections {
  idle: UpstreamConnection[];
  all: Set<UpstreamConnection>;
}

/**
 * Keep-alive connections per address, so the hot path never opens one it can reuse. A container
 * serves one request per slot, so it holds one connection per request slot plus one for probes.
 */
export class UpstreamClient {
  readonly #byAddress = new Map<string, Connections>();
  readonly #options: UpstreamClientOptions;

  constructor(options: UpstreamClientOptions) {
    this.#options = { ...options };
  }

  /**
   * Send one request. The request is written before this returns when a connection is open, so
   * the caller can rely on the order of its calls. Rejects with UpstreamFailure.
   */
  send(address: UpstreamAddress, request: UpstreamRequest): Promise<UpstreamResponse> {
    return new Promise((resolve, reject) => {
      const { signal } = request;
      if (signal?.aborted) {
        reject(new UpstreamFailure(signal.reason, 'UPSTREAM_ABORTED'));
        return;
      }
      const connection = this.#connectionTo(address);
      const bufferBytes = this.#options.bufferBytes;
      let statusCode = 0;
      let headers: ResponseHeaders = {};
      let chunks: Buffer[] = [];
      let size = 0;
      let stream: Readable | undefined;
      let done = false;
      const onAbort = (): void => connection.destroy(new UpstreamFailure(signal!.reason, 'UPSTREAM_ABORTED'));
      const settle = (): void => {
        done = true;
        signal?.removeEventListener('abort', onAbort);
      };
      // Past the buffer size, the answer is passed on as it comes, read as fast as its reader reads.
      const startStreaming = (): void => {
        stream = new Readable({
          read: () => connection.resume(),
          destroy: (error, callback) => {
            if (!done) connection.destroy(new UpstreamFailure(error ?? new Error('the reader stopped reading'), 'UPSTREAM_ABORTED'));
            callback(error);
          },
        });
        for (const chunk of chunks) stream.push(chunk);
        chunks = [];
        resolve({ statusCode, headers, body: stream });
      };
      const sink: CallSink = {
        head: (head) => {
          statusCode = head.statusCode;
          headers = head.headers;
          if (head.bodyLength !== null && head.bodyLength > bufferBytes) startStreaming();
        },
        body: (chunk) => {
          if (stream) {
            if (!stream.push(chunk)) connection.pause();
            return;
          }
          chunks.push(chunk);
          size += chunk.length;
          if (size > bufferBytes) startStreaming();
        },
        complete: () => {
          settle();
          if (stream) stream.push(null);
          else resolve({ statusCode, headers, body: chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size) });
        },
        fail: (error) => {
          settle();
          if (stream) stream.destroy(error);
          else reject(error);
        },
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      try {
        connection.send(request, sink);
      } catch (error) {
        settle();
        connection.destroy(new UpstreamFailure(error, 'UPSTREAM_BAD_REQUEST'));
        reject(error);
      }
    });
  }

  #connectionTo(address: UpstreamAddress): UpstreamConnection {
    let connections = this.#byAddress.get(address.id);
    if (!connections) {
      connections = { idle: [], all: new Set() };
      this.#byAddress.set(address.id, connections);
    }
    // Most recently used first: the others then idle out, so a container keeps only the connections it needs.
    const reused = connections.idle.pop();
    if (reused) return reused;
    const owner = connections;
    const { maxIdlePerAddress } = this.#options;
    const connection = new UpstreamConnection(address.host, address.port, this.#options, {
      idle: (c) => {
        if (owner.idle.length < maxIdlePerAddress) owner.idle.push(c);
        else c.destroy(new UpstreamFailure(new Error(`more than ${maxIdlePerAddress} idle connections`), 'UPSTREAM_IDLE'));
      },
      closed: (c) => {
        owner.all.delete(c);
        const i = owner.idle.indexOf(c);
        if (i !== -1) owner.idle.splice(i, 1);
      },
    });
    owner.all.add(connection);
    return connection;
  }

  /** Drop an address's connections (its container was removed or replaced); calls under way on them fail. */
  async forget(id: string): Promise<void> {
    const connections = this.#byAddress.get(id);
    this.#byAddress.delete(id);
    for (const c of [...(connections?.all ?? [])]) c.destroy(new UpstreamFailure(new Error('the container was removed'), 'UPSTREAM_CLOSED'));
  }

  async close(): Promise<void> {
    for (const id of [...this.#byAddress.keys()]) await this.forget(id);
  }
}

/** Headers that describe one connection, not the message (RFC 9110 §7.6.1): never forwarded. */
const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'proxy-authenticate',
  'proxy-authorization',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
]);

/** Request headers the upstream connection sets itself from the container's address and the buffered body. */
const REQUEST_ONLY = new Set(['expect', 'host', 'content-length']);

/**
 * Copy headers without hop-by-hop ones, including those the `Connection` header names; for a
 * request also without those the upstream client sets itself. Names are lower-case already, as
 * Node's request parser and the response parser give them.
 */
export function endToEndHeaders(headers: IncomingHttpHeaders | ResponseHeaders, direction: 'request' | 'response'): Record<string, string | string[]> {
  const connection = headers.connection;
  // `Connection: keep-alive` or `close` names no other header: most messages skip the split.
  const named = connection === undefined || connection === 'keep-alive' || connection === 'close' ? undefined : namesIn(connection);
  const out: Record<string, string | string[]> = {};
  for (const name in headers) {
    const value = headers[name];
    if (value === undefined || HOP_BY_HOP.has(name) || named?.includes(name) || (direction === 'request' && REQUEST_ONLY.has(name))) continue;
    out[name] = value;
  }
  return out;
}

const namesIn = (connection: string | string[]): string[] =>
  String(connection)
    .split(',')
    .map((h) => h.trim().toLowerCase())
    .filter(Boolean);
