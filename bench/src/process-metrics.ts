import { execFileSync } from 'node:child_process';
import { readFile } from 'node:fs/promises';
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
  /** Event-loop delay p99 and max over prom-client's monitoring window (since the previous scrape, or the start), in ms. */
  eventLoopLagP99Ms: number;
  eventLoopLagMaxMs: number;
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
    eventLoopLagMaxMs: value('nodejs_eventloop_lag_max_seconds') * 1000,
    queueLength: value('orchestrator_queue_length'),
    containersInRotation: value('orchestrator_containers', { state: 'free' }) + value('orchestrator_containers', { state: 'busy' }),
  };
}

/** Clock ticks per second of /proc's CPU times (USER_HZ). */
const TICKS_PER_SECOND = Number(execFileSync('getconf', ['CLK_TCK']).toString().trim());

/** CPU time `pid` has used so far, user plus system, in ms (Linux, /proc; 1000 / USER_HZ ms resolution). */
export async function cpuTimeMs(pid: number): Promise<number> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
  // Fields after the command name (which may hold spaces): state is field 3, utime 14, stime 15.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / TICKS_PER_SECOND;
}

/** CPU time the whole machine has spent busy (not idle or waiting for I/O) so far, summed over cores, in ms. */
export async function machineBusyMs(): Promise<number> {
  const [cpu] = (await readFile('/proc/stat', 'utf8')).split('\n');
  // cpu user nice system idle iowait irq softirq steal (then guest times, already counted in user and nice)
  const ticks = cpu!.trim().split(/\s+/).slice(1, 9).map(Number);
  const busy = ticks.reduce((a, b) => a + b, 0) - ticks[3]! - ticks[4]!;
  return (busy * 1000) / TICKS_PER_SECOND;
}
