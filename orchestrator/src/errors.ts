import { AppError } from '../../common/src/errors.js';

/** The queue is at `maxQueue`: 503 with Retry-After. */
export class QueueFullError extends AppError {
  constructor(maxQueue: number) {
    super('QUEUE_FULL', `all containers are busy and the queue is full (${maxQueue} waiting); retry later`, { status: 503, expose: true });
  }
}

/** Waited longer than `queueTimeoutMs` for a container: 504. */
export class QueueTimeoutError extends AppError {
  constructor(waitedMs: number) {
    super('QUEUE_TIMEOUT', `no container became free within ${waitedMs} ms`, { status: 504, expose: true });
  }
}

/** The orchestrator is shutting down and takes no new requests: 503. */
export class ShuttingDownError extends AppError {
  constructor() {
    super('SHUTTING_DOWN', 'the orchestrator is shutting down', { status: 503, expose: true });
  }
}

/** The inventory has no container at all: 503. */
export class NoContainersError extends AppError {
  constructor() {
    super('NO_CONTAINERS', 'no containers are registered; provision workers first', { status: 503, expose: true });
  }
}

/** The client went away (mid-body or while its request waited); nothing is sent to it. */
export class ClientGoneError extends AppError {
  constructor(cause?: unknown) {
    super('CLIENT_GONE', 'client disconnected before its answer', { status: 499, cause });
  }
}

/** Every attempt on a container failed before it answered: 502. */
export class ContainerUnavailableError extends AppError {
  constructor(attempts: number, cause: unknown) {
    super('CONTAINER_UNAVAILABLE', `the request failed on ${attempts} container(s) before any answered`, { status: 502, expose: true, cause });
  }
}

/** The container took longer than `upstreamTimeoutMs` to answer: 504. */
export class UpstreamTimeoutError extends AppError {
  constructor(timeoutMs: number, cause: unknown) {
    super('UPSTREAM_TIMEOUT', `the container did not answer within ${timeoutMs} ms`, { status: 504, expose: true, cause });
  }
}

/** The inventory cannot be used (missing or empty). */
export class InventoryError extends AppError {
  constructor(message: string) {
    super('INVENTORY_INVALID', message, { expose: true });
  }
}

/** No worker has room (container cap or port range) for another container. */
export class NoPlacementError extends AppError {
  constructor() {
    super('NO_PLACEMENT', 'no worker has room for another container (per-worker maximum or port range reached, or every worker down)', { status: 409, expose: true });
  }
}

/** A worker's runtime did not say what runs on it within workerCheckTimeoutMs. */
export class WorkerCheckTimeoutError extends AppError {
  constructor(workerId: string, timeoutMs: number) {
    super('WORKER_CHECK_TIMEOUT', `the runtime of worker ${workerId} did not answer within ${timeoutMs} ms`);
  }
}

/** Admin endpoints without a configured token. */
export class AdminDisabledError extends AppError {
  constructor() {
    super('ADMIN_DISABLED', 'the admin API is off: set adminToken (ORCH_ADMIN_TOKEN) to enable it', { status: 403, expose: true });
  }
}

/** Missing or wrong admin token. */
export class UnauthorizedError extends AppError {
  constructor() {
    super('UNAUTHORIZED', 'the admin API needs the header Authorization: Bearer <adminToken>', { status: 401, expose: true });
  }
}

/** A route that needs a client key got none, a malformed one, or one that is not (or no longer) configured: 401. */
export class KeyRequiredError extends AppError {
  constructor(scope: 'infer' | 'read') {
    super('UNAUTHORIZED', `this route needs a client key${scope === 'read' ? ' with the read scope' : ''}: Authorization: Bearer <key>`, { status: 401, expose: true });
  }
}

/** A valid client key without the scope the route needs: 403. */
export class ScopeForbiddenError extends AppError {
  constructor(scope: 'infer' | 'read') {
    super('FORBIDDEN', `this client key does not have the ${scope} scope this route needs`, { status: 403, expose: true });
  }
}

/** A client key past its rate (its token bucket is empty): 429 with Retry-After. */
export class RateLimitedError extends AppError {
  constructor(ratePerSecond: number, burst: number, retryAfterSeconds: number) {
    super('RATE_LIMITED', `this client key is over its rate of ${ratePerSecond} requests per second (burst ${burst}); retry after ${retryAfterSeconds} s`, {
      status: 429,
      expose: true,
      retryAfterSeconds,
    });
  }
}

/** An admin request with a bad body or a value out of bounds. */
export class BadRequestError extends AppError {
  constructor(message: string) {
    super('BAD_REQUEST', message, { status: 400, expose: true });
  }
}

/** An admin request that conflicts with the container's state (unmanaged, already going). */
export class ConflictError extends AppError {
  constructor(message: string) {
    super('CONFLICT', message, { status: 409, expose: true });
  }
}

/** `maxDashboardViewers` dashboard streams are already open: 503 with Retry-After. */
export class TooManyViewersError extends AppError {
  constructor(maxViewers: number) {
    super('TOO_MANY_VIEWERS', `the dashboard already has ${maxViewers} open streams (maxDashboardViewers); retry later`, { status: 503, expose: true });
  }
}

/** Workers cannot be launched or released here: the state file records no provisioning config to make them with. */
export class MachinesUnavailableError extends AppError {
  constructor() {
    super('MACHINES_UNAVAILABLE', 'this orchestrator cannot launch or release workers: its state file records no provisioning config (run `npm run provision` first)', { status: 409, expose: true });
  }
}

/** A client key already has its share of the queue waiting (clientQueueShare of maxQueue): 429 with Retry-After. */
export class QueueShareExceededError extends AppError {
  constructor(limit: number) {
    super('QUEUE_SHARE_EXCEEDED', `this client key already has ${limit} requests waiting, its share of the queue (clientQueueShare); retry later`, {
      status: 429,
      expose: true,
      retryAfterSeconds: 1,
    });
  }
}

/** tlsCertFile or tlsKeyFile cannot be served: unreadable, not PEM, not a pair, or a weak key. */
export class TlsInvalidError extends AppError {
  constructor(message: string, cause?: unknown) {
    super('TLS_INVALID', message, { cause });
  }
}
