import { request } from 'undici';

/** What the orchestrator process reports about itself at one moment, from its GET /metrics. */
export interface ProcessSample {
  /** Seconds since the load started. */
  t: number;
  rssBytes: number;
  heapUsedBytes: number;
  openFds: number;
  activeHandles: number;
  /** Event-loop delay p99 over prom-client's monitoring window, in ms. */
  eventLoopLagP99Ms: number;
  queueLength: number;
  /** Containers taking requests (free or busy). */
  containersInRotation: number;
}

/** The series read, as the exposition writes them: prom-client's default metrics and some of the orchestrator's own. */
const METRICS = {
  rssBytes: 'process_resident_memory_bytes',
  heapUsedBytes: 'nodejs_heap_size_used_bytes',
  openFds: 'process_open_fds',
  activeHandles: 'nodejs_active_handles_total',
  eventLoopLagP99Seconds: 'nodejs_eventloop_lag_p99_seconds',
  queueLength: 'orchestrator_queue_length',
  free: 'orchestrator_containers{state="free"}',
  busy: 'orchestrator_containers{state="busy"}',
} as const;

/** The value of one series in a Prometheus text exposition, named with its labels exactly as written there; throws when it is missing. */
function seriesValue(exposition: string, series: string): number {
  const line = exposition.split('\n').find((l) => l.startsWith(`${series} `));
  if (line === undefined) throw new Error(`/metrics has no sample ${series}`);
  return Number(line.slice(series.length + 1).split(' ')[0]);
}

/** Scrape `baseUrl`/metrics once. */
export async function sampleProcess(baseUrl: string, t: number): Promise<ProcessSample> {
  const res = await request(`${baseUrl}/metrics`);
  const text = await res.body.text();
  if (res.statusCode !== 200) throw new Error(`GET /metrics answered ${res.statusCode}`);
  const value = (key: keyof typeof METRICS): number => seriesValue(text, METRICS[key]);
  return {
    t,
    rssBytes: value('rssBytes'),
    heapUsedBytes: value('heapUsedBytes'),
    openFds: value('openFds'),
    activeHandles: value('activeHandles'),
    eventLoopLagP99Ms: value('eventLoopLagP99Seconds') * 1000,
    queueLength: value('queueLength'),
    containersInRotation: value('free') + value('busy'),
  };
}
