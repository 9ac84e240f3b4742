import type { ServerResponse } from 'node:http';
import { ControlLoop } from '../../common/src/control-loop.js';
import type { Logger } from '../../common/src/logger.js';
import type { ContainerState, LaunchTiming, MachineDecision, MachineScalerSnapshot, ScalingDecision, StateFile, WorkerRecord } from '../../status/src/schema.js';
import { TooManyViewersError } from './errors.js';
import { RejectionLog, type Rejection } from './rejection-log.js';

/** One point of the dashboard's charts. */
export interface SeriesPoint {
  at: string;
  throughputRps: number;
  latencyMs: { p50: number | null; p90: number | null; p99: number | null };
  queueLength: number;
}

/** What the dashboard shows each second: the cluster now, and the latest point of its charts. */
export interface DashboardSample extends SeriesPoint {
  cluster: string;
  workers: Array<{ id: string; host: string; state: WorkerRecord['state']; launchedBy: WorkerRecord['launchedBy'] }>;
  containers: Array<{ id: string; workerId: string; state: ContainerState; inFlight: number; limit: number; served: number; restarts: number; lastError: string | null }>;
  queue: { length: number; oldestWaitMs: number };
  autoscaler: { policy: string; paused: boolean; min: number; max: number; decisions: ScalingDecision[] };
  /** The latest container state changes across the cluster (replacements, health), newest first. */
  events: Array<{ at: string; container: string; state: ContainerState; reason: string }>;
  /** The machine autoscaler, null when the orchestrator runs none: its latest decisions (newest last) and where its last launch's time went. */
  machines: (Omit<MachineScalerSnapshot, 'decisions' | 'launches'> & { decisions: MachineDecision[]; lastLaunch: LaunchTiming | null }) | null;
}

export interface DashboardSources {
  status: () => StateFile;
  /** Requests answered since the start. */
  completed: () => number;
  /** Latency percentiles (ms) of requests answered within the window. */
  latencies: (ps: readonly number[], windowMs: number) => Array<number | null>;
}

/** Points kept for the charts: five minutes at one a second. */
const SERIES_LENGTH = 300;
const EVENTS_SHOWN = 30;
const DECISIONS_SHOWN = 15;
/** Default of `maxUnsentBytes`: about half a minute of samples of a large cluster. */
const MAX_UNSENT_BYTES = 1024 * 1024;
/** Dropped streams logged one by one per second; past it, one line a second counts them. */
const DISCONNECTS_LOGGED_PER_SECOND = 5;

/** What the dashboard shows of the machine autoscaler: its state, latest decisions and last launch. */
function machinesShown({ decisions, launches, ...machines }: MachineScalerSnapshot): NonNullable<DashboardSample['machines']> {
  return { ...machines, decisions: decisions.slice(-DECISIONS_SHOWN), lastLaunch: launches.at(-1) ?? null };
}

/** An open stream: when it opened, who holds it, and why it ended once known. */
interface Viewer {
  openedAt: number;
  remote: string;
  /** Set when the stream failed (a socket error code) or was closed by the feed; logged at 'close'. */
  reason?: string;
}

export interface DashboardFeedOptions {
  /** Sampling period. */
  intervalMs: number;
  /** Streams open at once; one more is refused with TooManyViewersError (503). */
  maxViewers: number;
  /** Bytes a viewer may leave unsent (it does not read); past it, its stream is closed. @default 1048576 */
  maxUnsentBytes?: number;
}

/**
 * The live dashboard's data: once a second it takes a sample of the cluster and pushes it to
 * every open dashboard as a server-sent event. The cost does not grow with viewers beyond one
 * write each: the sample is built once, and only the last five minutes of chart points are kept.
 * Both ends are bounded: at most `maxViewers` streams are open (each holds a file descriptor), and a
 * viewer that stops reading is closed once `maxUnsentBytes` wait for it, so it never makes the
 * orchestrator buffer samples without limit. A stream that ends other than by the feed's own
 * shutdown is logged once, rate-limited.
 */
export class DashboardFeed extends ControlLoop {
  readonly #sources: DashboardSources;
  readonly #intervalMs: number;
  readonly #series: SeriesPoint[] = [];
  readonly #viewers = new Map<ServerResponse, Viewer>();
  readonly #maxViewers: number;
  readonly #maxUnsentBytes: number;
  readonly #disconnects: RejectionLog;
  #latest: DashboardSample | undefined;
  #lastCompleted = 0;
  #lastAt = performance.now();

  constructor(deps: { sources: DashboardSources; log: Logger }, options: DashboardFeedOptions) {
    super('dashboard-feed', options.intervalMs, deps.log);
    this.#sources = deps.sources;
    this.#intervalMs = options.intervalMs;
    this.#maxViewers = options.maxViewers;
    this.#maxUnsentBytes = options.maxUnsentBytes ?? MAX_UNSENT_BYTES;
    this.#disconnects = new RejectionLog(deps.log, {
      perSecond: DISCONNECTS_LOGGED_PER_SECOND,
      message: 'dashboard stream dropped',
      summaryMessage: 'more dashboard streams dropped than logged one by one',
    });
    this.#lastCompleted = deps.sources.completed();
  }

  get viewers(): number {
    return this.#viewers.size;
  }

  override async tick(): Promise<void> {
    const sample = this.sample();
    this.#series.push({ at: sample.at, throughputRps: sample.throughputRps, latencyMs: sample.latencyMs, queueLength: sample.queueLength });
    if (this.#series.length > SERIES_LENGTH) this.#series.shift();
    const event = `event: sample\ndata: ${JSON.stringify(sample)}\n\n`;
    const eventBytes = Buffer.byteLength(event);
    for (const [res, viewer] of this.#viewers) {
      // A viewer that does not read would make every sample pile up here: close it; its browser reconnects and gets the history again.
      if (res.writableLength + eventBytes > this.#maxUnsentBytes) {
        viewer.reason = 'SLOW_VIEWER';
        res.destroy();
      } else {
        res.write(event);
      }
    }
  }

  /** Take a sample now (throughput since the previous one). */
  sample(): DashboardSample {
    const now = performance.now();
    const completed = this.#sources.completed();
    const seconds = Math.max((now - this.#lastAt) / 1000, 0.001);
    const throughputRps = (completed - this.#lastCompleted) / seconds;
    this.#lastAt = now;
    this.#lastCompleted = completed;
    const [p50, p90, p99] = this.#sources.latencies([50, 90, 99], Math.max(this.#intervalMs, 1_000));
    const state = this.#sources.status();
    const queue = state.queue ?? { length: 0, oldestWaitMs: 0 };
    const autoscaler = state.autoscaler ?? { policy: 'none', paused: false, min: 0, max: 0, decisions: [] };
    const round = (v: number | null | undefined): number | null => (v == null ? null : Math.round(v * 10) / 10);
    const sample: DashboardSample = {
      at: state.updatedAt,
      cluster: state.cluster,
      workers: state.workers.map((w) => ({ id: w.id, host: w.host, state: w.state, launchedBy: w.launchedBy })),
      containers: state.containers.map((c) => ({
        id: c.id,
        workerId: c.workerId,
        state: c.state,
        inFlight: c.inFlight,
        limit: c.limit,
        served: c.served,
        restarts: c.restarts,
        lastError: c.lastError,
      })),
      queue: { length: queue.length, oldestWaitMs: queue.oldestWaitMs },
      queueLength: queue.length,
      throughputRps: Math.round(throughputRps * 10) / 10,
      latencyMs: { p50: round(p50), p90: round(p90), p99: round(p99) },
      autoscaler: { ...autoscaler, decisions: autoscaler.decisions.filter((d) => d.action !== 'none').slice(-DECISIONS_SHOWN) },
      events: state.containers
        .flatMap((c) => c.history.map((h) => ({ at: h.at, container: c.id, state: h.state, reason: h.reason })))
        .sort((a, b) => b.at.localeCompare(a.at))
        .slice(0, EVENTS_SHOWN),
      machines: state.machines && machinesShown(state.machines),
    };
    this.#latest = sample;
    return sample;
  }

  /**
   * Serve the event stream to one dashboard: the recent series and the cluster now, then a sample
   * each tick. Throws TooManyViewersError, having written nothing, when `maxViewers` are open.
   */
  subscribe(res: ServerResponse): void {
    if (this.#viewers.size >= this.#maxViewers) throw new TooManyViewersError(this.#maxViewers);
    // Its client already left: a 'close' that has fired would never free the slot.
    if (res.destroyed) return;
    // Built before anything is written or registered, so a failure here still gets an error answer.
    const history = `retry: 2000\nevent: history\ndata: ${JSON.stringify({ series: this.#series, latest: this.#latest ?? this.sample() })}\n\n`;
    const viewer: Viewer = { openedAt: performance.now(), remote: `${res.socket?.remoteAddress}:${res.socket?.remotePort}` };
    this.#viewers.set(res, viewer);
    // A client that leaves abruptly fails the socket (ECONNRESET, EPIPE): noted here, logged once at 'close'.
    res.socket?.once('error', (error: NodeJS.ErrnoException) => (viewer.reason ??= error.code ?? 'SOCKET_ERROR'));
    res.once('close', () => this.#left(res, viewer));
    res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-store', connection: 'keep-alive', 'x-accel-buffering': 'no' });
    res.write(history);
  }

  #left(res: ServerResponse, viewer: Viewer): void {
    if (!this.#viewers.delete(res)) return;
    // A stream the feed did not end: the client left, its connection failed, or it was too slow.
    const entry: Rejection & { remote: string; openMs: number; viewers: number } = {
      requestId: '-',
      path: '/dashboard/events',
      // What the project logs for a client gone before its answer ended.
      status: 499,
      error: viewer.reason ?? 'CLOSED_BY_CLIENT',
      remote: viewer.remote,
      openMs: Math.round(performance.now() - viewer.openedAt),
      viewers: this.#viewers.size,
    };
    this.#disconnects.record(entry);
  }

  /** Close every open stream (at shutdown, so the server can close). */
  protected override async onStop(): Promise<void> {
    const open = [...this.#viewers.keys()];
    this.#viewers.clear();
    for (const res of open) res.end();
    this.#disconnects.flush();
  }
}
