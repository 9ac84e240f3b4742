import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { request } from 'undici';
import { orchestratorConfigSchema } from '../../orchestrator/src/config.js';
import { unmanagedInventory } from '../../provisioning/src/inventory.js';
import type { StateFile } from '../../status/src/schema.js';
import { BackendFarm } from './backend-farm-process.js';
import type { BackendStats } from './backend-farm.js';
import type { Stoppable } from './model-bench.js';
import { cpuTimeMs, machineBusyMs } from './process-metrics.js';
import type { ScaleResult, ScaleRun, ScaleWindow } from './scale-report.js';
import { countStatusWrites, type StatusWriteCounter } from './status-writes.js';
import { startCompiledOrchestrator, startHaproxy, type Target } from './targets.js';
import { startWrk } from './wrk.js';
import { pollUntil } from '../../common/src/poll-until.js';

const CONTAINERS = 200;
const PER_WORKER = 4;
const SERVICE_MS = 20;
/** Twice the containers: a queue always holds the next request for a container that answers. */
const CONNECTIONS = 2 * CONTAINERS;
const ROUNDS = 3;
const ROUND_SECONDS = 7;
const DIRECT_SECONDS = 4;
const IDLE_SECONDS = 6;
const WARM_UP_SECONDS = 3;
/** Requests per second while idle otherwise: each changes the pool, so the status file is written at its own pace. */
const TRICKLE_RPS = 10;
/** A window starts this long after wrk does and ends this long before it stops: connections are up, none closing. */
const EDGE_SECONDS = 1;

export interface ScaleOptions {
  /** Where the state files go. */
  dir: string;
  /** Called with each process started, so the caller can stop it if interrupted. */
  track(running: Stoppable): void;
}

/** The state file the orchestrator starts with: `ports.length` unmanaged containers, `PER_WORKER` on each worker. */
export function scaleInventory(ports: number[]): StateFile {
  const state = unmanagedInventory(
    'bench-scale',
    ports.map((port, i) => ({ id: `w${Math.floor(i / PER_WORKER) + 1}-c${(i % PER_WORKER) + 1}`, port })),
  );
  const [worker] = state.workers;
  state.workers = Array.from({ length: ports.length / PER_WORKER }, (_, w) => ({ ...worker!, id: `w${w + 1}` }));
  state.containers = state.containers.map((c, i) => ({ ...c, workerId: `w${Math.floor(i / PER_WORKER) + 1}` }));
  return state;
}

/** Counters at one moment: CPU used so far by each process and the machine, and what the backends saw. */
interface Sample {
  at: number;
  cpuMs: ScaleWindow['cpuMs'];
  requests: number;
  probes: number;
  statusWrites: number;
}

interface Watched {
  farm: BackendFarm;
  orchestrator: Target;
  writes: StatusWriteCounter;
}

const sum = (stats: BackendStats[], pick: (s: BackendStats) => number): number => stats.reduce((n, s) => n + pick(s), 0);

/** `proxyPid`: the proxy under test (the orchestrator when none is); `clientPid`: wrk, if running; `direct`: count the direct backend's requests. */
async function sample(w: Watched, proxyPid: number, clientPid: number | null, direct = false): Promise<Sample> {
  const [{ stats, direct: directStats }, proxy, farm, client, machine] = await Promise.all([
    w.farm.snapshot(),
    cpuTimeMs(proxyPid),
    cpuTimeMs(w.farm.pid),
    clientPid === null ? 0 : cpuTimeMs(clientPid),
    machineBusyMs(),
  ]);
  return {
    at: performance.now(),
    cpuMs: { proxy, farm, client, machine },
    requests: direct ? directStats!.served : sum(stats, (s) => s.served),
    probes: sum(stats, (s) => s.probes),
    statusWrites: w.writes.count,
  };
}

function windowOf(a: Sample, b: Sample): ScaleWindow {
  return {
    seconds: (b.at - a.at) / 1000,
    requests: b.requests - a.requests,
    probes: b.probes - a.probes,
    statusWrites: b.statusWrites - a.statusWrites,
    cpuMs: {
      proxy: b.cpuMs.proxy - a.cpuMs.proxy,
      farm: b.cpuMs.farm - a.cpuMs.farm,
      client: b.cpuMs.client - a.cpuMs.client,
      machine: b.cpuMs.machine - a.cpuMs.machine,
    },
  };
}

/** One window of `seconds` with no load but `rps` requests per second sent one at a time from here. */
async function quiet(w: Watched, seconds: number, rps: number): Promise<ScaleWindow> {
  const a = await sample(w, w.orchestrator.pid, null);
  const until = a.at + seconds * 1000;
  // On a fixed schedule, so a slow answer does not lower the rate.
  for (let sent = 0; rps > 0 && a.at + (sent * 1000) / rps < until; sent++) {
    await sleep(a.at + (sent * 1000) / rps - performance.now());
    await (await request(w.orchestrator.url, { method: 'POST', body: '{"text":"trickle"}' })).body.dump();
  }
  await sleep(until - performance.now());
  return windowOf(a, await sample(w, w.orchestrator.pid, null));
}

/** One wrk run on `url` at CONNECTIONS for `seconds`, with the CPU window measured inside it; `proxyPid` is sampled as the proxy. */
async function loadRun(w: Watched, target: ScaleRun['target'], url: string, proxyPid: number, seconds: number): Promise<ScaleRun> {
  const direct = target === 'direct';
  await w.farm.reset(SERVICE_MS);
  const wrk = startWrk(url, CONNECTIONS, seconds);
  await sleep(EDGE_SECONDS * 1000);
  const a = await sample(w, proxyPid, wrk.pid, direct);
  await sleep((seconds - 2 * EDGE_SECONDS) * 1000);
  const b = await sample(w, proxyPid, wrk.pid, direct);
  const result = await wrk.result;
  const failed = Object.values(result.errors).reduce((x, y) => x + y, 0);
  if (failed > 0) throw new Error(`scale, ${target}: wrk counted errors ${JSON.stringify(result.errors)}`);
  const snapshot = await w.farm.snapshot();
  const stats = direct ? [snapshot.direct!] : snapshot.stats;
  const overloaded = direct ? [] : stats.filter((s) => s.maxConcurrency > 1);
  if (overloaded.length > 0) throw new Error(`scale: ${target} sent concurrent requests to single-concurrency backends (${overloaded.map((s) => s.id).join(', ')})`);
  const meanServiceMs = sum(stats, (s) => s.meanServiceMs * s.served) / Math.max(1, sum(stats, (s) => s.served));
  process.stderr.write(`[bench] scale  ${target.padEnd(12)} ${result.throughputRps.toFixed(0).padStart(6)} req/s  p50 ${result.latencyMs.p50.toFixed(1)} ms  p99 ${result.latencyMs.p99.toFixed(1)} ms\n`);
  return {
    target,
    throughputRps: result.throughputRps,
    latencyMs: result.latencyMs,
    meanServiceMs,
    meanGapMs: sum(stats, (s) => s.meanGapMs) / stats.length,
    // The physical limit: every container busy all the time, for its own measured service time.
    limitRps: ((direct ? CONNECTIONS : CONTAINERS) * 1000) / meanServiceMs,
    window: windowOf(a, b),
  };
}

/** A compiled orchestrator over the farm's containers, with `args`, for the length of `use`; its status writes counted. */
async function withOrchestrator<T>(farm: BackendFarm, options: ScaleOptions, name: string, args: string[], use: (w: Watched) => Promise<T>): Promise<T> {
  const statePath = join(options.dir, `scale-${name}-state.json`);
  await writeFile(statePath, JSON.stringify(scaleInventory(farm.ports)));
  const orchestrator = await startCompiledOrchestrator(statePath, `orchestrator (scale, ${name})`, args);
  options.track(orchestrator);
  const writes = countStatusWrites(statePath);
  try {
    await inRotation(orchestrator, CONTAINERS);
    return await use({ farm, orchestrator, writes });
  } finally {
    writes.close();
    await orchestrator.stop();
  }
}

/**
 * 200 emulated containers, 4 on each of 50 workers, at S = 20 ms behind the compiled orchestrator,
 * driven by wrk. First the orchestrator's background cost, idle: without probes (one pass at its
 * start, then none for an hour), with probes, then with probes and status writes; then ROUNDS
 * rounds of the same load through the orchestrator, through HAProxy (running only then), and on
 * one backend serving every connection at once (the client's and the backends' own ceiling).
 */
export async function benchScale(options: ScaleOptions): Promise<ScaleResult> {
  const farm = new BackendFarm(CONTAINERS, { directSlots: CONNECTIONS });
  options.track(farm);
  await farm.start();
  try {
    const unprobed = await withOrchestrator(farm, options, 'unprobed', ['--health-interval-ms', String(3_600_000)], async (w) => {
      // Past the start's own probe pass.
      await sleep(1_000);
      return quiet(w, IDLE_SECONDS, 0);
    });
    return await withOrchestrator(farm, options, 'probed', [], async (w) => {
      const idle = await quiet(w, IDLE_SECONDS, 0);
      const trickle = await quiet(w, IDLE_SECONDS, TRICKLE_RPS);
      // Warm-up, unmeasured: connections to every container open, code optimised.
      await startWrk(w.orchestrator.url, CONNECTIONS, WARM_UP_SECONDS).result;
      const runs: ScaleRun[] = [];
      for (let round = 0; round < ROUNDS; round++) {
        runs.push(await loadRun(w, 'orchestrator', w.orchestrator.url, w.orchestrator.pid, ROUND_SECONDS));
        // HAProxy runs only for its own runs: its health checks would count as the orchestrator's probes.
        const haproxy = await startHaproxy(options.dir, farm.ports, 'haproxy (scale)');
        options.track(haproxy);
        try {
          runs.push(await loadRun(w, 'haproxy', haproxy.url, haproxy.pid, ROUND_SECONDS));
        } finally {
          await haproxy.stop();
        }
        // The orchestrator, idle, stands as the proxy: its probes run on the same cores.
        runs.push(await loadRun(w, 'direct', `http://127.0.0.1:${farm.directPort}/run_model`, w.orchestrator.pid, DIRECT_SECONDS));
      }
      const defaults = orchestratorConfigSchema.parse({});
      return {
        date: new Date().toISOString(),
        containers: CONTAINERS,
        workers: CONTAINERS / PER_WORKER,
        serviceMs: SERVICE_MS,
        connections: CONNECTIONS,
        config: { healthIntervalMs: defaults.healthIntervalMs, healthProbeConcurrency: defaults.healthProbeConcurrency, statusWriteIntervalMs: defaults.statusWriteIntervalMs },
        unprobed,
        idle,
        trickle: { requestsPerSecond: TRICKLE_RPS, window: trickle },
        runs,
      };
    });
  } finally {
    await farm.stop();
  }
}

/** Wait until the orchestrator has every container in rotation. */
async function inRotation(target: Target, containers: number): Promise<void> {
  let ready = 0;
  await pollUntil(
    async () => {
      const status = (await (await request(target.url.replace('/new_request', '/status'))).body.json()) as StateFile;
      ready = status.containers.filter((c) => c.state === 'free' || c.state === 'busy').length;
      return ready === containers ? true : undefined;
    },
    { timeoutMs: 30_000, intervalMs: 200, onTimeout: () => new Error(`scale: ${ready} of ${containers} containers in rotation after 30 s`) },
  );
}
