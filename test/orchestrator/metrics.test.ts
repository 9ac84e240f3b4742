import { request } from 'undici';
import { afterEach, describe, expect, it } from 'vitest';
import { startBackend } from '../helpers/backend.js';
import { startOrchestrator, useRig } from '../helpers/orchestrator-fixture.js';
import { parseExposition, type Exposition } from '../../common/src/prometheus-text.js';
import { waitFor } from '../helpers/wait-for.js';
import { useTempCluster } from '../helpers/cluster.js';
import { machineCluster, machineClusterView, machineSnapshot, startMachineOrchestrator } from '../helpers/machine-view.js';
import { OrchestratorMetrics } from '../../orchestrator/src/metrics.js';
import { keyHash } from '../../orchestrator/src/access-control.js';
import type { Orchestrator } from '../../orchestrator/src/orchestrator.js';
import type { MachineScalerSnapshot } from '../../status/src/schema.js';

const rig = useRig();

async function scrape(url = rig.running!.url): Promise<Exposition> {
  const res = await request(`${url}/metrics`);
  expect(res.statusCode).toBe(200);
  expect(res.headers['content-type']).toMatch(/^text\/plain; version=0\.0\.4/);
  return parseExposition(await res.body.text());
}

const post = (body = '{"text":"hi"}') => request(`${rig.running!.url}/new_request`, { method: 'POST', headers: { 'content-type': 'application/json' }, body });

/** The machine autoscaler's families (and their _total samples). */
const MACHINE_FAMILY = /^orchestrator_worker(s_launching|s_releasing|_launches_total|_releases_total|_launch_backoff_seconds|_bounds|_last_launch_seconds)$/;

describe('GET /metrics', () => {
  it('is valid Prometheus text whose names follow the conventions, with every metric documented', async () => {
    rig.backends = [await startBackend('a')];
    rig.running = await startOrchestrator(rig.backends);
    const m = await scrape();
    const ours = [...m.types].filter(([name]) => name.startsWith('orchestrator_'));
    expect(ours.map(([name]) => name).sort()).toEqual([
      'orchestrator_autoscaler_actual_containers',
      'orchestrator_autoscaler_decisions_total',
      'orchestrator_autoscaler_desired_containers',
      'orchestrator_client_requests_total',
      'orchestrator_container_in_flight',
      'orchestrator_container_replacements_total',
      'orchestrator_containers',
      'orchestrator_health_check_failures_total',
      'orchestrator_queue_cancelled_total',
      'orchestrator_queue_length',
      'orchestrator_queue_oldest_wait_seconds',
      'orchestrator_queue_rejected_total',
      'orchestrator_queue_timeouts_total',
      'orchestrator_queue_wait_seconds',
      'orchestrator_redispatches_total',
      'orchestrator_requests_refused_total',
      'orchestrator_requests_total',
      'orchestrator_upstream_latency_seconds',
      'orchestrator_worker_bounds',
      'orchestrator_worker_last_launch_seconds',
      'orchestrator_worker_launch_backoff_seconds',
      'orchestrator_worker_launches_total',
      'orchestrator_worker_releases_total',
      'orchestrator_workers',
      'orchestrator_workers_launching',
      'orchestrator_workers_releasing',
    ]);
    for (const [name, type] of ours) {
      expect(m.help.get(name), name).toBeTruthy();
      // Counters end in _total; time is in seconds, never ms.
      expect(name.endsWith('_total'), name).toBe(type === 'counter');
      expect(name).not.toMatch(/_ms$|_milliseconds/);
    }
    // The process's own metrics come along.
    expect(m.types.get('process_resident_memory_bytes')).toBe('gauge');
    expect(m.types.get('nodejs_eventloop_lag_seconds')).toBe('gauge');
    // Every container's in-flight gauge is there, free containers counted.
    expect(m.sum('orchestrator_containers', { state: 'free' })).toBe(1);
    expect(m.sum('orchestrator_container_in_flight', { container: 'a', worker: 'w1' })).toBe(0);
    expect([m.sum('orchestrator_workers', { state: 'up' }), m.sum('orchestrator_workers', { state: 'down' })]).toEqual([1, 0]);
    // No machine autoscaler here: its families are documented but have no sample (a 0 would read as "none launched").
    expect(m.samples.filter((s) => MACHINE_FAMILY.test(s.name))).toEqual([]);
    const { pool } = rig.running!.orchestrator;
    pool.setWorkerState(pool.worker('w1')!, 'down', 'test');
    const after = await scrape();
    expect([after.sum('orchestrator_workers', { state: 'up' }), after.sum('orchestrator_workers', { state: 'down' })]).toEqual([0, 1]);
  });

  it('counts requests by route, status and container, and times queue waits and upstream answers', async () => {
    rig.backends = await Promise.all(['a', 'b'].map((id) => startBackend(id, { delayMs: 5 })));
    rig.running = await startOrchestrator(rig.backends);
    const answers = await Promise.all(Array.from({ length: 20 }, () => post()));
    for (const a of answers) await a.body.dump();
    await request(`${rig.running.url}/anything/else`).then((r) => r.body.dump());
    // Another spelling of the predict route is the predict route.
    await request(`${rig.running.url}/New_Request`, { method: 'POST', body: '{}' }).then((r) => r.body.dump());
    const m = await scrape();
    expect(m.sum('orchestrator_requests_total', { route: '/new_request', status: '200' })).toBe(21);
    const byContainer = ['a', 'b'].map((container) => m.sum('orchestrator_requests_total', { route: '/new_request', container }));
    expect(byContainer[0]! + byContainer[1]!).toBe(21);
    expect(Math.min(...byContainer)).toBeGreaterThan(0);
    expect(m.sum('orchestrator_requests_total', { route: 'passthrough' })).toBe(1);
    expect(m.sum('orchestrator_queue_wait_seconds_count')).toBe(22);
    expect(m.sum('orchestrator_upstream_latency_seconds_count')).toBe(22);
    // 5 ms of service each: no answer came back faster than that.
    expect(m.sum('orchestrator_upstream_latency_seconds_bucket', { le: '0.0025' })).toBe(0);
    expect(m.sum('orchestrator_upstream_latency_seconds_bucket', { le: '+Inf' })).toBe(22);
  });

  it('counts inference requests by client key name and status, the key check\'s refusals included, never showing a key', async () => {
    const keys = { app: 'orch_metrics-app-key-0123456789abc', viewer: 'orch_metrics-viewer-key-0123456789abc', limited: 'orch_metrics-limited-key-0123456789' };
    rig.backends = [await startBackend('a')];
    rig.running = await startOrchestrator(rig.backends, {
      clientKeys: [
        { name: 'app', sha256: keyHash(keys.app), scopes: ['infer'] },
        { name: 'viewer', sha256: keyHash(keys.viewer), scopes: ['read'] },
        { name: 'limited', sha256: keyHash(keys.limited), scopes: ['infer'], ratePerSecond: 0.001, burst: 1 },
      ],
    });
    const send = async (path: string, key?: string) => {
      const response = await request(`${rig.running!.url}${path}`, { method: 'POST', headers: key ? { authorization: `Bearer ${key}` } : {}, body: '{}' });
      await response.body.dump();
      return response.statusCode;
    };
    expect([await send('/new_request', keys.app), await send('/run_model', keys.app), await send('/new_request')]).toEqual([200, 200, 401]);
    expect([await send('/new_request', 'orch_not-a-key-0123456789'), await send('/new_request', keys.viewer)]).toEqual([401, 403]);
    expect([await send('/new_request', keys.limited), await send('/new_request', keys.limited)]).toEqual([200, 429]);
    const res = await request(`${rig.running.url}/metrics`, { headers: { authorization: `Bearer ${keys.viewer}` } });
    const text = await res.body.text();
    const m = parseExposition(text);
    const count = (client: string, status: string) => m.sum('orchestrator_client_requests_total', { client, status });
    expect([count('app', '200'), count('-', '401'), count('-', '403'), count('limited', '200'), count('limited', '429')]).toEqual([2, 2, 1, 1, 1]);
    expect(m.sum('orchestrator_client_requests_total')).toBe(7);
    // The requests total counts what reached the queue, as before: the refusals at the key check are not there.
    expect(m.sum('orchestrator_requests_total')).toBe(3);
    for (const key of Object.values(keys)) expect(text).not.toContain(key);
  });

  it('shows a busy container, the queue and its rejections as they happen', async () => {
    const only = await startBackend('only', { manual: true });
    rig.backends = [only];
    rig.running = await startOrchestrator(rig.backends, { maxQueue: 2 });
    const held = [post(), post(), post()];
    for (const h of held) h.catch(() => {}); // Settled below; a failed assertion must not leave them unhandled.
    await waitFor(() => only.held === 1 && rig.running!.orchestrator.queue.length === 2);
    let m = await scrape();
    expect(m.sum('orchestrator_containers', { state: 'busy' })).toBe(1);
    expect(m.sum('orchestrator_container_in_flight', { container: 'only' })).toBe(1);
    expect(m.sum('orchestrator_queue_length')).toBe(2);
    expect(m.sum('orchestrator_queue_oldest_wait_seconds')).toBeGreaterThan(0);

    const refused = await post();
    expect(refused.statusCode).toBe(503);
    await refused.body.dump();
    m = await scrape();
    expect(m.sum('orchestrator_queue_rejected_total')).toBe(1);
    expect(m.sum('orchestrator_requests_total', { status: '503', container: 'none' })).toBe(1);

    for (let i = 0; i < 3; i++) {
      await waitFor(() => only.held === 1);
      only.answerNext();
    }
    for (const r of await Promise.all(held)) await r.body.dump();
    m = await scrape();
    expect(m.sum('orchestrator_queue_length')).toBe(0);
    expect(m.sum('orchestrator_queue_wait_seconds_count')).toBe(3);
    expect(m.sum('orchestrator_requests_total', { status: '200', container: 'only' })).toBe(3);
  });

  it('counts failed health probes per container and shows it unhealthy', async () => {
    rig.backends = await Promise.all(['a', 'b'].map((id) => startBackend(id)));
    rig.running = await startOrchestrator(rig.backends, { healthFall: 2 });
    await rig.backends[1]!.kill();
    await waitFor(() => rig.running!.orchestrator.pool.get('b')!.health === 'unhealthy', 5_000);
    const m = await scrape();
    expect(m.sum('orchestrator_containers', { state: 'unhealthy' })).toBe(1);
    expect(m.sum('orchestrator_health_check_failures_total', { container: 'b' })).toBeGreaterThanOrEqual(2);
    expect(m.sum('orchestrator_health_check_failures_total', { container: 'a' })).toBe(0);
  });
});

describe('the machine autoscaler in /metrics', () => {
  /** Metrics over a cluster view whose machine autoscaler reports `current.snapshot`. */
  function machineMetrics(snapshot: MachineScalerSnapshot | null) {
    const current = { snapshot };
    const metrics = new OrchestratorMetrics(machineClusterView(machineCluster(), () => current.snapshot));
    return { current, scrape: async () => parseExposition((await metrics.render()).body) };
  }

  it('shows launches and releases by outcome, launching and releasing workers, the back-off left, the bounds and the last launch by phase', async () => {
    const { scrape } = machineMetrics(machineSnapshot());
    const m = await scrape();
    const values = (name: string) => m.samples.filter((s) => s.name === name).map((s) => [s.labels, s.value]);
    expect(values('orchestrator_worker_launches_total')).toEqual([[{ outcome: 'launched' }, 3], [{ outcome: 'failed' }, 2], [{ outcome: 'adopted' }, 1]]);
    expect(values('orchestrator_worker_releases_total')).toEqual([[{ outcome: 'released' }, 5], [{ outcome: 'failed' }, 0]]);
    expect(values('orchestrator_workers_launching')).toEqual([[{}, 1]]);
    expect(values('orchestrator_workers_releasing')).toEqual([[{}, 1]]);
    expect(values('orchestrator_worker_bounds')).toEqual([[{ bound: 'min' }, 1], [{ bound: 'max' }, 4]]);
    // The latest launch (w2), in seconds.
    expect(values('orchestrator_worker_last_launch_seconds')).toEqual([[{ phase: 'decision' }, 1.5], [{ phase: 'launch' }, 2.25], [{ phase: 'start' }, 3], [{ phase: 'probe' }, 0.125]]);
    // 30 s of back-off from when the snapshot was made, a few ms ago.
    expect(m.sum('orchestrator_worker_launch_backoff_seconds')).toBeGreaterThan(29);
    expect(m.sum('orchestrator_worker_launch_backoff_seconds')).toBeLessThanOrEqual(30);
    // The workers' own states, draining included.
    expect(['up', 'down', 'draining'].map((state) => m.sum('orchestrator_workers', { state }))).toEqual([1, 0, 1]);
    expect(m.types.get('orchestrator_worker_launches_total')).toBe('counter');
    expect(m.types.get('orchestrator_worker_launch_backoff_seconds')).toBe('gauge');
  });

  it('reads the snapshot at each scrape: back-off over is 0, a launch with no need behind it has no decision phase, and no machine autoscaler is no series', async () => {
    const { current, scrape } = machineMetrics(machineSnapshot());
    current.snapshot = machineSnapshot(Date.now() - 60_000, {
      launching: [],
      launches: [{ workerId: 'w9', needSince: null, decisionMs: null, launchMs: 500, startMs: 250, probeMs: 50 }],
    });
    let m = await scrape();
    expect(m.sum('orchestrator_worker_launch_backoff_seconds')).toBe(0);
    expect(m.sum('orchestrator_workers_launching')).toBe(0);
    expect(m.samples.filter((s) => s.name === 'orchestrator_worker_last_launch_seconds').map((s) => [s.labels.phase, s.value])).toEqual([['launch', 0.5], ['start', 0.25], ['probe', 0.05]]);

    current.snapshot = machineSnapshot(Date.now(), { backoffUntil: null, launches: [] });
    m = await scrape();
    expect(m.sum('orchestrator_worker_launch_backoff_seconds')).toBe(0);
    expect(m.samples.filter((s) => s.name === 'orchestrator_worker_last_launch_seconds')).toEqual([]);

    current.snapshot = null;
    m = await scrape();
    expect(m.samples.filter((s) => MACHINE_FAMILY.test(s.name))).toEqual([]);
    expect(m.types.get('orchestrator_worker_bounds')).toBe('gauge');
  });
});

describe('GET /metrics of an orchestrator that launches workers (real worker processes)', () => {
  const cluster = useTempCluster(2);
  let orchestrator: Orchestrator | undefined;
  afterEach(async () => {
    await orchestrator?.close();
    orchestrator = undefined;
  });

  it('counts the worker launched, shows the bounds and where its launch took its time', { timeout: 60_000 }, async () => {
    const started = await startMachineOrchestrator(cluster);
    orchestrator = started.orchestrator;
    let m = await scrape(started.url);
    expect(m.samples.filter((s) => s.name === 'orchestrator_worker_launches_total').map((s) => [s.labels.outcome, s.value])).toEqual([['launched', 0], ['failed', 0], ['adopted', 0]]);
    expect(m.samples.filter((s) => s.name === 'orchestrator_worker_last_launch_seconds')).toEqual([]);

    orchestrator.autoscaler.scaleTo(4, 'test');
    const o = orchestrator;
    await waitFor(() => o.pool.capacity() === 4, 30_000, 'w2 launched and its containers in rotation');
    m = await scrape(started.url);
    expect(m.sum('orchestrator_worker_launches_total', { outcome: 'launched' })).toBe(1);
    expect(m.sum('orchestrator_workers', { state: 'up' })).toBe(2);
    expect([m.sum('orchestrator_workers_launching'), m.sum('orchestrator_workers_releasing'), m.sum('orchestrator_worker_launch_backoff_seconds')]).toEqual([0, 0, 0]);
    expect([m.sum('orchestrator_worker_bounds', { bound: 'min' }), m.sum('orchestrator_worker_bounds', { bound: 'max' })]).toEqual([1, 2]);
    const phases = new Map(m.samples.filter((s) => s.name === 'orchestrator_worker_last_launch_seconds').map((s) => [s.labels.phase, s.value]));
    expect([...phases.keys()]).toEqual(['decision', 'launch', 'start', 'probe']);
    // Starting real worker processes takes a while; the sum is about what the launch took here.
    expect(phases.get('start')).toBeGreaterThan(0);
    expect([...phases.values()].reduce((a, b) => a + b)).toBeLessThan(30);
  });
});
