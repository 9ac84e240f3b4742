import type { IncomingHttpHeaders } from 'node:http';
import { Pool, type Dispatcher } from 'undici';
import type { Container } from './container-pool.js';

export interface UpstreamRequest {
  method: string;
  /** Path with query string. */
  path: string;
  headers: Record<string, string | string[]>;
  body: Buffer | undefined;
  /** Aborts the upstream call (for health probes; never for client requests, see proxy-handler). */
  signal?: AbortSignal;
}

export type UpstreamResponse = Dispatcher.ResponseData;

/** Why a call to a container failed before its answer began. */
export class UpstreamFailure extends Error {
  /** True when the request provably never reached the container (connection refused or not made). */
  readonly neverSent: boolean;
  /** True when the container did not answer in time. */
  readonly timedOut: boolean;
  readonly code: string;

  constructor(cause: unknown) {
    const code = String((cause as { code?: unknown })?.code ?? 'UNKNOWN');
    super(`${code}: ${(cause as Error)?.message ?? String(cause)}`, { cause });
    this.name = 'UpstreamFailure';
    this.code = code;
    this.neverSent = CONNECT_ERRORS.has(code);
    this.timedOut = code === 'UND_ERR_HEADERS_TIMEOUT' || code === 'UND_ERR_BODY_TIMEOUT';
  }
}

const CONNECT_ERRORS = new Set(['ECONNREFUSED', 'UND_ERR_CONNECT_TIMEOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'EADDRNOTAVAIL', 'ENOTFOUND']);

export interface UpstreamClientOptions {
  /** Longest wait for response headers, and between body chunks, in ms. */
  timeoutMs: number;
  /** Longest wait to open a connection, in ms. */
  connectTimeoutMs: number;
}

/** Keep-alive connection pools, one per container, so the hot path never opens a connection it can reuse. */
export class UpstreamClient {
  readonly #pools = new Map<string, Pool>();
  readonly #options: UpstreamClientOptions;

  constructor(options: UpstreamClientOptions) {
    this.#options = options;
  }

  #poolFor(container: Container): Pool {
    let pool = this.#pools.get(container.id);
    if (!pool) {
      pool = new Pool(container.origin, {
        // One connection per request slot, plus one so a health probe never waits behind a request.
        connections: container.limit + 1,
        pipelining: 1,
        headersTimeout: this.#options.timeoutMs,
        bodyTimeout: this.#options.timeoutMs,
        connect: { timeout: this.#options.connectTimeoutMs },
      });
      this.#pools.set(container.id, pool);
    }
    return pool;
  }

  /** Send one request; resolves when the response headers arrive. Throws UpstreamFailure. */
  async send(container: Container, request: UpstreamRequest): Promise<UpstreamResponse> {
    try {
      return await this.#poolFor(container).request({
        method: request.method as Dispatcher.HttpMethod,
        path: request.path,
        headers: request.headers,
        body: request.body ?? null,
        signal: request.signal,
      });
    } catch (error) {
      throw new UpstreamFailure(error);
    }
  }

  /** Drop a container's connections (it was removed or replaced). */
  async forget(containerId: string): Promise<void> {
    const pool = this.#pools.get(containerId);
    this.#pools.delete(containerId);
    await pool?.destroy();
  }

  async close(): Promise<void> {
    const pools = [...this.#pools.values()];
    this.#pools.clear();
    await Promise.all(pools.map((p) => p.close()));
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

/** Request headers undici sets itself from the container's origin and the buffered body. */
const REQUEST_ONLY = new Set(['expect', 'host', 'content-length']);

/**
 * Copy headers without hop-by-hop ones, including those the `Connection` header names; for a
 * request also without those the upstream client sets itself.
 */
export function endToEndHeaders(
  headers: IncomingHttpHeaders | Record<string, string | string[] | undefined>,
  direction: 'request' | 'response',
): Record<string, string | string[]> {
  const named = String(headers.connection ?? '')
    .split(',')
    .map((h) => h.trim().toLowerCase())
    .filter(Boolean);
  const out: Record<string, string | string[]> = {};
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined) continue;
    const lower = name.toLowerCase();
    if (HOP_BY_HOP.has(lower) || named.includes(lower) || (direction === 'request' && REQUEST_ONLY.has(lower))) continue;
    out[lower] = value;
  }
  return out;
}
