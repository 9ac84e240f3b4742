import { describe, expect, it } from 'vitest';
import { createLogger } from '../../common/src/logger.js';
import { Healer } from '../../orchestrator/src/healer.js';
import { fakeCluster } from '../helpers/fake-runtime.js';

const log = createLogger('test', 'silent');
const options = { intervalMs: 1_000, backoffInitialMs: 1_000, backoffMaxMs: 300_000, backoffResetMs: 600_000 };

function healerFor(cluster: ReturnType<typeof fakeCluster>) {
  let now = 1_000_000;
  const healer = new Healer({ pool: cluster.pool, operations: cluster.operations, log, now: () => now }, options);
  return { healer, advance: (ms: number) => (now += ms), now: () => now };
}

describe('Healer', () => {
  it('replaces an unhealthy managed container on the same worker and port with a new runtime id, then returns it to rotation', async () => {
    const cluster = fakeCluster(1);
    const c = cluster.add('w1', 5000);
    const { healer } = healerFor(cluster);
    cluster.pool.setHealth(c, 'unhealthy', 'crashed');

    await healer.tick();
    await cluster.operations.onIdle();

    expect(cluster.driver.started).toEqual([expect.objectContaining({ name: 'w1-5000', port: 5000, env: { WORK_MS: '0' } })]);
    expect(c).toMatchObject({ health: 'healthy', restarts: 1, runtimeId: 'rt-1' });
    expect(c.history.map((h) => h.state)).toEqual(['free', 'unhealthy', 'starting', 'free']);
    expect(cluster.pool.tryAcquire()).toBe(c);
  });

  it('leaves healthy, unmanaged and draining containers alone', async () => {
    const cluster = fakeCluster(1);
    cluster.add('w1', 5000);
    const draining = cluster.add('w1', 5001);
    cluster.pool.drain(draining, 'test');
    cluster.pool.setHealth(draining, 'unhealthy', 'x');
    const { healer } = healerFor(cluster);
    await healer.tick();
    await cluster.operations.onIdle();
    expect(cluster.driver.started).toEqual([]);
  });

  it('backs off a crash loop 1 s, 2 s, 4 s ..., shown as nextRestartAt, and forgets the streak after 10 min healthy', async () => {
    const cluster = fakeCluster(1);
    const c = cluster.add('w1', 5000);
    const { healer, advance, now } = healerFor(cluster);
    const crash = async (): Promise<void> => {
      cluster.pool.setHealth(c, 'unhealthy', 'crashed');
      await healer.tick();
      await cluster.operations.onIdle();
    };

    await crash();
    expect(c.restarts).toBe(1);
    expect(c.nextRestartAt - now()).toBe(1_000);

    // Crashes again at once: waits out the back-off.
    cluster.pool.setHealth(c, 'unhealthy', 'crashed');
    await healer.tick();
    expect(c.restarts).toBe(1);
    advance(1_000);
    await healer.tick();
    await cluster.operations.onIdle();
    expect(c.restarts).toBe(2);
    expect(c.nextRestartAt - now()).toBe(2_000);

    cluster.pool.setHealth(c, 'unhealthy', 'crashed');
    advance(2_000);
    await healer.tick();
    await cluster.operations.onIdle();
    expect(c.nextRestartAt - now()).toBe(4_000);

    // Healthy for 10 minutes: the next crash is replaced at once again.
    await healer.tick();
    advance(600_000);
    await healer.tick();
    await crash();
    expect(c.restarts).toBe(4);
    expect(c.nextRestartAt - now()).toBe(1_000);
  });

  it('caps the back-off at backoffMaxMs', async () => {
    const cluster = fakeCluster(1);
    const c = cluster.add('w1', 5000);
    const { healer, advance, now } = healerFor(cluster);
    for (let i = 0; i < 12; i++) {
      cluster.pool.setHealth(c, 'unhealthy', 'crashed');
      advance(300_000);
      await healer.tick();
      await cluster.operations.onIdle();
    }
    expect(c.nextRestartAt - now()).toBe(300_000);
  });

  it('marks a container whose replacement cannot start as down, backs off, and retries', async () => {
    const cluster = fakeCluster(1);
    const c = cluster.add('w1', 5000);
    const { healer, advance } = healerFor(cluster);
    cluster.driver.failStarts = 1;
    cluster.pool.setHealth(c, 'unhealthy', 'crashed');
    await healer.tick();
    await cluster.operations.onIdle();
    expect(c.health).toBe('down');
    expect(c.lastError).toMatch(/cannot start w1-5000/);

    advance(1_000);
    await healer.tick();
    await cluster.operations.onIdle();
    expect(c.health).toBe('healthy');
    expect(c.restarts).toBe(2);
  });
});
