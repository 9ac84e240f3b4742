import { describe, expect, it } from 'vitest';
import { createLogger } from '../../common/src/logger.js';
import { Autoscaler, type AutoscalerOptions } from '../../orchestrator/src/autoscaler.js';
import type { Container } from '../../orchestrator/src/container-pool.js';
import { fakeCluster, type FakeCluster } from '../helpers/fake-runtime.js';

const log = createLogger('test', 'silent');
const base: AutoscalerOptions = {
  policy: 'requests',
  min: 1,
  max: 10,
  minPerWorker: 0,
  maxStep: 10,
  windowMs: 120_000,
  requestsPerContainer: 20,
  intervalMs: 2_000,
  rules: [],
  targetConcurrency: 1,
  stabilizationMs: 30_000,
  scaleUpCooldownMs: 0,
  scaleDownCooldownMs: 0,
};

function scaler(cluster: FakeCluster, options: Partial<AutoscalerOptions> = {}) {
  const load = { forwarded: 0, queued: 0, p90: null as number | null };
  let now = 0;
  const autoscaler = new Autoscaler(
    { pool: cluster.pool, operations: cluster.operations, forwarded: () => load.forwarded, queued: () => load.queued, p90LatencyMs: () => load.p90, log, now: () => now },
    { ...base, ...options },
  );
  // New containers answer /health as soon as they start.
  for (let port = 5000; port < 5010; port++) for (const offset of [0, 100, 200]) cluster.healthy.add(port + offset);
  return { autoscaler, load, advance: (ms: number) => (now += ms) };
}

/** One decision, and the scaling it started carried out. */
async function decide(autoscaler: Autoscaler, cluster: FakeCluster): Promise<void> {
  await autoscaler.tick();
  await cluster.operations.onIdle();
}

const ports = (cluster: FakeCluster): string[] => [...cluster.pool.containers()].map((c) => c.id).sort();

describe('Autoscaler, requests policy (the seeds\' rule)', () => {
  it('decides once per window, not at every pass', async () => {
    const cluster = fakeCluster(1);
    cluster.add('w1', 5000);
    const { autoscaler, load, advance } = scaler(cluster);
    load.forwarded = 45;
    // Passes every intervalMs; the one at the window's end decides.
    advance(base.windowMs - base.intervalMs);
    await decide(autoscaler, cluster);
    expect(cluster.pool.size).toBe(1);
    advance(base.intervalMs);
    await decide(autoscaler, cluster);
    expect(cluster.pool.size).toBe(3);
  });

  it('wants floor(requests in the window / 20) + 1 containers, placed on the worker with fewest, lowest free port', async () => {
    const cluster = fakeCluster(2);
    cluster.add('w1', 5000);
    const { autoscaler, load, advance } = scaler(cluster);

    load.forwarded = 45;
    advance(base.windowMs);
    await decide(autoscaler, cluster);
    // The first goes to w2 (fewest); then both have one, and the tie goes to the first worker.
    expect(ports(cluster)).toEqual(['w1-5000', 'w1-5001', 'w2-5100']);
    expect(autoscaler.decisions.at(-1)).toMatchObject({ action: 'scale-out', current: 1, desired: 3, reason: expect.stringContaining('45 requests') });

    // The next window saw 20 more: 2 containers. The idle one on the fuller worker goes, highest port first.
    load.forwarded = 65;
    advance(base.windowMs);
    await decide(autoscaler, cluster);
    expect(ports(cluster)).toEqual(['w1-5000', 'w2-5100']);
    expect(autoscaler.decisions.at(-1)).toMatchObject({ action: 'scale-in', current: 3, desired: 2 });
  });

  it('never removes a busy container and never goes below the minimum; a pass removes it once it is idle', async () => {
    const cluster = fakeCluster(1);
    const a = cluster.add('w1', 5000);
    const b = cluster.add('w1', 5001);
    const { autoscaler, advance } = scaler(cluster, { min: 1 });
    expect(cluster.pool.tryAcquire()).toBe(a);
    expect(cluster.pool.tryAcquire()).toBe(b);

    advance(base.windowMs);
    await decide(autoscaler, cluster);
    expect(ports(cluster)).toEqual(['w1-5000', 'w1-5001']);
    expect(autoscaler.decisions.at(-1)).toMatchObject({ action: 'none', current: 2, desired: 2, reason: expect.stringMatching(/held: none can go now/) });
    // Within the same window: the next pass takes the step the first could not.
    cluster.pool.release(b, 'served');
    await decide(autoscaler, cluster);
    expect(ports(cluster)).toEqual(['w1-5000']);
    cluster.pool.release(a, 'served');
    await decide(autoscaler, cluster);
    expect(ports(cluster)).toEqual(['w1-5000']);
  });

  it('bounds a decision by max and maxStep, and says so', async () => {
    const cluster = fakeCluster(1);
    cluster.add('w1', 5000);
    const { autoscaler, load, advance } = scaler(cluster, { max: 4, maxStep: 2 });
    load.forwarded = 1_000;
    advance(base.windowMs);
    await decide(autoscaler, cluster);
    expect(cluster.pool.size).toBe(3);
    expect(autoscaler.decisions.at(-1)!.reason).toMatch(/bounded to \[1, 4\]; at most 2 per decision; later passes go on to 4/);
    advance(base.windowMs);
    await decide(autoscaler, cluster);
    expect(cluster.pool.size).toBe(1 + 2 - 2);
  });

  it('does nothing while paused', async () => {
    const cluster = fakeCluster(1);
    cluster.add('w1', 5000);
    const { autoscaler, load, advance } = scaler(cluster);
    autoscaler.paused = true;
    load.forwarded = 100;
    advance(base.windowMs);
    await decide(autoscaler, cluster);
    expect(cluster.pool.size).toBe(1);
  });
});

describe('Autoscaler, concurrency policy (Knative style)', () => {
  it('scales out at once to ceil((in flight + queued) / target)', async () => {
    const cluster = fakeCluster(2);
    const a = cluster.add('w1', 5000);
    const { autoscaler, load } = scaler(cluster, { policy: 'concurrency' });
    cluster.pool.tryAcquire();
    load.queued = 4;
    await decide(autoscaler, cluster);
    expect(cluster.pool.size).toBe(5);
    expect(a.health).toBe('healthy');
  });

  it('decides without waiting for new containers to start, and counts the starting ones next time', async () => {
    const cluster = fakeCluster(2, { startTimeoutMs: 5_000 });
    cluster.add('w1', 5000);
    const { autoscaler, load } = scaler(cluster, { policy: 'concurrency' });
    cluster.healthy.clear();
    cluster.healthy.add(5000);
    load.queued = 3;
    await autoscaler.tick();
    expect([...cluster.pool.containers()].map((c) => c.health)).toEqual(['healthy', 'starting', 'starting']);
    await autoscaler.tick();
    expect(cluster.pool.size).toBe(3);
    for (const port of [5001, 5100]) cluster.healthy.add(port);
    await cluster.operations.onIdle();
    expect([...cluster.pool.containers()].every((c) => c.health === 'healthy')).toBe(true);
  });

  it('scales in only to the highest count wanted over the stabilization window: no flapping', async () => {
    const cluster = fakeCluster(2);
    cluster.add('w1', 5000);
    const { autoscaler, load, advance } = scaler(cluster, { policy: 'concurrency', stabilizationMs: 30_000 });
    load.queued = 3;
    await decide(autoscaler, cluster);
    expect(cluster.pool.size).toBe(3);

    // The load stops: nothing is removed for 30 s, then the count drops to what the window wants.
    load.queued = 0;
    for (let t = 0; t < 28_000; t += 2_000) {
      advance(2_000);
      await decide(autoscaler, cluster);
      expect(cluster.pool.size).toBe(3);
    }
    advance(4_000);
    await decide(autoscaler, cluster);
    expect(cluster.pool.size).toBe(1);
    expect(autoscaler.decisions.filter((d) => d.action !== 'none').map((d) => d.action)).toEqual(['scale-out', 'scale-in']);
  });

  it('holds a scale-in within the cooldown and records why', async () => {
    const cluster = fakeCluster(1);
    cluster.add('w1', 5000);
    cluster.add('w1', 5001);
    cluster.add('w1', 5002);
    const { autoscaler, advance } = scaler(cluster, { policy: 'concurrency', stabilizationMs: 0, maxStep: 1, scaleDownCooldownMs: 10_000 });
    advance(1);
    await decide(autoscaler, cluster);
    expect(cluster.pool.size).toBe(2);
    advance(2_000);
    await decide(autoscaler, cluster);
    expect(cluster.pool.size).toBe(2);
    expect(autoscaler.decisions.at(-1)!.reason).toMatch(/held: scale-in cooldown/);
    advance(10_000);
    await decide(autoscaler, cluster);
    expect(cluster.pool.size).toBe(1);
  });
});

describe('Autoscaler, user-defined rules', () => {
  const rules: AutoscalerOptions['rules'] = [
    { metric: 'p90LatencyMs', windowMs: 10_000, op: '>', threshold: 500, action: 'scale-out', by: 2 },
    { metric: 'queueLength', windowMs: 6_000, op: '>', threshold: 3, action: 'scale-out', by: 1 },
    { metric: 'requests', windowMs: 10_000, op: '<', threshold: 5, action: 'scale-in', by: 1 },
  ];

  it('scales out by the first matching scale-out rule, naming it and the value it saw', async () => {
    const cluster = fakeCluster(1);
    cluster.add('w1', 5000);
    const { autoscaler, load } = scaler(cluster, { policy: 'rules', rules });
    load.p90 = 812.5;
    await decide(autoscaler, cluster);
    expect(cluster.pool.size).toBe(3);
    expect(autoscaler.decisions.at(-1)!.reason).toBe('rules: rule 1: p90LatencyMs 812.5 > 500 over 10 s, scale-out by 2');
  });

  it('averages the queue length over the window: one spike does not scale out, a sustained queue does', async () => {
    const cluster = fakeCluster(1);
    cluster.add('w1', 5000);
    const { autoscaler, load, advance } = scaler(cluster, { policy: 'rules', rules: [rules[1]!] });
    const tickWith = async (queued: number): Promise<void> => {
      load.queued = queued;
      await decide(autoscaler, cluster);
      advance(2_000);
    };
    for (const queued of [0, 0, 0, 9]) await tickWith(queued);
    expect(cluster.pool.size).toBe(1);
    await tickWith(9);
    expect(cluster.pool.size).toBe(2);
    expect(autoscaler.decisions.at(-1)!.reason).toBe('rules: rule 1: queueLength 4.5 > 3 over 6 s, scale-out by 1');
  });

  it('scales in when few requests arrived over a whole window and no scale-out rule matches', async () => {
    const cluster = fakeCluster(1);
    cluster.add('w1', 5000);
    cluster.add('w1', 5001);
    const { autoscaler, load, advance } = scaler(cluster, { policy: 'rules', rules });
    // Until the observations cover 10 s, the request count is unknown and nothing happens.
    for (const forwarded of [100, 101, 101, 102, 102]) {
      load.forwarded = forwarded;
      await decide(autoscaler, cluster);
      advance(2_000);
    }
    expect(cluster.pool.size).toBe(2);
    load.forwarded = 103;
    await decide(autoscaler, cluster);
    expect(cluster.pool.size).toBe(1);
    expect(autoscaler.decisions.at(-1)!.reason).toBe('rules: rule 3: requests 3 < 5 over 10 s, scale-in by 1');
  });
});

describe('placement and bounds', () => {
  it('starts the minimum on an empty cluster, spreading over workers, and respects the per-worker maximum', async () => {
    const cluster = fakeCluster(2, { maxPerWorker: 1 });
    const { autoscaler } = scaler(cluster, { min: 3 });
    await autoscaler.enforceBounds();
    // Two workers of one container each: the third has nowhere to go.
    expect(ports(cluster)).toEqual(['w1-5000', 'w2-5100']);
    expect(cluster.driver.started.map((s) => s.labels)).toEqual([
      expect.objectContaining({ 'io.inference-orchestrator.worker': 'w1', 'io.inference-orchestrator.port': '5000' }),
      expect.objectContaining({ 'io.inference-orchestrator.worker': 'w2', 'io.inference-orchestrator.port': '5100' }),
    ]);
  });

  it('keeps minPerWorker on every worker: fills each up to it at start, and scale-in takes from the others', async () => {
    const cluster = fakeCluster(2);
    cluster.add('w1', 5000);
    cluster.add('w1', 5001);
    cluster.add('w1', 5002);
    const { autoscaler } = scaler(cluster, { minPerWorker: 1 });
    await autoscaler.enforceBounds();
    expect(ports(cluster)).toEqual(['w1-5000', 'w1-5001', 'w1-5002', 'w2-5100']);
    // A quiet window wants 1 container, but each worker keeps one.
    autoscaler.scaleTo(1, 'test');
    await cluster.operations.onIdle();
    expect(ports(cluster)).toEqual(['w1-5000', 'w2-5100']);
  });

  it('forgets a container that never answers /health, removing it from its runtime', async () => {
    const cluster = fakeCluster(1, { startTimeoutMs: 200 });
    const { autoscaler } = scaler(cluster);
    cluster.healthy.delete(5000);
    await autoscaler.enforceBounds();
    expect(cluster.pool.size).toBe(0);
    expect(cluster.driver.running.size).toBe(0);
    expect(cluster.driver.removed).toEqual(['rt-1']);
  });
});

/** Containers per worker that count (not draining). */
const spread = (cluster: FakeCluster): Record<string, number> => {
  const byWorker: Record<string, number> = {};
  for (const c of cluster.pool.containers()) if (!c.draining) byWorker[c.workerId] = (byWorker[c.workerId] ?? 0) + 1;
  return byWorker;
};

/** Containers in rotation: healthy and not draining. */
const inRotation = (cluster: FakeCluster): number => [...cluster.pool.containers()].filter((c) => c.health === 'healthy' && !c.draining).length;

describe('scale-in', () => {
  it('takes from the most crowded worker at each pick: 16 -> 8 -> 4 over two workers leaves 4/4, then 2/2', async () => {
    const cluster = fakeCluster(2);
    for (let i = 0; i < 8; i++) {
      cluster.add('w1', 5000 + i);
      cluster.add('w2', 5100 + i);
    }
    const { autoscaler } = scaler(cluster, { policy: 'none', max: 16 });
    autoscaler.scaleTo(8, 'test');
    await cluster.operations.onIdle();
    expect(spread(cluster)).toEqual({ w1: 4, w2: 4 });
    autoscaler.scaleTo(4, 'test');
    await cluster.operations.onIdle();
    expect(spread(cluster)).toEqual({ w1: 2, w2: 2 });
    // Highest ports first on each worker.
    expect(ports(cluster)).toEqual(['w1-5000', 'w1-5001', 'w2-5100', 'w2-5101']);
  });

  it('waits for an idle container on the most crowded worker rather than take one from a less crowded worker', async () => {
    const cluster = fakeCluster(2);
    const onW1 = [5000, 5001, 5002].map((port) => cluster.add('w1', port));
    for (const port of [5100, 5101]) cluster.add('w2', port);
    const { autoscaler } = scaler(cluster, { policy: 'none' });
    const busy = onW1.map(() => cluster.pool.tryAcquire()!);
    expect(busy).toEqual(onW1);

    expect(autoscaler.scaleTo(4, 'test')).toMatchObject({ action: 'none', current: 5 });
    await decide(autoscaler, cluster);
    expect(spread(cluster)).toEqual({ w1: 3, w2: 2 });
    cluster.pool.release(busy[2]!, 'served');
    await decide(autoscaler, cluster);
    expect(spread(cluster)).toEqual({ w1: 2, w2: 2 });
  });

  it('while containers start, cancels starting ones rather than draining serving ones: never zero in rotation', async () => {
    const cluster = fakeCluster(2, { startTimeoutMs: 5_000 });
    cluster.add('w1', 5000);
    cluster.add('w2', 5100);
    const { autoscaler } = scaler(cluster, { policy: 'none' });
    // The new containers do not answer /health yet.
    cluster.healthy.clear();
    cluster.healthy.add(5000).add(5100);
    autoscaler.scaleTo(8, 'test');
    expect(cluster.pool.size).toBe(8);

    const decision = autoscaler.scaleTo(2, 'test');
    expect(decision).toMatchObject({ action: 'scale-in', current: 8, desired: 2 });
    expect(inRotation(cluster)).toBe(2);
    await cluster.operations.onIdle();
    expect(ports(cluster)).toEqual(['w1-5000', 'w2-5100']);
    expect(inRotation(cluster)).toBe(2);
    // One start at a time per worker (the fake runtime's concurrency): the two running were
    // stopped and removed from their runtime, the four still queued were dropped before they ran.
    expect(cluster.driver.started).toHaveLength(2);
    expect(cluster.driver.running.size).toBe(0);
  });

  it('never drains the last container in rotation while another still counts, and takes the step once it serves', async () => {
    const cluster = fakeCluster(1);
    cluster.add('w1', 5000);
    const replaced = cluster.add('w1', 5001);
    // Out of rotation, its replacement under way (the healer's).
    cluster.pool.setHealth(replaced, 'unhealthy', 'test');
    cluster.pool.operationBegun(replaced, 'replace');
    const { autoscaler } = scaler(cluster, { policy: 'none' });

    expect(autoscaler.scaleTo(1, 'test')).toMatchObject({ action: 'none', current: 2 });
    await decide(autoscaler, cluster);
    expect(ports(cluster)).toEqual(['w1-5000', 'w1-5001']);
    expect(inRotation(cluster)).toBe(1);

    cluster.pool.operationEnded(replaced);
    cluster.pool.setHealth(replaced, 'healthy', 'test');
    await decide(autoscaler, cluster);
    expect(ports(cluster)).toEqual(['w1-5000']);
    expect(inRotation(cluster)).toBe(1);
  });
});

describe('a scale request that cannot act now is carried out by later passes', () => {
  it('scale-in: containers busy when asked are removed by a later pass once idle', async () => {
    const cluster = fakeCluster(2);
    for (const port of [5000, 5001]) cluster.add('w1', port);
    for (const port of [5100, 5101]) cluster.add('w2', port);
    const { autoscaler } = scaler(cluster, { policy: 'none' });
    const leases = [1, 2, 3, 4].map(() => cluster.pool.tryAcquire()!);

    expect(autoscaler.scaleTo(2, 'admin request')).toMatchObject({ action: 'none', current: 4, desired: 4 });
    await decide(autoscaler, cluster);
    expect(cluster.pool.size).toBe(4);
    for (const c of leases) cluster.pool.release(c, 'served');
    await decide(autoscaler, cluster);
    expect(spread(cluster)).toEqual({ w1: 1, w2: 1 });
    expect(autoscaler.decisions.at(-1)).toMatchObject({ action: 'scale-in', current: 4, desired: 2, reason: expect.stringContaining('admin request') });
    // Reached: later passes leave the cluster alone.
    await decide(autoscaler, cluster);
    expect(autoscaler.decisions.at(-1)!.action).toBe('scale-in');
  });

  it('scale-out: beyond maxStep, the next pass goes on to the count asked for', async () => {
    const cluster = fakeCluster(2);
    cluster.add('w1', 5000);
    const { autoscaler } = scaler(cluster, { policy: 'none', max: 16, maxStep: 8 });
    expect(autoscaler.scaleTo(12, 'admin request')).toMatchObject({ action: 'scale-out', current: 1, desired: 9 });
    await cluster.operations.onIdle();
    await decide(autoscaler, cluster);
    expect(spread(cluster)).toEqual({ w1: 6, w2: 6 });
  });

  it('scale-out: no room while a drained container still holds its slot, then the next pass places it', async () => {
    const cluster = fakeCluster(1, { maxPerWorker: 2 });
    const a = cluster.add('w1', 5000);
    cluster.add('w1', 5001);
    const { autoscaler } = scaler(cluster, { policy: 'none' });
    // `a` drains with a request on it: it holds its slot (and port) until that request ends.
    expect(cluster.pool.tryAcquire()).toBe(a);
    const removal = cluster.operations.drainAndRemove(a, 'test');

    expect(autoscaler.scaleTo(2, 'admin request')).toMatchObject({ action: 'none', current: 1, desired: 1, reason: expect.stringMatching(/held: no worker has room/) });
    // A pass alone: the drain under way ends only once its request does.
    await autoscaler.tick();
    expect(cluster.driver.started).toHaveLength(0);
    cluster.pool.release(a, 'served');
    await removal;
    await decide(autoscaler, cluster);
    expect(ports(cluster)).toEqual(['w1-5000', 'w1-5001']);
    expect(cluster.pool.get('w1-5000')).not.toBe(a);
  });

  it('a pause drops the policy\'s target but keeps one asked for', async () => {
    const cluster = fakeCluster(1);
    for (const port of [5000, 5001, 5002]) cluster.add('w1', port);
    const { autoscaler } = scaler(cluster, { policy: 'concurrency', stabilizationMs: 0, targetConcurrency: 10 });
    const leaseAll = (): Container[] => [1, 2, 3].map(() => cluster.pool.tryAcquire()!);
    const releaseAll = (leases: Container[]): void => leases.forEach((c) => cluster.pool.release(c, 'served'));

    // The policy wants 1, but all three are busy.
    let leases = leaseAll();
    await decide(autoscaler, cluster);
    autoscaler.paused = true;
    releaseAll(leases);
    await decide(autoscaler, cluster);
    expect(cluster.pool.size).toBe(3);

    leases = leaseAll();
    autoscaler.scaleTo(1, 'admin request');
    releaseAll(leases);
    await decide(autoscaler, cluster);
    expect(cluster.pool.size).toBe(1);
  });
});
