import PQueue from 'p-queue';
import type { Container, ContainerPool } from './container-pool.js';
import { ClientGoneError, NoContainersError, QueueFullError, QueueTimeoutError, ShuttingDownError } from './errors.js';

export interface RequestQueueOptions {
  /** Requests that may wait; past it, QueueFullError. */
  maxQueue: number;
  /** Longest wait for a container, in ms; past it, QueueTimeoutError. */
  queueTimeoutMs: number;
  now?: () => number;
}

/** Lifetime counts of what happened to requests that asked for a container. */
export interface QueueCounters {
  queued: number;
  rejected: number;
  timedOut: number;
  cancelled: number;
}

/** Priority of a request sent again after its container failed: ahead of everything still waiting. */
const REDISPATCH_PRIORITY = 1;

/**
 * The FIFO wait for a free container. A request takes a free container at once when nobody waits;
 * otherwise it queues in a p-queue of concurrency 1 whose running task is the head of the line
 * waiting on the pool, so order is strict FIFO (redispatches first) and the next container to free
 * up goes to the oldest request.
 */
export class RequestQueue {
  readonly #pool: ContainerPool;
  readonly #queue = new PQueue({ concurrency: 1 });
  readonly #options: RequestQueueOptions;
  readonly #now: () => number;
  /** Enqueue times of the waiting requests, in arrival order (a Map keeps insertion order). */
  readonly #waiting = new Map<object, number>();
  #closed = false;
  readonly counters: QueueCounters = { queued: 0, rejected: 0, timedOut: 0, cancelled: 0 };

  constructor(pool: ContainerPool, options: RequestQueueOptions) {
    this.#pool = pool;
    this.#options = options;
    this.#now = options.now ?? performance.now.bind(performance);
  }

  /** Requests waiting for a container. */
  get length(): number {
    return this.#waiting.size;
  }

  /** How long the oldest waiting request has waited, in ms. */
  oldestWaitMs(): number {
    for (const since of this.#waiting.values()) return this.#now() - since;
    return 0;
  }

  /** Refuse new requests from now on (already queued ones keep their place). */
  close(): void {
    this.#closed = true;
  }

  /**
   * Get a container for one request. `clientSignal` aborts when the client disconnects: a queued
   * request then leaves the queue (a function is only called when the request has to wait).
   * `redispatch` puts a request whose container failed at the front, past the bound (it was
   * already accepted). `onLease` runs synchronously the moment the container is leased, so the
   * caller can start using it before anything else runs.
   */
  async acquire(clientSignal: AbortSignal | (() => AbortSignal), redispatch = false, onLease?: (container: Container) => void): Promise<Container> {
    if (this.#closed && !redispatch) throw new ShuttingDownError();
    if (this.#pool.size === 0) throw new NoContainersError();
    if (this.#queue.size === 0 && this.#queue.pending === 0) {
      const free = this.#pool.tryAcquire();
      if (free) {
        onLease?.(free);
        return free;
      }
    }
    if (!redispatch && this.#waiting.size >= this.#options.maxQueue) {
      this.counters.rejected++;
      throw new QueueFullError(this.#options.maxQueue);
    }
    const signal = typeof clientSignal === 'function' ? clientSignal() : clientSignal;
    signal.throwIfAborted();
    return this.#enqueue(signal, redispatch, onLease);
  }

  async #enqueue(clientSignal: AbortSignal, redispatch: boolean, onLease: ((container: Container) => void) | undefined): Promise<Container> {
    const token = {};
    const since = this.#now();
    const abort = new AbortController();
    const onClientGone = (): void => abort.abort(new ClientGoneError());
    clientSignal.addEventListener('abort', onClientGone, { once: true });
    const timer = setTimeout(() => abort.abort(new QueueTimeoutError(Math.round(this.#now() - since))), this.#options.queueTimeoutMs);
    this.#waiting.set(token, since);
    this.counters.queued++;
    try {
      // Once leased, the container is the request's even if its client leaves now: the caller may already have used it.
      return await this.#queue.add(({ signal }) => this.#pool.waitForFree(signal!, onLease), {
        signal: abort.signal,
        priority: redispatch ? REDISPATCH_PRIORITY : 0,
      });
    } catch (error) {
      if (error instanceof QueueTimeoutError) this.counters.timedOut++;
      else if (error instanceof ClientGoneError) this.counters.cancelled++;
      throw error;
    } finally {
      clearTimeout(timer);
      clientSignal.removeEventListener('abort', onClientGone);
      this.#waiting.delete(token);
    }
  }

  /** Resolves once nobody waits (used by graceful shutdown). */
  async drained(): Promise<void> {
    await this.#queue.onIdle();
  }
}
