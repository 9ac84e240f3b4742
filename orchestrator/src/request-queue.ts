import type { Container, ContainerPool } from './container-pool.js';
import { ClientGoneError, NoContainersError, QueueFullError, QueueShareExceededError, QueueTimeoutError, ShuttingDownError } from './errors.js';

export interface RequestQueueOptions {
  /** Requests that may wait; past it, QueueFullError. */
  maxQueue: number;
  /** Longest wait for a container, in ms; past it, QueueTimeoutError. */
  queueTimeoutMs: number;
  /**
   * Share of maxQueue one named client may hold waiting: at most max(1, floor(maxQueue * share));
   * past it, QueueShareExceededError. Requests without a client name are bounded by maxQueue only. @default 0.5
   */
  clientQueueShare?: number;
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

/**
 * A FIFO with O(1) removal from anywhere (a client may leave from the middle of 10,000). A lane
 * of fresh requests is also a link of the ring of lanes that take turns, while it has any.
 */
class Lane {
  head: Waiter | undefined;
  tail: Waiter | undefined;
  size = 0;
  /** The key name this lane waits for (undefined: the anonymous lane, or the redispatched one). */
  readonly client: string | undefined;
  /** The lane before and after this one in the ring; undefined while out of it. */
  before: Lane | undefined;
  after: Lane | undefined;

  constructor(client?: string) {
    this.client = client;
  }

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
 * The wait for a free container. A request takes a free container at once when nobody waits;
 * otherwise it waits in its client's lane (one per key name, one for requests without a key),
 * and requests sent again after their container failed wait in a lane of their own that goes
 * first. The lanes with waiting requests take turns, one request each, in arrival order within
 * a lane: a client that floods the queue delays another client by one request per turn, not by
 * its whole backlog (without keys there is one lane, a plain FIFO). A named client holds at most
 * its share of maxQueue waiting. The pool calls back whenever capacity appears, and the next in
 * turn gets the container inside that call, so a container freed by an answer gets its next
 * request before anything else runs. Waiting costs one object: one timer serves the whole queue
 * (each lane's oldest request times out first, so the timer is due at the oldest head), and a
 * client leaving is a plain listener, not an AbortController.
 */
export class RequestQueue {
  readonly #pool: ContainerPool;
  readonly #options: RequestQueueOptions;
  readonly #now: () => number;
  /** Most requests one named client may have waiting. */
  readonly #shareLimit: number;
  readonly #redispatched = new Lane();
  /** Kept while empty: without keys every request waits here, and a busy queue allocates no lane. */
  readonly #anonymous = new Lane();
  /** Lanes of named clients with requests waiting; a lane is dropped when it empties. */
  readonly #named = new Map<string, Lane>();
  /** The fresh lane whose turn is next, in the ring of fresh lanes with requests waiting. */
  #turn: Lane | undefined;
  #length = 0;
  #timer: NodeJS.Timeout | undefined;
  #closed = false;
  readonly counters: QueueCounters = { queued: 0 };

  constructor(pool: ContainerPool, options: RequestQueueOptions) {
    this.#pool = pool;
    this.#options = options;
    this.#now = options.now ?? performance.now.bind(performance);
    this.#shareLimit = Math.max(1, Math.floor(options.maxQueue * (options.clientQueueShare ?? 0.5)));
    pool.onCapacity(() => this.#handOver());
  }

  /** Requests waiting for a container. */
  get length(): number {
    return this.#length;
  }

  /** How long the oldest waiting request has waited, in ms. */
  oldestWaitMs(): number {
    const oldest = this.#oldestSince();
    return oldest === Infinity ? 0 : this.#now() - oldest;
  }

  /** Refuse new requests from now on (already queued ones keep their place). */
  close(): void {
    this.#closed = true;
  }

  /**
   * Get a container for one request of `client` (a key name; undefined without keys). `watch`
   * tells when the client leaves: a waiting request then leaves the line. `redispatch` puts a
   * request whose container failed ahead of every new one, past the bounds (it was already
   * accepted). `onLease` runs synchronously the moment the container is leased, so the caller
   * can start using it before anything else runs.
   */
  acquire(
    client: string | undefined,
    watch: ClientWatch,
    redispatch = false,
    onLease?: (container: Container) => void,
    avoidWorkers?: ReadonlySet<string>,
  ): Promise<Container> {
    if (this.#closed && !redispatch) return Promise.reject(new ShuttingDownError());
    if (this.#pool.size === 0) return Promise.reject(new NoContainersError());
    if (this.#length === 0) {
      const free = this.#pool.tryAcquire(avoidWorkers);
      if (free) {
        onLease?.(free);
        return Promise.resolve(free);
      }
    }
    const found = redispatch ? this.#redispatched : client === undefined ? this.#anonymous : this.#named.get(client);
    if (!redispatch) {
      if (client !== undefined && found && found.size >= this.#shareLimit) return Promise.reject(new QueueShareExceededError(this.#shareLimit));
      if (this.#length >= this.#options.maxQueue) return Promise.reject(new QueueFullError(this.#options.maxQueue));
    }
    const lane = found ?? this.#newLane(client!);
    return new Promise<Container>((resolve, reject) => {
      const waiter: Waiter = { since: this.#now(), lane, onLease, avoidWorkers, resolve, reject, unwatch: undefined, prev: undefined, next: undefined, waiting: true };
      if (lane.size === 0 && lane !== this.#redispatched) this.#joinRing(lane);
      lane.push(waiter);
      this.#length++;
      this.counters.queued++;
      waiter.unwatch = watch(() => this.#leave(waiter, new ClientGoneError()));
      this.#armTimer();
      // Capacity that appeared without a callback (none should) is not left idle.
      this.#handOver();
    });
  }

  /** Give free containers to the waiting requests: redispatched ones first, then one per fresh lane in turn. */
  #handOver(): void {
    for (;;) {
      // A redispatched request waits for a container away from where it failed: the next one may take what it leaves.
      let waiter: Waiter | undefined;
      let container: Container | undefined;
      for (let w = this.#redispatched.head; w && !container; w = w.next) {
        container = this.#pool.tryAcquire(w.avoidWorkers);
        waiter = w;
      }
      const turn = this.#turn;
      if (!container && turn) {
        waiter = turn.head;
        container = this.#pool.tryAcquire();
        // Served: the next lane has the next turn (this one goes to the back of the round).
        if (container) this.#turn = turn.after;
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
    const { lane } = waiter;
    waiter.waiting = false;
    lane.remove(waiter);
    this.#length--;
    if (lane.size === 0 && lane !== this.#redispatched) this.#leaveRing(lane);
    waiter.unwatch?.();
  }

  /** The lane of a named client that starts waiting. */
  #newLane(client: string): Lane {
    const lane = new Lane(client);
    this.#named.set(client, lane);
    return lane;
  }

  /** A lane that starts waiting joins the ring at the back of the round: every lane already waiting has its turn first. */
  #joinRing(lane: Lane): void {
    const turn = this.#turn;
    if (!turn) {
      lane.before = lane.after = lane;
      this.#turn = lane;
      return;
    }
    lane.after = turn;
    lane.before = turn.before!;
    turn.before!.after = lane;
    turn.before = lane;
  }

  /** An emptied lane leaves the ring, and a named one is forgotten (it is made again when its client next waits). */
  #leaveRing(lane: Lane): void {
    if (lane.after === lane) this.#turn = undefined;
    else {
      lane.before!.after = lane.after;
      lane.after!.before = lane.before;
      if (this.#turn === lane) this.#turn = lane.after;
    }
    lane.before = lane.after = undefined;
    if (lane.client !== undefined) this.#named.delete(lane.client);
  }

  /** When the oldest waiting request arrived (Infinity: none waits): the oldest of the lanes' heads. */
  #oldestSince(): number {
    let oldest = Math.min(this.#redispatched.head?.since ?? Infinity, this.#anonymous.head?.since ?? Infinity);
    for (const lane of this.#named.values()) oldest = Math.min(oldest, lane.head!.since);
    return oldest;
  }

  /** One timer, due when the oldest waiting request times out; each lane is in arrival order. */
  #armTimer(): void {
    if (this.#timer || this.#length === 0) return;
    const delay = Math.max(0, this.#oldestSince() + this.#options.queueTimeoutMs - this.#now());
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      const now = this.#now();
      this.#expire(this.#redispatched, now);
      this.#expire(this.#anonymous, now);
      // A lane that empties here is deleted from the map, which iteration allows.
      for (const lane of this.#named.values()) this.#expire(lane, now);
      this.#armTimer();
    }, delay);
    this.#timer.unref();
  }

  /** Time out the requests at the head of `lane` that waited queueTimeoutMs. */
  #expire(lane: Lane, now: number): void {
    while (lane.head && now - lane.head.since >= this.#options.queueTimeoutMs) {
      this.#leave(lane.head, new QueueTimeoutError(Math.round(now - lane.head.since)));
    }
  }
}
