import { setTimeout as sleep } from 'node:timers/promises';
import { pollUntil } from '../../common/src/poll-until.js';
import type { BackendFarm } from './backend-farm-process.js';
import type { BackendStats } from './backend-farm.js';
import { cpuTimeMs } from './process-metrics.js';
import type { Measurement } from './report.js';
import { startWrk } from './wrk.js';

/** Where wrk sends its load: a proxy, or (`pid` null) a backend of the farm called directly. */
export interface LoadTarget {
  name: string;
  url: string;
  /** The proxy's process; null when there is none. */
  pid: number | null;
  /** It is the farm's `direct` backend (serving many at once): count it rather than the single-request ones. */
  direct?: boolean;
}

export interface RunSpec {
  serviceMs: number;
  /** wrk's connections, each with one request in flight. */
  concurrency: number;
  /** Whole seconds (wrk takes no fraction), more than 1: the CPU window leaves half a second at each end. */
  seconds: number;
}

/** The CPU window starts this long after wrk does and ends this long before it stops: connections are up, none closing. */
const EDGE_SECONDS = 0.5;

const sum = (stats: BackendStats[], pick: (s: BackendStats) => number): number => stats.reduce((n, s) => n + pick(s), 0);

/** CPU used so far by each process, and requests the counted backends answered. */
interface Counters {
  requests: number;
  cpuMs: { proxy: number; client: number; farm: number };
}

async function counters(farm: BackendFarm, proxyPid: number | null, clientPid: number, direct: boolean): Promise<Counters> {
  const [snapshot, proxy, client, farmMs] = await Promise.all([
    farm.snapshot(),
    proxyPid === null ? 0 : cpuTimeMs(proxyPid),
    cpuTimeMs(clientPid),
    cpuTimeMs(farm.pid),
  ]);
  const stats = direct ? [snapshot.direct!] : snapshot.stats;
  return { requests: sum(stats, (s) => s.served), cpuMs: { proxy, client, farm: farmMs } };
}

/** How long the backends must hold nothing and answer nothing more before a run counts as over, in ms. */
const QUIET_MS = 100;

/**
 * Wait until the farm is quiet: wrk stops with requests in flight, and a proxy may still send those
 * it queued (HAProxy keeps a closed client's queued requests without `option abortonclose`). The
 * next run, perhaps through another proxy over the same backends, must find them idle.
 */
async function drained(farm: BackendFarm): Promise<void> {
  let last = -1;
  await pollUntil(
    async () => {
      const { stats, direct } = await farm.snapshot();
      const all = direct ? [...stats, direct] : stats;
      const served = sum(all, (s) => s.served);
      const quiet = served === last && all.every((s) => s.inFlight === 0);
      last = served;
      return quiet ? true : undefined;
    },
    { timeoutMs: 30_000, intervalMs: QUIET_MS, onTimeout: () => new Error('the backends were still answering 30 s after wrk stopped') },
  );
}

/**
 * One wrk run of `spec.seconds` on `target`, checked from the backends' side (no single-request
 * backend ever held two requests; wrk counted no error of any kind), with each process's CPU per
 * request over the run's middle (from /proc).
 */
export async function measure(farm: BackendFarm, target: LoadTarget, spec: RunSpec): Promise<Measurement> {
  const direct = target.direct ?? false;
  await farm.reset(spec.serviceMs);
  const wrk = startWrk(target.url, spec.concurrency, spec.seconds);
  await sleep(EDGE_SECONDS * 1000);
  const a = await counters(farm, target.pid, wrk.pid, direct);
  await sleep((spec.seconds - 2 * EDGE_SECONDS) * 1000);
  const b = await counters(farm, target.pid, wrk.pid, direct);
  const result = await wrk.result;
  await drained(farm);
  const snapshot = await farm.snapshot();
  const stats = direct ? [snapshot.direct!] : snapshot.stats;
  const overloaded = direct ? [] : stats.filter((s) => s.maxConcurrency > 1);
  if (overloaded.length > 0) {
    throw new Error(`${target.name} sent concurrent requests to a single-concurrency backend (${overloaded.map((s) => `${s.id}: ${s.maxConcurrency}`).join(', ')}): the contract is broken`);
  }
  if (Object.values(result.errors).some((n) => n > 0)) throw new Error(`${target.name}: wrk counted errors ${JSON.stringify(result.errors)} in ${result.requests} requests`);
  if (result.requests === 0) throw new Error(`${target.name}: no request completed`);
  const windowRequests = b.requests - a.requests;
  if (windowRequests === 0) throw new Error(`${target.name}: no request answered in the measured window`);
  const usPerRequest = (pick: (c: Counters['cpuMs']) => number): number => ((pick(b.cpuMs) - pick(a.cpuMs)) * 1000) / windowRequests;
  const served = stats.map((s) => s.served);
  const meanServiceMs = sum(stats, (s) => s.meanServiceMs * s.served) / Math.max(1, sum(stats, (s) => s.served));
  return {
    target: target.name,
    throughputRps: result.throughputRps,
    latencyMs: { p50: result.latencyMs.p50, p90: result.latencyMs.p90, p99: result.latencyMs.p99 },
    // The physical limit: every backend (direct: every connection) busy for its own measured service time per request.
    limitRps: spec.serviceMs > 0 ? ((direct ? spec.concurrency : stats.length) * 1000) / meanServiceMs : null,
    meanServiceMs,
    meanGapMs: sum(stats, (s) => s.meanGapMs) / stats.length,
    spread: { min: Math.min(...served), max: Math.max(...served) },
    maxBackendConcurrency: Math.max(...stats.map((s) => s.maxConcurrency)),
    cpuUsPerRequest: {
      proxy: target.pid === null ? null : usPerRequest((c) => c.proxy),
      client: usPerRequest((c) => c.client),
      farm: usPerRequest((c) => c.farm),
    },
  };
}
