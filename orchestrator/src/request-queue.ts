import type { Container, ContainerPool } from './container-pool.js';
import { ClientGoneError, NoContainersError, QueueFullError, QueueTimeoutError, ShuttingDownError } from './errors.js';

export interface RequestQueueOptions {
  /** Requests that may wait; past it, QueueFullError. */
  maxQueue: number;
  /** Longest wait for a container, in ms; past it, QueueTimeoutError. */
  queueTimeoutMs: number;
  now?: () => number;
}

/** Lifetime counts of the queue (what became of each request, the proxy counts). */
export interface QueueCounters {
  /** Requests that had to wait for a container. */
  queued: number;
}

/**
 * Subscribe to the client going away while its request waits (called only for requests that
 * wait); returns the unsubscribe. It may call `gone` at once if the client already left.
 */
export type ClientWatch = (gone: () => void) => () => void;

/** One waiting request, linked into its lane. */
interface Waiter {
  readonly since: number;
  readonly lane: Lane;
  readonly onLease: ((container: Container) => void) | undefined;
  readonly avoidWorkers: ReadonlySet<string> | undefined;
  readonly resolve: (container: Container) => void;
  readonly reject: (error: Error) => void;
  unwatch: (() => void) | undefined;
  prev: Waiter | undefined;
  next: Waiter | undefined;
  /** Still in its lane (not yet leased, timed out or cancelled). */
  waiting: boolean;
}

/** A FIFO with O(1) removal from anywhere (a client may leave from the middle of 10,000). */
class Lane {
  head: Waiter | undefined;
  tail: Waiter | undefined;
  size = 0;

  push(w: Waiter): void {
    w.prev = this.tail;
    if (this.tail) this.tail.next = w;
    else this.head = w;
    this.tail = w;
    this.size++;
  }

  remove(w: Waiter): void {
    if (w.prev) w.prev.next = w.next;
    else this.head = w.next;
    if (w.next) w.next.prev = w.prev;
    else this.tail = w.prev;
    w.prev = w.next = undefined;
    this.size--;
  }
}

/**
 * The FIFO wait for a free container. A request takes a free container at once when nobody
 * waits; otherwise it waits in line, and requests sent again after their container failed wait
 * in a lane of their own that goes first. The pool calls back whenever capacity appears, and
 * the head of the line gets the container inside that call, so a container freed by an answer
 * gets its next request before anything else runs. Waiting costs one object: one timer serves
 * the whole line (the oldest request always times out first), and a client leaving is a plain
 * listener, not an AbortController.
 */
export class RequestQueue {
  readonly #pool: ContainerPool;
  readonly #options: RequestQueueOptions;
  readonly #now: () => number;
  readonly #redispatched = new Lane();
  readonly #fresh = new Lane();
  #timer: NodeJS.Timeout | undefined;
  #closed = false;
  readonly counters: QueueCounters = { queued: 0 };

  constructor(pool: ContainerPool, options: RequestQueueOptions) {
    this.#pool = pool;
    this.#options = options;
    this.#now = options.now ?? performance.now.bind(performance);
    pool.onCapacity(() => this.#handOver());
  }

  /** Requests waiting for a container. */
  get length(): number {
    return this.#redispatched.size + this.#fresh.size;
  }

  /** How long the oldest waiting request has waited, in ms. */
  oldestWaitMs(): number {
    const oldest = Math.min(this.#redispatched.head?.since ?? Infinity, this.#fresh.head?.since ?? Infinity);
    return oldest === Infinity ? 0 : this.#now() - oldest;
  }

  /** Refuse new requests from now on (already queued ones keep their place). */
  close(): void {
    this.#closed = true;
  }

  /**
   * Get a container for one request. `watch` tells when the client leaves: a waiting request
   * then leaves the line. `redispatch` puts a request whose container failed ahead of every new
   * one, past the bound (it was already accepted). `onLease` runs synchronously the moment the
   * container is leased, so the caller can start using it before anything else runs.
   */
  acquire(watch: ClientWatch, redispatch = false, onLease?: (container: Container) => void, avoidWorkers?: ReadonlySet<string>): Promise<Container> {
    if (this.#closed && !redispatch) return Promise.reject(new ShuttingDownError());
    if (this.#pool.size === 0) return Promise.reject(new NoContainersError());
    if (this.length === 0) {
      const free = this.#pool.tryAcquire(avoidWorkers);
      if (free) {
        onLease?.(free);
        return Promise.resolve(free);
      }
    }
    if (!redispatch && this.length >= this.#options.maxQueue) {
      return Promise.reject(new QueueFullError(this.#options.maxQueue));
    }
    return new Promise<Container>((resolve, reject) => {
      const lane = redispatch ? this.#redispatched : this.#fresh;
      const waiter: Waiter = { since: this.#now(), lane, onLease, avoidWorkers, resolve, reject, unwatch: undefined, prev: undefined, next: undefined, waiting: true };
      lane.push(waiter);
      this.counters.queued++;
      waiter.unwatch = watch(() => this.#leave(waiter, new ClientGoneError()));
      this.#armTimer();
      // Capacity that appeared without a callback (none should) is not left idle.
      this.#handOver();
    });
  }

  /** Give free containers to the heads of the line, redispatched requests first. */
  #handOver(): void {
    for (;;) {
      // A redispatched request waits for a container away from where it failed: the next one may take what it leaves.
      let waiter: Waiter | undefined;
      let container: Container | undefined;
      for (let w = this.#redispatched.head; w && !container; w = w.next) {
        container = this.#pool.tryAcquire(w.avoidWorkers);
        waiter = w;
      }
      if (!container && this.#fresh.head) {
        waiter = this.#fresh.head;
        container = this.#pool.tryAcquire();
      }
      if (!container || !waiter) return;
      this.#unlink(waiter);
      waiter.onLease?.(container);
      waiter.resolve(container);
    }
  }

  #leave(waiter: Waiter, error: QueueTimeoutError | ClientGoneError): void {
    if (!waiter.waiting) return;
    this.#unlink(waiter);
    waiter.reject(error);
  }

  #unlink(waiter: Waiter): void {
    waiter.waiting = false;
    waiter.lane.remove(waiter);
    waiter.unwatch?.();
  }

  /** One timer, due when the oldest waiting request times out; each lane is in arrival order. */
  #armTimer(): void {
    if (this.#timer || this.length === 0) return;
    const oldest = Math.min(this.#redispatched.head?.since ?? Infinity, this.#fresh.head?.since ?? Infinity);
    const delay = Math.max(0, oldest + this.#options.queueTimeoutMs - this.#now());
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      const now = this.#now();
      for (const lane of [this.#redispatched, this.#fresh]) {
        while (lane.head && now - lane.head.since >= this.#options.queueTimeoutMs) {
          this.#leave(lane.head, new QueueTimeoutError(Math.round(now - lane.head.since)));
        }
      }
      this.#armTimer();
    }, delay);
    this.#timer.unref();
  }
}
