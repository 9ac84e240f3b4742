import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { createLogger } from '../../common/src/logger.js';
import { loadOrchestratorConfig, orchestratorConfigSchema } from '../../orchestrator/src/config.js';
import { ContainerPool } from '../../orchestrator/src/container-pool.js';
import { HealthChecker } from '../../orchestrator/src/health-checker.js';
import { Orchestrator } from '../../orchestrator/src/orchestrator.js';
import { UpstreamClient } from '../../orchestrator/src/upstream/upstream-client.js';
import type { ContainerInfo, ContainerSpec } from '../../runtime/src/driver.js';
import { LABELS } from '../../runtime/src/driver.js';
import { StartCancelledError } from '../../runtime/src/errors.js';
import { unmanagedInventory } from '../../provisioning/src/inventory.js';
import { containerRecordSchema } from '../../status/src/schema.js';
import { startBackend, type Backend } from '../helpers/backend.js';
import { FakeDriver, fakeCluster } from '../helpers/fake-runtime.js';
import { waitFor } from '../helpers/wait-for.js';

/** A fake runtime whose starts wait until the test lets them go; it counts how many run at once, overall and per worker. */
class GatedDriver extends FakeDriver {
  /** Starts inside the runtime now, in arrival order. */
  readonly inside: ContainerSpec[] = [];
  maxInside = 0;
  readonly maxInsideOn = new Map<string, number>();
  readonly #gates: Array<() => void> = [];

  override async start(spec: ContainerSpec): Promise<ContainerInfo> {
    this.inside.push(spec);
    this.maxInside = Math.max(this.maxInside, this.inside.length);
    const worker = spec.labels[LABELS.worker]!;
    const onWorker = this.inside.filter((s) => s.labels[LABELS.worker] === worker).length;
    this.maxInsideOn.set(worker, Math.max(this.maxInsideOn.get(worker) ?? 0, onWorker));
    await new Promise<void>((resolve) => this.#gates.push(resolve));
    this.inside.splice(this.inside.indexOf(spec), 1);
    return super.start(spec);
  }

  /** Let every start inside the runtime now finish. */
  releaseAll(): void {
    for (const open of this.#gates.splice(0)) open();
  }
}

const names = (specs: readonly ContainerSpec[]): string[] => specs.map((s) => s.name);

describe('RuntimeOperations', () => {
  it('runs one worker\'s operations in order, at most its runtime\'s concurrency at once, while other workers go on', async () => {
    const driver = new GatedDriver();
    driver.concurrency = 1;
    const cluster = fakeCluster(2, { driver });
    for (const port of [5000, 5001, 5100]) cluster.healthy.add(port);
    // Placement: w1, then w2 (fewest), then w1 again.
    const started = [cluster.operations.scaleOut('t'), cluster.operations.scaleOut('t'), cluster.operations.scaleOut('t')];

    // Both workers start at once; w1's second start waits for its first.
    await waitFor(() => driver.inside.length === 2);
    expect(names(driver.inside)).toEqual(['w1-5000', 'w2-5100']);
    expect(cluster.pool.get('w1-5001')).toMatchObject({ health: 'starting', operation: 'start' });
    driver.releaseAll();
    await waitFor(() => driver.inside.length === 1);
    expect(names(driver.inside)).toEqual(['w1-5001']);
    driver.releaseAll();

    await Promise.all(started);
    await cluster.operations.onIdle();
    expect(driver.maxInsideOn).toEqual(new Map([['w1', 1], ['w2', 1]]));
    expect(names(driver.started)).toEqual(['w1-5000', 'w2-5100', 'w1-5001']);
    expect([...cluster.pool.containers()].map((c) => [c.id, c.health, c.operation]).sort()).toEqual([
      ['w1-5000', 'healthy', null],
      ['w1-5001', 'healthy', null],
      ['w2-5100', 'healthy', null],
    ]);
  });

  it('runs at most maxOperations at once over the whole cluster, whatever each runtime allows', async () => {
    const driver = new GatedDriver();
    driver.concurrency = 4;
    const cluster = fakeCluster(6, { driver, maxOperations: 3 });
    for (let w = 0; w < 6; w++) for (const port of [5000, 5001]) cluster.healthy.add(port + w * 100);
    const started = Array.from({ length: 12 }, () => cluster.operations.scaleOut('t'));

    for (let released = 0; released < 12; released += driver.inside.length) {
      await waitFor(() => driver.inside.length === Math.min(3, 12 - released));
      driver.releaseAll();
    }
    await Promise.all(started);
    expect(driver.maxInside).toBe(3);
    expect([...cluster.pool.containers()].filter((c) => c.health === 'healthy')).toHaveLength(12);
  });

  it('asks a worker\'s runtime what it runs in that worker\'s queue, after the operations asked before', async () => {
    const driver = new GatedDriver();
    driver.concurrency = 1;
    const asked: string[] = [];
    const cluster = fakeCluster(1, {
      driver,
      list: async () => {
        asked.push('list');
        return [];
      },
    });
    cluster.healthy.add(5000);
    const started = cluster.operations.scaleOut('t');
    await waitFor(() => driver.inside.length === 1);
    const listed = cluster.operations.list(cluster.pool.worker('w1')!, 1_000);
    await new Promise((resolve) => setImmediate(resolve));
    expect(asked).toEqual([]);
    driver.releaseAll();
    await started;
    expect(await listed).toEqual([]);
    expect(asked).toEqual(['list']);
  });

  it('gives up on a runtime that does not list within the timeout, once asked', async () => {
    const cluster = fakeCluster(1, { list: () => new Promise(() => {}) });
    await expect(cluster.operations.list(cluster.pool.worker('w1')!, 20)).rejects.toMatchObject({ code: 'WORKER_CHECK_TIMEOUT' });
  });

  it('drops a queued scale-out before it runs, and stops a running one, when a scale-in cancels them', async () => {
    const cluster = fakeCluster(1, { startTimeoutMs: 60_000 });
    cluster.driver.concurrency = 1;
    // Neither answers /health: the first waits for it, the second waits for the first.
    const first = cluster.operations.scaleOut('t');
    const second = cluster.operations.scaleOut('t');
    const [running, queued] = [cluster.pool.get('w1-5000')!, cluster.pool.get('w1-5001')!];
    await waitFor(() => cluster.driver.started.length === 1);

    // Queued: gone at once, though the start ahead of it still runs; its runtime never saw it.
    expect(await cluster.operations.cancelStart(queued, 'scale-in')).toBe(true);
    await expect(second).rejects.toBeInstanceOf(StartCancelledError);
    expect(running).toMatchObject({ health: 'starting', operation: 'start' });
    expect(names(cluster.driver.started)).toEqual(['w1-5000']);
    expect(cluster.pool.get('w1-5001')).toBeUndefined();

    // Running: its health wait ends, and what it started is stopped and removed.
    expect(await cluster.operations.cancelStart(running, 'scale-in')).toBe(true);
    await expect(first).rejects.toBeInstanceOf(StartCancelledError);
    expect(cluster.driver.removed).toEqual(['rt-1']);
    expect(cluster.driver.running.size).toBe(0);
    expect(cluster.pool.size).toBe(0);
    await cluster.operations.onIdle();
  });
});

describe('Orchestrator.close', () => {
  let dir: string | undefined;
  let backend: Backend | undefined;
  afterEach(async () => {
    await backend?.kill();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('waits for the runtime operations under way (onIdle) before it resolves', async () => {
    backend = await startBackend('b1');
    dir = await mkdtemp(join(tmpdir(), 'orch-ops-'));
    const statePath = join(dir, 'state.json');
    await writeFile(statePath, JSON.stringify(unmanagedInventory('test', [backend])));
    const config = loadOrchestratorConfig({ flags: { port: 0, statePath, startTimeoutMs: 300, stopTimeoutMs: 0, shutdownTimeoutMs: 1_000 } });
    const driver = new GatedDriver();
    const events: string[] = [];
    const remove = driver.remove.bind(driver);
    driver.remove = async (runtimeId) => {
      await remove(runtimeId);
      events.push('removed');
    };
    const orchestrator = await Orchestrator.create(config, createLogger('test', 'silent'), { driverFor: () => driver });
    await orchestrator.listen();

    // A start whose container never answers /health: once let go, it fails after startTimeoutMs and is removed.
    const start = orchestrator.operations.scaleOut('test').catch(() => events.push('start failed'));
    await waitFor(() => driver.inside.length === 1);
    const closed = orchestrator.close().then(() => events.push('closed'));
    driver.releaseAll();
    await closed;
    await start;
    expect(events).toEqual(['removed', 'start failed', 'closed']);
  });
});

describe('HealthChecker', () => {
  const servers: Server[] = [];
  afterEach(async () => {
    await Promise.all(servers.splice(0).map((server) => new Promise((resolve) => server.close(resolve))));
  });

  it('has at most `concurrency` probes in flight, a pass\'s and the start waits\' together', async () => {
    // Six containers on 127.0.0.1 that hold every /health until the test answers it.
    const held: ServerResponse[] = [];
    let inFlight = 0;
    let maxInFlight = 0;
    const pool = new ContainerPool();
    for (let i = 0; i < 6; i++) {
      const server = createServer((_req, res) => {
        inFlight++;
        maxInFlight = Math.max(maxInFlight, inFlight);
        held.push(res);
      });
      servers.push(server);
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
      const { port } = server.address() as AddressInfo;
      pool.add(containerRecordSchema.parse({ id: `c${i}`, workerId: 'w1', host: '127.0.0.1', port }), 1);
    }
    const answerHeld = (): void => {
      for (const res of held.splice(0)) {
        inFlight--;
        res.end('{"ok":true}');
      }
    };
    const defaults = orchestratorConfigSchema.parse({});
    const upstream = new UpstreamClient({
      timeoutMs: defaults.upstreamTimeoutMs,
      connectTimeoutMs: defaults.connectTimeoutMs,
      idleTimeoutMs: defaults.upstreamIdleTimeoutMs,
      maxIdlePerAddress: defaults.upstreamMaxIdlePerContainer,
      bufferBytes: defaults.upstreamBufferBytes,
      maxHeadBytes: defaults.upstreamMaxHeadBytes,
      maxLineBytes: defaults.upstreamMaxLineBytes,
    });
    const checker = new HealthChecker(
      { pool, upstream, log: createLogger('test', 'silent') },
      { intervalMs: 1_000, timeoutMs: 10_000, fall: 3, rise: 2, concurrency: 2 },
    );

    // A pass over six containers and two start waits' probes: eight probes, two at a time.
    const pass = checker.tick();
    const waits = [checker.check(pool.get('c0')!), checker.check(pool.get('c1')!)];
    let answered = 0;
    while (answered < 8) {
      await waitFor(() => held.length === Math.min(2, 8 - answered));
      answered += held.length;
      answerHeld();
    }
    await pass;
    expect((await Promise.all(waits)).map((r) => r.ok)).toEqual([true, true]);
    expect(maxInFlight).toBe(2);
    expect([...pool.containers()].every((c) => c.health === 'healthy')).toBe(true);
    await upstream.close();
  });
});
