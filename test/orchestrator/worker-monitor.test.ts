import { describe, expect, it } from 'vitest';
import { createLogger } from '../../common/src/logger.js';
import { Healer } from '../../orchestrator/src/healer.js';
import { WorkerMonitor } from '../../orchestrator/src/worker-monitor.js';
import { LABELS } from '../../runtime/src/driver.js';
import type { Worker } from '../../orchestrator/src/container-pool.js';
import { place } from '../../orchestrator/src/placement.js';
import { fakeCluster } from '../helpers/fake-runtime.js';

const log = createLogger('test', 'silent');
const thresholds = { fall: 3, rise: 2 };

/** Workers w1 (one container on 5000) and w2 (two, on 5100 and 5101), a monitor, and w2's reachability. */
function twoWorkers() {
  const unreachable = new Set<string>();
  const listed: string[] = [];
  const cluster = fakeCluster(2, {
    list: async (worker: Worker) => {
      listed.push(worker.id);
      if (unreachable.has(worker.id)) throw new Error('connect ECONNREFUSED');
      return (await cluster.driver.list()).filter((info) => info.labels[LABELS.worker] === worker.id);
    },
  });
  cluster.add('w1', 5000);
  const onW2 = [cluster.add('w2', 5100), cluster.add('w2', 5101)];
  // New containers on w1 answer /health.
  for (const port of [5001, 5002, 5003]) cluster.healthy.add(port);
  const monitor = new WorkerMonitor({ pool: cluster.pool, operations: cluster.operations, log }, { intervalMs: 1_000, timeoutMs: 1_000, ...thresholds });
  const ticks = async (n: number) => {
    for (let i = 0; i < n; i++) await monitor.tick();
  };
  return { cluster, onW2, unreachable, listed, monitor, ticks, w2: cluster.pool.worker('w2')! };
}

describe('WorkerMonitor', () => {
  it('leaves a worker alone, without asking its runtime, while any of its containers is in rotation', async () => {
    const { cluster, onW2, unreachable, listed, ticks, w2 } = twoWorkers();
    unreachable.add('w2');
    cluster.pool.setHealth(onW2[0]!, 'unhealthy', 'crashed');
    await ticks(5);
    expect(w2.state).toBe('up');
    expect(listed).toEqual([]);
  });

  it('marks a worker down after `fall` failed checks once none of its containers answers, and starts them on the others', async () => {
    const { cluster, onW2, unreachable, ticks, w2 } = twoWorkers();
    unreachable.add('w2');
    for (const c of onW2) cluster.pool.setHealth(c, 'unhealthy', 'no answer');

    await ticks(thresholds.fall - 1);
    expect(w2.state).toBe('up');
    expect(cluster.driver.started).toEqual([]);

    await ticks(1);
    expect(w2.state).toBe('down');
    expect([...cluster.pool.containers()].map((c) => [c.id, c.health])).toEqual([
      ['w1-5000', 'healthy'],
      ['w1-5001', 'healthy'],
      ['w1-5002', 'healthy'],
    ]);
    expect(cluster.driver.started.map((spec) => spec.labels[LABELS.worker])).toEqual(['w1', 'w1']);
    expect(onW2.map((c) => c.history.at(-1)?.reason)).toEqual(['worker w2 is down', 'worker w2 is down']);
  });

  it('keeps the healer from restarting containers where nothing can run', async () => {
    const { cluster, onW2, unreachable, ticks, w2 } = twoWorkers();
    cluster.add('w1', 5001);
    cluster.add('w1', 5002);
    // No room left on w1 (the fake cluster allows 8, so fill the rest): the containers stay on w2, down.
    for (const port of [5003, 5004, 5005, 5006, 5007]) cluster.add('w1', port);
    unreachable.add('w2');
    for (const c of onW2) cluster.pool.setHealth(c, 'unhealthy', 'no answer');
    await ticks(thresholds.fall);
    expect(w2.state).toBe('down');
    expect(onW2.map((c) => c.health)).toEqual(['down', 'down']);

    const healer = new Healer({ pool: cluster.pool, operations: cluster.operations, log }, { intervalMs: 1_000, backoffInitialMs: 1_000, backoffMaxMs: 1_000, backoffResetMs: 1_000 });
    await healer.tick();
    await cluster.operations.onIdle();
    expect(cluster.driver.started).toEqual([]);
    expect(onW2.map((c) => c.restarts)).toEqual([0, 0]);
  });

  it('brings a worker back after `rise` good checks, removing what it still runs that moved away meanwhile', async () => {
    const { cluster, onW2, unreachable, ticks, w2 } = twoWorkers();
    // What w2 ran before it went away, as its runtime will list it again.
    const stale = await cluster.driver.start({ name: 'w2-5100', host: '127.0.0.1', port: 5100, env: {}, labels: { [LABELS.worker]: 'w2', [LABELS.container]: 'w2-5100' } });
    unreachable.add('w2');
    for (const c of onW2) cluster.pool.setHealth(c, 'unhealthy', 'no answer');
    await ticks(thresholds.fall);
    expect(w2.state).toBe('down');

    unreachable.delete('w2');
    await ticks(thresholds.rise - 1);
    expect(w2.state).toBe('down');
    await ticks(1);
    expect(w2.state).toBe('up');
    expect(cluster.driver.removed).toEqual([stale.runtimeId]);
    // Up again and empty, it takes the next container placed.
    expect(place(cluster.pool, 8)?.worker.id).toBe('w2');
  });
});
