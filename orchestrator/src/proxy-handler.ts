import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Readable } from 'node:stream';
import { finished } from 'node:stream/promises';
import { TLSSocket } from 'node:tls';
import type { Logger } from '../../common/src/logger.js';
import type { Container, ContainerPool } from './container-pool.js';
import { PayloadTooLargeError } from '../../common/src/http-errors.js';
import { AppError } from '../../common/src/errors.js';
import { ClientGoneError, ContainerUnavailableError, QueueFullError, QueueShareExceededError, QueueTimeoutError, UpstreamTimeoutError } from './errors.js';
import { statusSentOn } from './client-errors.js';
import type { ClientWatch, RequestQueue } from './request-queue.js';
import type { RequestStats } from './request-stats.js';
import { endToEndHeaders, UpstreamFailure, type UpstreamClient, type UpstreamResponse } from './upstream/upstream-client.js';

export interface ProxyOptions {
  maxBodyBytes: number;
  maxAttempts: number;
  /** Upstream paths that may be resent after the container got them but failed to answer. */
  idempotentPaths: readonly string[];
  upstreamTimeoutMs: number;
  /** Consecutive 5xx answers that take a container out of rotation. */
  healthFall: number;
}

export interface ProxyDeps {
  pool: ContainerPool;
  queue: RequestQueue;
  upstream: UpstreamClient;
  log: Logger;
  options: ProxyOptions;
  /** Where every request is counted. */
  stats: RequestStats;
}

/**
 * Where a request goes on its container: a fixed path (with its query), or, for `POST
 * /new_request`, each container's own predict path (its worker's contract) with the client's query.
 */
export type UpstreamTarget = string | { readonly predictQuery: string };

/** How idempotentPaths names `POST /new_request`, whatever path its container predicts on. */
export const PREDICT_ROUTE = '/new_request';

/** One client exchange: its request, its response, and what the proxy notes about it. */
export interface Exchange {
  req: IncomingMessage;
  res: ServerResponse;
  /** Set once a container answered: its id (for the access log). */
  servedBy?: string;
  /** The name of the client key the request came with (keys configured), for its queue share, logs and metrics. */
  client?: string;
}

/** Response headers the orchestrator adds: who served, how long the request queued, its id. */
export const SERVED_BY_HEADER = 'x-served-by';
export const QUEUE_WAIT_HEADER = 'x-queue-wait-ms';
export const REQUEST_ID_HEADER = 'x-request-id';
/** The status counted for a request whose client left before its answer (nginx's convention). */
export const CLIENT_GONE_STATUS = 499;

/**
 * Forwards requests to containers: reads the body (bounded, so a failed attempt can be replayed),
 * waits for a container in the queue, sends, retries on another container when that is safe,
 * and streams the answer back. A container stays leased until it has answered, whatever the client does.
 */
export class ProxyHandler {
  readonly #deps: ProxyDeps;

  constructor(deps: ProxyDeps) {
    this.#deps = deps;
  }

  /**
   * Forward the exchange's request to `method target` on a free container and write the
   * answer. Throws a typed error before anything was written (the caller answers it), or
   * ClientGoneError when the client left.
   */
  async forward(ctx: Exchange, method: string, target: UpstreamTarget, requestId: string): Promise<void> {
    const { pool, queue, upstream, options, stats } = this.#deps;
    const { counters } = stats;
    const { res } = ctx;
    counters.accepted++;
    const startedAt = performance.now();
    stats.active++;
    let status = 0;
    try {
      const body = await readBody(ctx.req, options.maxBodyBytes);
      const clientGone = watchClient(res);
      const headers = forwardedHeaders(ctx.req, requestId, ctx.client !== undefined);
      const queuedAt = performance.now();
      let waitMs = 0;
      let lastFailure: UpstreamFailure | undefined;
      let attempts = 0;
      // Workers where this request failed: it is sent again elsewhere while another worker serves (a machine's containers often fail together).
      let failedOn: Set<string> | undefined;
      for (let attempt = 1; attempt <= options.maxAttempts; attempt++) {
        attempts = attempt;
        // The request is written the moment a container is leased: a container freed by an answer gets its next request
        // before that answer is passed on to its client.
        let sent!: Promise<UpstreamResponse>;
        let sentAt = 0;
        const container = await queue.acquire(ctx.client, clientGone, attempt > 1, (leased) => {
          sentAt = performance.now();
          sent = upstream.send(leased, { method, path: typeof target === 'string' ? target : leased.predictPath + target.predictQuery, headers, body });
        }, failedOn);
        if (attempt === 1) {
          waitMs = sentAt - queuedAt;
          stats.recorder?.queueWait(waitMs);
        }
        let response: UpstreamResponse;
        try {
          response = await sent;
        } catch (error) {
          const failure = error instanceof UpstreamFailure ? error : new UpstreamFailure(error);
          // Out of rotation before the slot is released, so the slot is not handed straight back to it.
          pool.markFailed(container, failure.message);
          pool.release(container, { error: failure.message });
          this.#deps.log.warn({ container: container.id, requestId, attempt, code: failure.code }, 'container failed a request');
          lastFailure = failure;
          (failedOn ??= new Set()).add(container.workerId);
          if (!failure.neverSent && !idempotent(options.idempotentPaths, target, container)) break;
          // A request whose client has left is not worth another container's time.
          if (clientLeft(res)) throw new ClientGoneError(failure);
          if (attempt < options.maxAttempts) counters.redispatched++;
          continue;
        }
        counters.completed++;
        stats.recorder?.upstream(performance.now() - sentAt);
        status = response.statusCode;
        pool.recordAnswer(container, response.statusCode, options.healthFall);
        const head = this.#responseHead(ctx, response, container, { waitMs, requestId, attempts: attempt });
        // A model's answer is usually small and already whole: free the container first, then answer in one write.
        if (Buffer.isBuffer(response.body)) {
          pool.release(container, 'served');
          if (res.writable && !res.destroyed) res.writeHead(response.statusCode, head).end(response.body);
        } else await this.#stream(res, response.statusCode, head, response.body, container);
        // The container answered: whatever happens to the client now, it was not turned away.
        if (clientLeft(res)) status = CLIENT_GONE_STATUS;
        stats.latencies.record(performance.now() - startedAt);
        return;
      }
      throw lastFailure?.timedOut
        ? new UpstreamTimeoutError(options.upstreamTimeoutMs, lastFailure)
        : new ContainerUnavailableError(attempts, lastFailure);
    } catch (error) {
      status = this.#countOutcome(ctx, error);
      throw error;
    } finally {
      stats.active--;
      stats.recorder?.request(typeof target === 'string' ? 'passthrough' : PREDICT_ROUTE, status, ctx.servedBy, ctx.client);
    }
  }

  /** Count how a request that did not get a container's answer ended; returns the status its client got (499: none). */
  #countOutcome(ctx: Exchange, error: unknown): number {
    const c = this.#deps.stats.counters;
    if (error instanceof UpstreamTimeoutError || error instanceof ContainerUnavailableError) c.failed++;
    else if (error instanceof QueueFullError || error instanceof QueueShareExceededError) c.rejected++;
    else if (error instanceof QueueTimeoutError) c.timedOut++;
    else {
      // The server itself may have answered the socket (408 for a body too slow, 400 for broken chunking).
      const answered = statusSentOn(ctx.req.socket);
      if (answered !== undefined) {
        c.refused++;
        return answered;
      }
      if (error instanceof ClientGoneError || clientLeft(ctx.res)) {
        c.cancelled++;
        return CLIENT_GONE_STATUS;
      }
      c.refused++;
    }
    return error instanceof AppError ? error.status : 500;
  }

  /** The answer's head for the client: the container's end-to-end headers, and who served it, after how long a wait, under which id. */
  #responseHead(ctx: Exchange, response: UpstreamResponse, container: Container, meta: { waitMs: number; requestId: string; attempts: number }): Record<string, string | string[]> {
    ctx.servedBy = container.id;
    const headers = endToEndHeaders(response.headers, 'response');
    headers[SERVED_BY_HEADER] = container.id;
    headers[QUEUE_WAIT_HEADER] = meta.waitMs.toFixed(1);
    headers[REQUEST_ID_HEADER] = meta.requestId;
    if (meta.attempts > 1) headers['x-attempts'] = String(meta.attempts);
    return headers;
  }

  /** Pass a streamed answer on as it comes; the container is done once its whole answer arrived, whatever the client reads. */
  async #stream(res: ServerResponse, statusCode: number, head: Record<string, string | string[]>, body: Readable, container: Container): Promise<void> {
    const { pool } = this.#deps;
    const answered = finished(body).then(
      () => pool.release(container, 'served'),
      (error: Error) => pool.release(container, { error: `response body: ${error.message}` }),
    );
    if (!res.writable || res.destroyed) {
      body.destroy();
      await answered;
      return;
    }
    res.writeHead(statusCode, head);
    // pipe, not pipeline: pipeline makes and aborts an AbortController per call, which shows in profiles.
    body.once('error', () => res.destroy());
    res.once('close', () => {
      // The client went away: stop reading; the lease is settled by `answered`.
      if (!res.writableFinished) body.destroy();
    });
    body.pipe(res);
    await answered;
  }
}

/** The client's connection closed before its answer was complete. */
const clientLeft = (res: ServerResponse): boolean => res.destroyed && !res.writableFinished;

/** The client leaving while its request waits: its connection closed before the answer was complete. */
function watchClient(res: ServerResponse): ClientWatch {
  return (gone) => {
    if (clientLeft(res)) {
      gone();
      return () => {};
    }
    const onClose = (): void => {
      if (!res.writableFinished) gone();
    };
    res.once('close', onClose);
    return () => res.off('close', onClose);
  };
}

const pathOnly = (path: string): string => {
  const q = path.indexOf('?');
  return q === -1 ? path : path.slice(0, q);
};

/** Whether a request sent to `c` may be sent again: its path is listed (a predict request also by PREDICT_ROUTE). */
const idempotent = (paths: readonly string[], target: UpstreamTarget, c: Container): boolean =>
  typeof target === 'string' ? paths.includes(pathOnly(target)) : paths.includes(PREDICT_ROUTE) || paths.includes(c.predictPath);

/** Read the whole body (bounded): a buffered body can be resent to another container. */
function readBody(req: IncomingMessage, limit: number): Promise<Buffer | undefined> {
  const declared = req.headers['content-length'];
  if (declared !== undefined && Number(declared) > limit) return Promise.reject(new PayloadTooLargeError(limit));
  if (declared === undefined && req.headers['transfer-encoding'] === undefined) return Promise.resolve(undefined);
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const onData = (chunk: Buffer): void => {
      size += chunk.length;
      if (size > limit) {
        cleanup();
        req.resume();
        reject(new PayloadTooLargeError(limit));
        return;
      }
      chunks.push(chunk);
    };
    const onEnd = (): void => {
      cleanup();
      resolve(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size));
    };
    // The only way a request stream fails is its client going away (or being sent away) mid-body.
    const onError = (error: Error): void => {
      cleanup();
      reject(new ClientGoneError(error));
    };
    const cleanup = (): void => {
      req.off('data', onData).off('end', onEnd).off('error', onError);
    };
    req.on('data', onData).once('end', onEnd).once('error', onError);
  });
}

/** The request's headers for its container; without the client key (`keyed`) it was let in with: a model that logs headers must never see one. */
function forwardedHeaders(req: IncomingMessage, requestId: string, keyed: boolean): Record<string, string | string[]> {
  const headers = endToEndHeaders(req.headers, 'request');
  if (keyed) delete headers.authorization;
  const client = req.socket.remoteAddress ?? 'unknown';
  const prior = req.headers['x-forwarded-for'];
  headers['x-forwarded-for'] = prior ? `${String(prior)}, ${client}` : client;
  if (req.headers.host) headers['x-forwarded-host'] = req.headers.host;
  headers['x-forwarded-proto'] = req.socket instanceof TLSSocket ? 'https' : 'http';
  headers[REQUEST_ID_HEADER] = requestId;
  return headers;
}
