import { LatencyWindow } from './latency-window.js';

/**
 * Lifetime counts of forwarded requests. Every accepted request ends in exactly one outcome, so
 * `accepted` = completed + failed + rejected + timedOut + cancelled + refused + `active`.
 */
export interface RequestCounters {
  accepted: number;
  /** A container answered (whatever the client then did with the answer). */
  completed: number;
  /** Every attempt failed: 502 CONTAINER_UNAVAILABLE or 504 UPSTREAM_TIMEOUT. */
  failed: number;
  /** The queue was full, or the client key's share of it: 503 QUEUE_FULL or 429 QUEUE_SHARE_EXCEEDED. */
  rejected: number;
  /** No container was free within queueTimeoutMs: 504 QUEUE_TIMEOUT. */
  timedOut: number;
  /** The client left before a container answered (while sending its body or waiting): nothing sent. */
  cancelled: number;
  /** Answered with an error before it could wait for a container: a body too large, too slow or malformed, shutting down, no containers. */
  refused: number;
  /** Requests sent again to another container after theirs failed (not an outcome). */
  redispatched: number;
}

/** What is told of each request as it happens: cheap calls on the hot path (the Prometheus metrics listen). */
export interface RequestRecorder {
  /** One finished request: its route, the status its client got (499: the client left), the container that answered, and the client key's name (keys configured). */
  request(route: string, status: number, container: string | undefined, client: string | undefined): void;
  queueWait(ms: number): void;
  upstream(ms: number): void;
}

/**
 * What the request path counts, kept apart from it: the proxy writes here, observers (metrics,
 * status file, dashboard, autoscaler, shutdown) read here, and none of them imports the proxy.
 */
export class RequestStats {
  readonly counters: RequestCounters = { accepted: 0, completed: 0, failed: 0, rejected: 0, timedOut: 0, cancelled: 0, refused: 0, redispatched: 0 };
  /** End-to-end latency (queue wait included) of answered requests. */
  readonly latencies = new LatencyWindow();
  /** Requests accepted and not yet finished (graceful shutdown waits for zero). */
  active = 0;
  /** Who is told of each request as it happens (the metrics), if anyone. */
  recorder: RequestRecorder | undefined;
}
