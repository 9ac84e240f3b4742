import { collectDefaultMetrics, Counter, Gauge, Registry, type Metric } from 'prom-client';
import { launchPhases } from '../../status/src/launch-phases.js';
import { containerStates, type MachineScalerSnapshot } from '../../status/src/schema.js';
import type { ClusterView, PoolReading } from './cluster-view.js';
import { containerState } from './container-pool.js';
import type { RequestRecorder } from './request-stats.js';
import { BucketHistogram } from './bucket-histogram.js';

// Seconds, from a fast model's few ms to the default two-minute upstream timeout.
const LATENCY_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120];

/** Requests finished with one set of labels. */
interface RequestCount {
  labels: { route: string; status: string; container: string };
  count: number;
}

/** Inference requests of one client key with one status. */
interface ClientCount {
  labels: { client: string; status: string };
  count: number;
}

/** The client label of a request without a valid key (or with keys off). */
const NO_CLIENT = '-';

/** One line of a machine family: its labels and value. */
interface MachineSample {
  labels: Record<string, string>;
  value: number;
}

/**
 * A family read from the machine autoscaler's snapshot at scrape time. Unlike prom-client's
 * unlabelled gauges, which always show a value, it shows no sample at all while there is no
 * machine autoscaler: a 0 there would read as "none launched" rather than "not running".
 */
class MachineFamily {
  readonly name: string;
  readonly help: string;
  readonly type: 'counter' | 'gauge';
  readonly aggregator = 'sum' as const;
  readonly #snapshot: () => MachineScalerSnapshot | null;
  readonly #read: (machines: MachineScalerSnapshot) => MachineSample[];

  constructor(options: {
    name: string;
    help: string;
    type: 'counter' | 'gauge';
    snapshot: () => MachineScalerSnapshot | null;
    read: (machines: MachineScalerSnapshot) => MachineSample[];
    registers: Registry[];
  }) {
    this.name = options.name;
    this.help = options.help;
    this.type = options.type;
    this.#snapshot = options.snapshot;
    this.#read = options.read;
    // The registry reads any metric through get(); it has no type for one of our own.
    for (const registry of options.registers) registry.registerMetric(this as unknown as Metric);
  }

  get(): Promise<{ name: string; help: string; type: 'counter' | 'gauge'; aggregator: 'sum'; values: MachineSample[] }> {
    const machines = this.#snapshot();
    return Promise.resolve({ name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values: machines ? this.#read(machines) : [] });
  }
}

/**
 * The orchestrator's Prometheus metrics in a registry of its own. Request counts and latencies
 * are recorded as requests finish (it is the request stats' recorder), each with a map lookup or
 * an array increment: prom-client's labelled calls would cost more than the rest of the
 * bookkeeping of a request, so its metrics read these at scrape time, like everything else
 * (containers, queue, autoscaler, lifetime counts) read from the cluster view.
 */
export class OrchestratorMetrics implements RequestRecorder {
  readonly registry = new Registry();
  readonly #requestCounts = new Map<string, RequestCount>();
  /** By key name, then status: names come from the config, so the series stay few. */
  readonly #clientCounts = new Map<string, Map<number, ClientCount>>();
  readonly #queueWait: BucketHistogram;
  readonly #upstream: BucketHistogram;
  readonly #view: Pick<ClusterView, 'machines'>;
  /** The machine autoscaler as read at the start of the scrape under way, so its families agree. */
  #machines: MachineScalerSnapshot | null = null;

  constructor(view: Pick<ClusterView, 'pool' | 'queue' | 'stats' | 'scaling' | 'machines'>) {
    this.#view = view;
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry });
    const requestCounts = this.#requestCounts;
    new Counter({
      name: 'orchestrator_requests_total',
      help: 'Requests finished, by route (/new_request, or passthrough for any other forwarded path), status sent to the client (499: the client left first) and container that answered (none when no container did).',
      labelNames: ['route', 'status', 'container'],
      registers,
      collect() {
        this.reset();
        for (const { labels, count } of requestCounts.values()) this.inc(labels, count);
      },
    });
    const clientCounts = this.#clientCounts;
    new Counter({
      name: 'orchestrator_client_requests_total',
      help: 'Inference requests by client key name ("-": none, or not a valid one) and status sent, the key check\'s own refusals (401, 403, 429) included.',
      labelNames: ['client', 'status'],
      registers,
      collect() {
        this.reset();
        for (const byStatus of clientCounts.values()) for (const { labels, count } of byStatus.values()) this.inc(labels, count);
      },
    });
    this.#queueWait = new BucketHistogram({
      name: 'orchestrator_queue_wait_seconds',
      help: 'Time a request waited for a free container (0 for those that found one at once).',
      buckets: LATENCY_BUCKETS,
      registers,
    });
    this.#upstream = new BucketHistogram({
      name: 'orchestrator_upstream_latency_seconds',
      help: 'Time from sending a request to a container to having its answer (its head, for answers streamed past upstreamBufferBytes).',
      buckets: LATENCY_BUCKETS,
      registers,
    });

    const { pool, queue } = view;
    const counters = view.stats.counters;
    new Gauge({
      name: 'orchestrator_queue_length',
      help: 'Requests waiting for a free container.',
      registers,
      collect() {
        this.set(queue.length);
      },
    });
    new Gauge({
      name: 'orchestrator_queue_oldest_wait_seconds',
      help: 'How long the oldest waiting request has waited.',
      registers,
      collect() {
        this.set(queue.oldestWaitMs() / 1000);
      },
    });
    lifetimeCounter('orchestrator_queue_rejected_total', 'Requests refused because the queue was full (503 QUEUE_FULL) or their client key had its share of it waiting (429 QUEUE_SHARE_EXCEEDED).', () => counters.rejected, registers);
    lifetimeCounter('orchestrator_queue_timeouts_total', 'Requests that waited longer than queueTimeoutMs (504 QUEUE_TIMEOUT).', () => counters.timedOut, registers);
    lifetimeCounter('orchestrator_queue_cancelled_total', 'Requests whose client left before a container answered (while sending the body or waiting).', () => counters.cancelled, registers);
    lifetimeCounter(
      'orchestrator_requests_refused_total',
      'Requests answered with an error before they could wait for a container (413, 408, 400, 503 SHUTTING_DOWN or NO_CONTAINERS).',
      () => counters.refused,
      registers,
    );
    lifetimeCounter('orchestrator_redispatches_total', 'Requests sent again to another container after theirs failed.', () => counters.redispatched, registers);

    new Gauge({
      name: 'orchestrator_containers',
      help: 'Containers by state (free, busy, starting, unhealthy, draining, down).',
      labelNames: ['state'],
      registers,
      collect() {
        const counts = new Map<string, number>(containerStates.map((s) => [s, 0]));
        for (const c of pool.containers()) counts.set(containerState(c), counts.get(containerState(c))! + 1);
        for (const [state, n] of counts) this.set({ state }, n);
      },
    });
    new Gauge({
      name: 'orchestrator_workers',
      help: 'Workers by state (up; down: its runtime stopped answering and its containers moved away; draining: being removed).',
      labelNames: ['state'],
      registers,
      collect() {
        const counts = { up: 0, down: 0, draining: 0 };
        for (const w of pool.workers()) counts[w.state]++;
        for (const [state, n] of Object.entries(counts)) this.set({ state }, n);
      },
    });
    new Gauge({
      name: 'orchestrator_container_in_flight',
      help: 'Requests each container is serving now.',
      labelNames: ['container', 'worker'],
      registers,
      collect() {
        this.reset();
        for (const c of pool.containers()) this.set({ container: c.id, worker: c.workerId }, c.inFlight);
      },
    });
    perContainerCounter(
      'orchestrator_health_check_failures_total',
      'Failed health probes, per container (since the orchestrator started).',
      pool,
      (c) => c.probeFailures,
      registers,
    );
    perContainerCounter('orchestrator_container_replacements_total', 'Replacements of a failed container in its slot (its restart count).', pool, (c) => c.restarts, registers);

    new Counter({
      name: 'orchestrator_autoscaler_decisions_total',
      help: 'Autoscaler decisions by action (scale-out, scale-in, none).',
      labelNames: ['action'],
      registers,
      collect() {
        this.reset();
        for (const [action, n] of Object.entries(view.scaling().decisions)) this.inc({ action }, n);
      },
    });
    new Gauge({
      name: 'orchestrator_autoscaler_desired_containers',
      help: 'Containers the latest scaling decision asked for.',
      registers,
      collect() {
        this.set(view.scaling().desired);
      },
    });
    new Gauge({
      name: 'orchestrator_autoscaler_actual_containers',
      help: 'Containers the orchestrator has now, in any state.',
      registers,
      collect() {
        this.set(pool.size);
      },
    });
    this.#machineFamilies(registers);
  }

  /** The machine autoscaler's families (issue 18): launches, releases, back-off, bounds and where the last launch's time went. */
  #machineFamilies(registers: Registry[]): void {
    const snapshot = () => this.#machines;
    const family = (name: string, help: string, type: 'counter' | 'gauge', read: (m: MachineScalerSnapshot) => MachineSample[]) =>
      new MachineFamily({ name, help, type, snapshot, read, registers });
    family('orchestrator_worker_launches_total', 'Workers the machine autoscaler launched, failed to launch, or adopted (found launching at its start), since the start.', 'counter', (m) => [
      { labels: { outcome: 'launched' }, value: m.counts.launched },
      { labels: { outcome: 'failed' }, value: m.counts.launchFailed },
      { labels: { outcome: 'adopted' }, value: m.counts.adopted },
    ]);
    family('orchestrator_worker_releases_total', 'Workers the machine autoscaler released, or failed to release, since the start.', 'counter', (m) => [
      { labels: { outcome: 'released' }, value: m.counts.released },
      { labels: { outcome: 'failed' }, value: m.counts.releaseFailed },
    ]);
    family('orchestrator_workers_launching', 'Workers being launched now (asked for, not yet in rotation).', 'gauge', (m) => [{ labels: {}, value: m.launching.length }]);
    family('orchestrator_workers_releasing', 'Workers being drained and released now.', 'gauge', (m) => [{ labels: {}, value: m.releasing.length }]);
    family('orchestrator_worker_launch_backoff_seconds', 'Time left before the next launch may be tried after failed ones (0 when none waits).', 'gauge', (m) => [
      { labels: {}, value: m.backoffUntil ? Math.max(0, Date.parse(m.backoffUntil) - Date.now()) / 1000 : 0 },
    ]);
    family('orchestrator_worker_bounds', 'The fewest and most workers the machine autoscaler keeps (minWorkers, maxWorkers).', 'gauge', (m) => [
      { labels: { bound: 'min' }, value: m.minWorkers },
      { labels: { bound: 'max' }, value: m.maxWorkers },
    ]);
    family(
      'orchestrator_worker_last_launch_seconds',
      'Where the latest launch took its time: decision (need seen to launch asked for; absent for a launch asked for otherwise), launch (to the machine running), start (to its containers healthy), probe (to in rotation here).',
      'gauge',
      (m) => {
        const last = m.launches.at(-1);
        return last ? launchPhases(last).map(({ phase, ms }) => ({ labels: { phase }, value: ms / 1000 })) : [];
      },
    );
  }

  request(route: string, status: number, container: string | undefined, client: string | undefined): void {
    const key = `${route} ${status} ${container ?? ''}`;
    const entry = this.#requestCounts.get(key);
    if (entry) entry.count++;
    else this.#requestCounts.set(key, { labels: { route, status: String(status), container: container ?? 'none' }, count: 1 });
    this.clientRequest(client, status);
  }

  /** One inference request of client key `client` (undefined: none valid) answered `status`. */
  clientRequest(client: string | undefined, status: number): void {
    const name = client ?? NO_CLIENT;
    let byStatus = this.#clientCounts.get(name);
    if (!byStatus) this.#clientCounts.set(name, (byStatus = new Map()));
    const entry = byStatus.get(status);
    if (entry) entry.count++;
    else byStatus.set(status, { labels: { client: name, status: String(status) }, count: 1 });
  }

  queueWait(ms: number): void {
    this.#queueWait.observe(ms / 1000);
  }

  upstream(ms: number): void {
    this.#upstream.observe(ms / 1000);
  }

  /** The Prometheus text exposition, and its content type. */
  async render(): Promise<{ contentType: string; body: string }> {
    this.#machines = this.#view.machines();
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }
}

/** A counter mirroring a lifetime count kept elsewhere. */
function lifetimeCounter(name: string, help: string, read: () => number, registers: Registry[]): void {
  new Counter({
    name,
    help,
    registers,
    collect() {
      this.reset();
      this.inc(read());
    },
  });
}

/** A per-container counter mirroring a count each container keeps; removed containers leave the exposition. */
function perContainerCounter(name: string, help: string, pool: PoolReading, read: (c: { probeFailures: number; restarts: number }) => number, registers: Registry[]): void {
  new Counter({
    name,
    help,
    labelNames: ['container', 'worker'],
    registers,
    collect() {
      this.reset();
      for (const c of pool.containers()) this.inc({ container: c.id, worker: c.workerId }, read(c));
    },
  });
}
