import { describe, expect, it } from 'vitest';
import { ContainerPool } from '../../orchestrator/src/container-pool.js';
import { containerRecordSchema, workerRecordSchema } from '../../status/src/schema.js';

const thresholds = { rise: 2, fall: 3 };

/** One healthy container in a pool with a clock the test moves. */
function poolWithOne() {
  let now = 1_000;
  const pool = new ContainerPool({ now: () => now, ejection: { baseMs: 5_000, maxMs: 12_000 } });
  const c = pool.add(containerRecordSchema.parse({ id: 'c', workerId: 'w1', host: '127.0.0.1', port: 5000 }), 1);
  pool.recordProbe(c, true, null, thresholds);
  return { pool, c, advance: (ms: number) => (now += ms) };
}

/** Good probes until the container is back or `max` probes were sent; how many it took. */
function probeUntilHealthy(pool: ContainerPool, c: ReturnType<ContainerPool['add']>, max: number): number | null {
  for (let probes = 1; probes <= max; probes++) {
    pool.recordProbe(c, true, null, thresholds);
    if (c.health === 'healthy') return probes;
  }
  return null;
}

describe('ejection of a container that fails real requests but answers its probes', () => {
  it('keeps it out for the ejection time, doubling in a row up to the maximum, whatever the probes say', () => {
    const { pool, c, advance } = poolWithOne();
    expect(c.health).toBe('healthy');

    pool.markFailed(c, 'upstream timeout');
    expect(c.health).toBe('unhealthy');
    expect(c.history.at(-1)?.reason).toBe('upstream timeout (out for at least 5000 ms)');
    expect(probeUntilHealthy(pool, c, 10)).toBeNull();
    advance(5_000);
    expect(probeUntilHealthy(pool, c, 10)).toBe(1);

    // Again, with no good answer in between: twice as long.
    pool.markFailed(c, 'upstream timeout');
    advance(9_999);
    expect(probeUntilHealthy(pool, c, 10)).toBeNull();
    advance(1);
    expect(probeUntilHealthy(pool, c, 10)).toBe(1);

    // A third time would be 20 s: the maximum holds it to 12 s. With no probe meanwhile, it takes `rise` of them.
    pool.markFailed(c, 'upstream timeout');
    advance(12_000);
    expect(probeUntilHealthy(pool, c, 10)).toBe(thresholds.rise);
  });

  it('starts over after a good answer, and 5xx answers in a row count as one ejection', () => {
    const { pool, c, advance } = poolWithOne();
    pool.markFailed(c, 'connection reset');
    advance(5_000);
    probeUntilHealthy(pool, c, 2);
    pool.recordAnswer(c, 200, thresholds.fall);
    for (let i = 0; i < thresholds.fall; i++) pool.recordAnswer(c, 503, thresholds.fall);
    expect(c.health).toBe('unhealthy');
    expect(c.history.at(-1)?.reason).toBe('3 answers in a row were 503 (out for at least 5000 ms)');
  });

  it('is forgotten when the container is replaced by a new one', () => {
    const { pool, c } = poolWithOne();
    pool.markFailed(c, 'upstream timeout');
    pool.replaced(c, 'rt-2');
    expect(c.health).toBe('starting');
    expect(probeUntilHealthy(pool, c, 1)).toBe(1);
  });

  it('does not hold back a container that only failed probes: `rise` good ones readmit it', () => {
    const { pool, c } = poolWithOne();
    for (let i = 0; i < thresholds.fall; i++) pool.recordProbe(c, false, 'refused', thresholds);
    expect(c.health).toBe('unhealthy');
    expect(probeUntilHealthy(pool, c, 10)).toBe(thresholds.rise);
  });
});

describe('a request sent again after a failure', () => {
  /** Two workers with two healthy containers each. */
  function twoWorkers() {
    const pool = new ContainerPool();
    for (const [id, workerId, port] of [['a1', 'w1', 5000], ['a2', 'w1', 5001], ['b1', 'w2', 5100], ['b2', 'w2', 5101]] as const) {
      const c = pool.add(containerRecordSchema.parse({ id, workerId, host: '127.0.0.1', port }), 1);
      pool.setHealth(c, 'healthy', 'test');
    }
    return pool;
  }

  it('avoids the workers where it failed while another worker has a container in rotation', () => {
    const pool = twoWorkers();
    const failedOn = new Set(['w1']);
    expect(pool.tryAcquire(failedOn)?.workerId).toBe('w2');
    expect(pool.tryAcquire(failedOn)?.workerId).toBe('w2');
    // w2's containers are busy, not gone: the request waits for one rather than meet w1 again.
    expect(pool.tryAcquire(failedOn)).toBeUndefined();
    // A new request is not held to it.
    expect(pool.tryAcquire()?.workerId).toBe('w1');
  });

  it('takes a container of those workers once no other worker has one in rotation', () => {
    const pool = twoWorkers();
    for (const id of ['b1', 'b2']) pool.markFailed(pool.get(id)!, 'gone');
    expect(pool.tryAcquire(new Set(['w1']))?.workerId).toBe('w1');
  });
});

describe('the pool owns container state', () => {
  it('hands out read-only containers and workers; the type checker refuses a write from outside', () => {
    const pool = new ContainerPool();
    const c = pool.add(containerRecordSchema.parse({ id: 'c', workerId: 'w1', host: '127.0.0.1', port: 5000 }), 1);
    const writeFromOutside = (): void => {
      // @ts-expect-error only the pool changes a container
      c.health = 'down';
      // @ts-expect-error the operation is a transition (operationBegun), not a flag to set
      c.operation = 'replace';
      // @ts-expect-error the version is bumped by the pool (touch())
      pool.version++;
    };
    expect(writeFromOutside).toBeTypeOf('function');
  });

  it('changes a container only through named transitions, each bumping the version the status writer watches', () => {
    const pool = new ContainerPool();
    const c = pool.add(containerRecordSchema.parse({ id: 'c', workerId: 'w1', host: '127.0.0.1', port: 5000 }), 1);
    let version = pool.version;
    const bumped = (): boolean => {
      const changed = pool.version > version;
      version = pool.version;
      return changed;
    };
    pool.operationBegun(c, 'replace');
    expect(c.operation).toBe('replace');
    pool.operationEnded(c);
    expect(c.operation).toBeNull();
    pool.scheduleRestart(c, 42_000);
    expect(c).toMatchObject({ restarts: 1, nextRestartAt: 42_000 });
    expect(bumped()).toBe(true);
    pool.recordError(c, 'exited');
    expect(c.lastError).toBe('exited');
    expect(bumped()).toBe(true);
    pool.setRuntimeId(c, 'rt-9');
    expect(c.runtimeId).toBe('rt-9');
    expect(bumped()).toBe(true);
    pool.touch();
    expect(bumped()).toBe(true);
  });

  it('keeps live workers apart from the records it loaded', () => {
    const pool = new ContainerPool();
    const record = workerRecordSchema.parse({ id: 'w1', provider: 'local', host: '127.0.0.1', runtime: { driver: 'process' }, template: { env: {} } });
    pool.load([record], [], 1);
    pool.setWorkerState(pool.worker('w1')!, 'down', 'test');
    expect(pool.worker('w1')!.state).toBe('down');
    expect(record.state).toBe('up');
  });
});
