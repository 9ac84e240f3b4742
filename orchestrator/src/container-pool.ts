import type { Logger } from '../../common/src/logger.js';
import { DEFAULT_CONTRACT, type ContainerRecord, type ContainerState, type WorkerRecord } from '../../status/src/schema.js';

/** Health as far as routing cares: only `healthy` containers get requests; `down` means its runtime does not run it. */
export type Health = 'starting' | 'healthy' | 'unhealthy' | 'down';

/** A runtime operation queued or running on a container (see RuntimeOperations): the control loops leave it alone meanwhile. */
export type OperationKind = 'start' | 'replace' | 'relocate' | 'remove';

/**
 * One model container and its live bookkeeping, as everyone outside the pool sees it: read-only.
 * Only the pool changes a container; others ask it for a transition (setHealth, drain,
 * operationBegun, scheduleRestart, ...).
 */
export interface Container {
  readonly id: string;
  readonly workerId: string;
  readonly host: string;
  readonly port: number;
  /** `http://host:port`, the upstream origin. */
  readonly origin: string;
  /** Its app's paths (its worker's contract): where `/new_request` goes and where it is probed. */
  readonly predictPath: string;
  readonly healthPath: string;
  /** Changes when the container is replaced. */
  readonly runtimeId: string | null;
  readonly managed: boolean;
  readonly limit: number;
  readonly health: Health;
  readonly draining: boolean;
  /** The runtime operation queued or running on it, if any. */
  readonly operation: OperationKind | null;
  /** Replacements tried after it failed, successful or not (Kubernetes' restartCount). */
  readonly restarts: number;
  /** Epoch ms before which it may not be replaced again (crash-loop back-off); 0 when not waiting. */
  readonly nextRestartAt: number;
  /** Latest health changes, oldest first (at most HISTORY_LENGTH). */
  readonly history: readonly HealthChange[];
  readonly inFlight: number;
  readonly served: number;
  /** Consecutive failures (probes or requests); reset by a success. */
  readonly failures: number;
  /** Consecutive good probes; reset by a failure. */
  readonly successes: number;
  /** Failed health probes since the orchestrator started. */
  readonly probeFailures: number;
  readonly lastError: string | null;
  /** When it last finished a request (ms, monotonic): the least recently used free container goes first. */
  readonly lastReleasedAt: number;
  /** Times in a row real requests took it out of rotation, with no good answer since. */
  readonly ejections: number;
  /** Good probes do not readmit it before this (ms, monotonic): a container that fails requests but answers probes waits longer each time. */
  readonly readmitAt: number;
}

/** A worker as the pool keeps it: a live copy of its stored record (the status snapshot writes it back), read-only outside the pool. */
export type Worker = Readonly<WorkerRecord>;

/** The pool's own, writable side of a container. */
type LiveContainer = { -readonly [K in keyof Container]: Container[K] } & { history: HealthChange[] };

/** The pool's own, writable side of a worker. */
type LiveWorker = { -readonly [K in keyof Worker]: Worker[K] };

/** Only the pool writes: the objects it hands out are its own, typed read-only. */
const live = (c: Container): LiveContainer => c as LiveContainer;

/** One change of a container's shown state, and why. */
export interface HealthChange {
  at: string;
  state: ContainerState;
  reason: string;
}

/** Health changes kept per container. */
export const HISTORY_LENGTH = 10;

/** How a lease on a container ended: it answered, it was never used, or it failed. */
export type LeaseOutcome = 'served' | 'unused' | { error: string };

/** The state shown to people: derived, never stored. */
export function containerState(c: Container): ContainerState {
  if (c.health === 'unhealthy' || c.health === 'down') return c.health;
  if (c.health === 'starting') return 'starting';
  if (c.draining) return 'draining';
  return c.inFlight >= c.limit ? 'busy' : 'free';
}

/**
 * How long good probes cannot readmit a container that real requests took out of rotation:
 * `baseMs`, doubled for each such ejection in a row, at most `maxMs` (Envoy's outlier ejection).
 * A probe only shows that /health answers; a model that hangs or fails requests behind a live
 * /health would otherwise come straight back and take the next request down with it.
 */
export interface EjectionOptions {
  baseMs: number;
  maxMs: number;
}

const dispatchable = (c: Container): boolean => c.health === 'healthy' && !c.draining && c.inFlight < c.limit;

/** Whether `c` is a better pick than `than`: less loaded, then idle longer. */
const better = (c: Container, than: Container | undefined): boolean =>
  !than || c.inFlight < than.inFlight || (c.inFlight === than.inFlight && c.lastReleasedAt < than.lastReleasedAt);

/**
 * Every container and whether it can take a request. Says the moment one frees up, so no
 * container sits idle while someone waits.
 */
export class ContainerPool {
  readonly #containers = new Map<string, LiveContainer>();
  readonly #workers = new Map<string, LiveWorker>();
  #capacityListener: () => void = () => {};
  readonly #now: () => number;
  readonly #log: Logger | undefined;
  readonly #ejection: EjectionOptions;
  #version = 0;

  constructor(options: { now?: () => number; log?: Logger; ejection?: EjectionOptions } = {}) {
    this.#now = options.now ?? performance.now.bind(performance);
    this.#log = options.log;
    this.#ejection = options.ejection ?? { baseMs: 0, maxMs: 0 };
  }

  /** Bumped on every change a status reader might care about. */
  get version(): number {
    return this.#version;
  }

  /** Something the status shows changed outside the pool (the autoscaler paused, say): the next status write includes it. */
  touch(): void {
    this.#version++;
  }

  /** Register workers and their containers from the inventory (copies: the records stay as read). New containers start as `starting`. */
  load(workers: readonly WorkerRecord[], containers: readonly ContainerRecord[], defaultLimit: number): void {
    for (const w of workers) this.#workers.set(w.id, { ...w });
    for (const r of containers) this.add(r, defaultLimit);
  }

  /** A worker joins (a copy of its record); a no-op if the id is known. Its containers are added one by one. */
  addWorker(w: WorkerRecord): Worker {
    const known = this.#workers.get(w.id);
    if (known) return known;
    const added = { ...w };
    this.#workers.set(w.id, added);
    this.#log?.info({ worker: w.id, launchedBy: w.launchedBy }, 'worker joined');
    this.#version++;
    return added;
  }

  /** Forget a worker that holds no container any more (they are removed first). */
  removeWorker(id: string): void {
    if (!this.#workers.has(id)) return;
    if (this.onWorker(id).length > 0) throw new Error(`worker ${id} still holds containers`);
    this.#workers.delete(id);
    this.#log?.info({ worker: id }, 'worker left');
    this.#version++;
  }

  /** Add a container from its record (a no-op if the id is known); it starts as `starting` unless recorded `down`. */
  add(r: ContainerRecord, defaultLimit: number): Container {
    const known = this.#containers.get(r.id);
    if (known) return known;
    const contract = this.#workers.get(r.workerId)?.template.contract ?? DEFAULT_CONTRACT;
    const c: LiveContainer = {
      id: r.id,
      workerId: r.workerId,
      host: r.host,
      port: r.port,
      origin: `http://${r.host.includes(':') ? `[${r.host}]` : r.host}:${r.port}`,
      predictPath: contract.predictPath,
      healthPath: contract.healthPath,
      runtimeId: r.runtimeId,
      managed: r.managed,
      limit: Math.max(r.limit, defaultLimit),
      health: r.state === 'down' ? 'down' : 'starting',
      draining: false,
      operation: null,
      restarts: r.restarts,
      nextRestartAt: r.nextRestartAt ? Date.parse(r.nextRestartAt) : 0,
      history: [...r.history],
      inFlight: 0,
      served: r.served,
      failures: 0,
      successes: 0,
      probeFailures: 0,
      lastError: r.lastError,
      lastReleasedAt: 0,
      ejections: 0,
      readmitAt: 0,
    };
    this.#containers.set(r.id, c);
    this.#version++;
    return c;
  }

  /**
   * Forget a container (gone from its runtime, or never started). Requests still on it (past its
   * drain deadline) release into a container the pool no longer lists: their slots go with it.
   */
  remove(c: Container): void {
    if (this.#containers.get(c.id) !== c) return;
    this.#containers.delete(c.id);
    this.#version++;
  }

  /** A runtime operation on `c` was queued: the control loops leave it alone until operationEnded. */
  operationBegun(c: Container, kind: OperationKind): void {
    live(c).operation = kind;
  }

  /** The runtime operation on `c` ended, whichever way. */
  operationEnded(c: Container): void {
    live(c).operation = null;
  }

  /** Its runtime now runs `c` as `runtimeId` (a new container, before it is healthy). */
  setRuntimeId(c: Container, runtimeId: string): void {
    live(c).runtimeId = runtimeId;
    this.#version++;
  }

  /** A replacement of `c` begins now: one more restart, and none before `nextRestartAt` (epoch ms; the crash-loop back-off). */
  scheduleRestart(c: Container, nextRestartAt: number): void {
    const l = live(c);
    l.restarts++;
    l.nextRestartAt = nextRestartAt;
    this.#version++;
  }

  /** What last went wrong with `c` (shown in the status). */
  recordError(c: Container, error: string): void {
    live(c).lastError = error;
    this.#version++;
  }

  /** A new runtime container now holds this slot (same id, worker and port): it starts over as `starting`. */
  replaced(container: Container, runtimeId: string): void {
    const c = live(container);
    c.runtimeId = runtimeId;
    c.failures = 0;
    c.successes = 0;
    c.ejections = 0;
    c.readmitAt = 0;
    this.setHealth(c, 'starting', `replaced by ${runtimeId.slice(0, 12)}`);
  }

  /** Change health (recording the change and why) and hand the container to a waiter if it became usable. */
  setHealth(c: Container, health: Health, reason: string): void {
    this.#change(c, () => (live(c).health = health), reason);
    if (health === 'healthy') this.#capacityListener();
  }

  /** No new requests for `c`; the ones it serves finish. */
  drain(c: Container, reason: string): void {
    this.#change(c, () => (live(c).draining = true), reason);
  }

  /** Apply `change`, then record the shown state in the history with its reason. */
  #change(container: Container, change: () => void, reason: string): void {
    const c = live(container);
    const before = containerState(c);
    change();
    const after = containerState(c);
    // A new reason for the same state is news too (a replacement that failed differently); a repeat is not.
    if (after !== before || c.history.at(-1)?.reason !== reason) {
      c.history.push({ at: new Date().toISOString(), state: after, reason });
      if (c.history.length > HISTORY_LENGTH) c.history.shift();
      // One log line per change, here where every change passes: probes, failed requests, replacements, drains.
      this.#log?.[after === 'unhealthy' || after === 'down' ? 'warn' : 'info']({ container: c.id, worker: c.workerId, from: before, to: after, reason }, `container ${after}`);
    }
    this.#version++;
  }

  /** A worker went down, came back or is being removed: recorded on it (the status shows it) and logged. */
  setWorkerState(worker: Worker, state: Worker['state'], reason: string): void {
    const w = this.#workers.get(worker.id);
    if (!w || w.state === state) return;
    w.state = state;
    this.#log?.[state === 'down' ? 'warn' : 'info']({ worker: w.id, state, reason }, `worker ${state}`);
    this.#version++;
  }

  /** Containers of one worker. */
  onWorker(workerId: string): Container[] {
    return [...this.#containers.values()].filter((c) => c.workerId === workerId);
  }

  worker(id: string): Worker | undefined {
    return this.#workers.get(id);
  }

  get size(): number {
    return this.#containers.size;
  }

  containers(): IterableIterator<Container> {
    return this.#containers.values();
  }

  /** The workers, with their stored records' fields (the status snapshot writes them as they are). */
  workers(): IterableIterator<Worker> {
    return this.#workers.values();
  }

  get(id: string): Container | undefined {
    return this.#containers.get(id);
  }

  /** Requests running on containers right now. */
  inFlightTotal(): number {
    let n = 0;
    for (const c of this.#containers.values()) n += c.inFlight;
    return n;
  }

  /** Request slots of containers in rotation. */
  capacity(): number {
    let n = 0;
    for (const c of this.#containers.values()) if (c.health === 'healthy' && !c.draining) n += c.limit;
    return n;
  }

  /**
   * Take a free container now, or undefined. Prefers the least loaded, then the longest idle.
   * `avoidWorkers`: workers where this request already failed; none of their containers is taken
   * while a container of another worker is in rotation (free or busy), so a request sent again
   * does not meet the same failure (every container of a machine gone at once).
   */
  tryAcquire(avoidWorkers?: ReadonlySet<string>): Container | undefined {
    let best: LiveContainer | undefined;
    let bestAvoided: LiveContainer | undefined;
    let elsewhere = false;
    for (const c of this.#containers.values()) {
      const avoided = avoidWorkers?.has(c.workerId) ?? false;
      if (!avoided && c.health === 'healthy' && !c.draining) elsewhere = true;
      if (!dispatchable(c)) continue;
      if (avoided) {
        if (better(c, bestAvoided)) bestAvoided = c;
      } else if (better(c, best)) best = c;
    }
    if (!best && !elsewhere) best = bestAvoided;
    if (best) {
      best.inFlight++;
      this.#version++;
    }
    return best;
  }

  /** Called whenever a container may have become free to take a request (the request queue hands it over). */
  onCapacity(listener: () => void): void {
    this.#capacityListener = listener;
  }

  /** End a request on a container: count it, and hand the slot to a waiter if any. */
  release(container: Container, outcome: LeaseOutcome): void {
    // Removed while this request was on it (past its drain deadline): its slots are gone with it.
    if (this.#containers.get(container.id) !== container) return;
    const c = live(container);
    c.inFlight--;
    c.lastReleasedAt = this.#now();
    if (outcome === 'served') c.served++;
    else if (outcome !== 'unused') c.lastError = outcome.error;
    this.#version++;
    this.#capacityListener();
  }

  /**
   * A request failed on this container before it answered: out of rotation at once
   * (passive detection); the health checker puts it back after `rise` good probes.
   */
  markFailed(container: Container, error: string): void {
    const c = live(container);
    c.successes = 0;
    c.failures++;
    c.lastError = error;
    if (c.health === 'healthy' || c.health === 'starting') this.#eject(c, error);
  }

  /**
   * Passive health from real traffic: a 5xx answer is a failure, but one may be the model's own
   * error, so it takes `fall` in a row to leave the rotation; any other answer resets the count.
   */
  recordAnswer(container: Container, status: number, fall: number): void {
    const c = live(container);
    if (status < 500) {
      c.failures = 0;
      c.ejections = 0;
      return;
    }
    c.successes = 0;
    c.failures++;
    c.lastError = `answered ${status}`;
    if (c.health === 'healthy' && c.failures >= fall) this.#eject(c, `${c.failures} answers in a row were ${status}`);
  }

  /** Out of rotation because of real requests; good probes readmit it only after the ejection time. */
  #eject(c: LiveContainer, reason: string): void {
    c.ejections++;
    const holdMs = Math.min(this.#ejection.baseMs * 2 ** (c.ejections - 1), this.#ejection.maxMs);
    c.readmitAt = this.#now() + holdMs;
    this.setHealth(c, 'unhealthy', holdMs > 0 ? `${reason} (out for at least ${holdMs} ms)` : reason);
  }

  /** Record a probe result; `fall`/`rise` consecutive results change health. Returns the new health if it changed. */
  recordProbe(container: Container, ok: boolean, error: string | null, thresholds: { rise: number; fall: number }): Health | null {
    const c = live(container);
    const before = c.health;
    let next = before;
    if (ok) {
      c.failures = 0;
      c.successes++;
      // A container seen for the first time joins at once; one coming back must prove itself `rise` times.
      if (c.health === 'starting' || (c.health !== 'healthy' && c.successes >= thresholds.rise && this.#now() >= c.readmitAt)) next = 'healthy';
    } else {
      c.successes = 0;
      c.failures++;
      c.probeFailures++;
      c.lastError = error;
      if ((c.health === 'healthy' || c.health === 'starting') && c.failures >= thresholds.fall) next = 'unhealthy';
    }
    if (next === before) return null;
    this.setHealth(c, next, ok ? `${c.successes} good health probes` : `${c.failures} failed health probes: ${error}`);
    return next;
  }
}
