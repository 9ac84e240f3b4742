import { request } from 'undici';
import { describe, expect, it } from 'vitest';
import { startBackend } from '../helpers/backend.js';
import { startOrchestrator, useRig } from '../helpers/orchestrator-fixture.js';
import { parseExposition, type Exposition } from '../../common/src/prometheus-text.js';
import { waitFor } from '../helpers/wait-for.js';

const rig = useRig();

async function scrape(): Promise<Exposition> {
  const res = await request(`${rig.running!.url}/metrics`);
  expect(res.statusCode).toBe(200);
  expect(res.headers['content-type']).toMatch(/^text\/plain; version=0\.0\.4/);
  return parseExposition(await res.body.text());
}

const post = (body = '{"text":"hi"}') => request(`${rig.running!.url}/new_request`, { method: 'POST', headers: { 'content-type': 'application/json' }, body });

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
      'orchestrator_workers',
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
