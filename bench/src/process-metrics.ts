import { request } from 'undici';
import { parseExposition } from '../../common/src/prometheus-text.js';

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

/** Scrape `baseUrl`/metrics once. */
export async function sampleProcess(baseUrl: string, t: number): Promise<ProcessSample> {
  const res = await request(`${baseUrl}/metrics`);
  const text = await res.body.text();
  if (res.statusCode !== 200) throw new Error(`GET /metrics answered ${res.statusCode}`);
  const metrics = parseExposition(text);
  // Summed over the series carrying `labels`; a metric missing altogether is an error, not a 0.
  const value = (name: string, labels?: Record<string, string>): number => {
    if (!metrics.samples.some((sample) => sample.name === name)) throw new Error(`/metrics has no sample ${name}`);
    return metrics.sum(name, labels);
  };
  return {
    t,
    rssBytes: value('process_resident_memory_bytes'),
    heapUsedBytes: value('nodejs_heap_size_used_bytes'),
    openFds: value('process_open_fds'),
    activeHandles: value('nodejs_active_handles_total'),
    eventLoopLagP99Ms: value('nodejs_eventloop_lag_p99_seconds') * 1000,
    queueLength: value('orchestrator_queue_length'),
    containersInRotation: value('orchestrator_containers', { state: 'free' }) + value('orchestrator_containers', { state: 'busy' }),
  };
}
