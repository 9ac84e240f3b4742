import type { ServerResponse } from 'node:http';
import { ControlLoop } from '../../common/src/control-loop.js';
import type { Logger } from '../../common/src/logger.js';
import type { ContainerState, ScalingDecision, StateFile } from '../../status/src/schema.js';

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
  workers: Array<{ id: string; host: string }>;
  containers: Array<{ id: string; workerId: string; state: ContainerState; inFlight: number; limit: number; served: number; restarts: number; lastError: string | null }>;
  queue: { length: number; oldestWaitMs: number };
  autoscaler: { policy: string; paused: boolean; min: number; max: number; decisions: ScalingDecision[] };
  /** The latest container state changes across the cluster (replacements, health), newest first. */
  events: Array<{ at: string; container: string; state: ContainerState; reason: string }>;
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

/**
 * The live dashboard's data: once a second it takes a sample of the cluster and pushes it to
 * every open dashboard as a server-sent event. The cost does not grow with viewers beyond one
 * write each: the sample is built once, and only the last five minutes of chart points are kept.
 */
export class DashboardFeed extends ControlLoop {
  readonly #sources: DashboardSources;
  readonly #intervalMs: number;
  readonly #series: SeriesPoint[] = [];
  readonly #viewers = new Set<ServerResponse>();
  #latest: DashboardSample | undefined;
  #lastCompleted = 0;
  #lastAt = performance.now();

  constructor(deps: { sources: DashboardSources; log: Logger }, options: { intervalMs: number }) {
    super('dashboard-feed', options.intervalMs, deps.log);
    this.#sources = deps.sources;
    this.#intervalMs = options.intervalMs;
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
    for (const res of this.#viewers) res.write(event);
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
      workers: state.workers.map((w) => ({ id: w.id, host: w.host })),
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
    };
    this.#latest = sample;
    return sample;
  }

  /** Serve the event stream to one dashboard: the recent series and the cluster now, then a sample each tick. */
  subscribe(res: ServerResponse): void {
    res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-store', connection: 'keep-alive', 'x-accel-buffering': 'no' });
    const latest = this.#latest ?? this.sample();
    res.write(`retry: 2000\nevent: history\ndata: ${JSON.stringify({ series: this.#series, latest })}\n\n`);
    this.#viewers.add(res);
    res.once('close', () => this.#viewers.delete(res));
  }

  /** Close every open stream (at shutdown, so the server can close). */
  protected override async onStop(): Promise<void> {
    for (const res of this.#viewers) res.end();
    this.#viewers.clear();
  }
}
