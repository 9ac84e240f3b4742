import { readFile, writeFile } from 'node:fs/promises';
import type { Server } from 'node:net';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { ContainerPool } from '../../orchestrator/src/container-pool.js';
import { MachineScaler } from '../../orchestrator/src/machine-scaler.js';
import type { Orchestrator } from '../../orchestrator/src/orchestrator.js';
import type { WorkerFleet } from '../../orchestrator/src/worker-fleet.js';
import { createWorkerProvider } from '../../provisioning/src/create-provider.js';
import type { WorkerProvider } from '../../provisioning/src/worker-provider.js';
import { pidsGone } from '../helpers/processes.js';
import { stateFileSchema, type MachineScalerSnapshot, type StateFile } from '../../status/src/schema.js';
import { TEST_PORT_STRIDE, useTempCluster, type TempCluster } from '../helpers/cluster.js';
import { provisionWorkers, squat, startMachineOrchestrator } from '../helpers/machine-view.js';
import { poll } from '../helpers/docker.js';

const silent = pino({ level: 'silent' });
/** Room for 8 containers on up to 3 workers: one more worker than maxWorkers allows. */
const THREE_WORKERS = { maxContainers: 8, maxWorkers: 3 };
const start = async (cluster: TempCluster, flags: Record<string, unknown> = {}, options: { provision?: boolean } = {}): Promise<Orchestrator> =>
  (await startMachineOrchestrator(cluster, { ...THREE_WORKERS, ...flags }, options)).orchestrator;

const machines = (o: Orchestrator): MachineScalerSnapshot => o.machines!.snapshot();
const workerIds = (o: Orchestrator): string[] => [...o.pool.workers()].map((w) => w.id).sort();

describe('the machine autoscaler (real worker processes)', () => {
  const cluster = useTempCluster(4);
  let orchestrator: Orchestrator | undefined;
  const servers: Server[] = [];
  afterEach(async () => {
    await orchestrator?.close();
    orchestrator = undefined;
    for (const server of servers.splice(0)) server.close();
  });

  it('launches workers when wanted containers fit on none, up to maxWorkers, and releases the surplus back to minWorkers', { timeout: 60_000 }, async () => {
    orchestrator = await start(cluster);
    const o = orchestrator;
    // 8 containers: w1 holds 2, so 6 more need 3 workers, one more than maxWorkers allows.
    o.autoscaler.scaleTo(8, 'test');
    await poll(async () => (o.pool.capacity() === 6 && workerIds(o).length === 3 ? true : undefined), 'three workers full', 30_000);
    const grown = machines(o);
    expect(grown.decisions.filter((d) => d.action === 'launched').map((d) => d.workerId).sort()).toEqual(['w2', 'w3']);
    expect(grown.decisions.some((d) => d.action === 'held' && /maxWorkers \(3\) reached/.test(d.reason))).toBe(true);
    expect([...o.pool.workers()].map((w) => [w.id, w.launchedBy]).sort()).toEqual([
      ['w1', 'provisioning'],
      ['w2', 'autoscaler'],
      ['w3', 'autoscaler'],
    ]);
    // The new workers are where provisioning would put them.
    expect(o.pool.worker('w3')!.ports).toEqual({ first: cluster.basePort + 2 * TEST_PORT_STRIDE, last: cluster.basePort + 3 * TEST_PORT_STRIDE - 1 });

    o.autoscaler.scaleTo(1, 'test');
    await poll(async () => (workerIds(o).length === 1 && machines(o).releasing.length === 0 ? true : undefined), 'back to one worker', 30_000);
    expect(workerIds(o)).toEqual(['w1']);
    const after = machines(o);
    expect(after.decisions.filter((d) => d.action === 'released').map((d) => d.workerId).sort()).toEqual(['w2', 'w3']);
    expect(after.counts).toMatchObject({ launched: 2, released: 2, launchFailed: 0 });
    // Nothing of w2 or w3 runs any more: the provider lists only w1.
    expect(await o.fleet!.provider.list()).toEqual(['w1']);
  });

  it('backs a failed launch off instead of retrying it in a tight loop, and launches once the cause is gone', { timeout: 60_000 }, async () => {
    // w2's first port is taken: its launch fails with PORT_IN_USE.
    servers.push(await squat(cluster.basePort + TEST_PORT_STRIDE));
    orchestrator = await start(cluster, { workerLaunchBackoffMs: 1_500, workerLaunchBackoffMaxMs: 3_000 });
    const o = orchestrator;
    o.autoscaler.scaleTo(4, 'test');
    const failed = await poll(async () => (machines(o).failures >= 1 ? machines(o) : undefined), 'a failed launch', 20_000);
    expect(failed.lastError).toMatch(/in use/);
    expect(failed.backoffUntil).not.toBeNull();
    // Within the back-off the scaler holds, saying why, and does not launch again.
    await new Promise((resolve) => setTimeout(resolve, 800));
    const held = machines(o);
    expect(held.decisions.filter((d) => d.action === 'launch')).toHaveLength(1);
    expect(held.decisions.some((d) => d.action === 'held' && /backing off after 1 failed launch/.test(d.reason))).toBe(true);

    servers.splice(0).forEach((server) => server.close());
    await poll(async () => (workerIds(o).includes('w2') && o.pool.capacity() === 4 ? true : undefined), 'w2 launched after the back-off', 30_000);
    expect(machines(o)).toMatchObject({ failures: 0, backoffUntil: null });
    expect(machines(o).counts.launchFailed).toBeGreaterThanOrEqual(1);
  });

  it('at start, adopts a machine of the cluster the inventory does not list, or releases it when there is no room under maxWorkers', { timeout: 60_000 }, async () => {
    await provisionWorkers(cluster);
    // A launch a previous orchestrator did not finish: w2 runs, labelled with the cluster, but no inventory lists it.
    const provider = createWorkerProvider(cluster.config({ workers: 1 }), silent);
    await provider.launch('w2');

    orchestrator = await start(cluster, { maxWorkers: 2 }, { provision: false });
    await poll(async () => (workerIds(orchestrator!).includes('w2') ? true : undefined), 'w2 adopted', 20_000);
    expect(machines(orchestrator).decisions.find((d) => d.workerId === 'w2' && d.action === 'adopt')!.reason).toMatch(/found by its labels or tags at start/);
    await orchestrator.close();

    // Forget it again, as a crash mid-launch would, and start with room for one worker only.
    const state = JSON.parse(await readFile(cluster.statePath, 'utf8')) as StateFile;
    await writeFile(cluster.statePath, JSON.stringify({ ...state, workers: state.workers.filter((w) => w.id !== 'w2'), containers: state.containers.filter((c) => c.workerId !== 'w2') }));
    orchestrator = await start(cluster, { maxWorkers: 1 }, { provision: false });
    const o = orchestrator;
    await poll(async () => (machines(o).counts.released === 1 ? true : undefined), 'w2 released', 20_000);
    expect(workerIds(o)).toEqual(['w1']);
    expect(await provider.list()).toEqual(['w1']);
  });

  it("learns a new worker's runtime ids from its runtime when the provider has none, so a scale-in stops what it removes", { timeout: 60_000 }, async () => {
    await provisionWorkers(cluster);
    const real = createWorkerProvider(cluster.config({ workers: 1 }), silent);
    const pids = new Map<string, string>();
    // EC2's provider reports no runtime ids (user-data starts the containers); this one hides them the same way.
    const workerProvider: WorkerProvider = {
      kind: real.kind,
      list: () => real.list(),
      release: (id) => real.release(id),
      launch: async (id, signal) => {
        const launched = await real.launch(id, signal);
        for (const c of launched.containers) pids.set(c.id, c.runtimeId!);
        return { ...launched, containers: launched.containers.map((c) => ({ ...c, runtimeId: null })) };
      },
    };
    orchestrator = (await startMachineOrchestrator(cluster, THREE_WORKERS, { provision: false, workerProvider })).orchestrator;
    const o = orchestrator;
    o.autoscaler.scaleTo(4, 'test');
    await poll(async () => (o.pool.capacity() === 4 ? true : undefined), 'w2 in rotation', 30_000);
    const joined = o.pool.onWorker('w2');
    expect(joined.map((c) => c.runtimeId)).toEqual(joined.map((c) => pids.get(c.id)));

    // One container goes (the highest port of the most crowded workers): its process is stopped, not just forgotten.
    o.autoscaler.scaleTo(3, 'test');
    const victim = joined.sort((a, b) => b.port - a.port)[0]!;
    await poll(async () => (o.pool.get(victim.id) ? undefined : true), `${victim.id} removed`, 20_000);
    expect(await pidsGone([Number(pids.get(victim.id))])).toBe(true);
  });

  it('refuses a second orchestrator on the same state file', { timeout: 30_000 }, async () => {
    orchestrator = await start(cluster);
    await expect(start(cluster, {}, { provision: false })).rejects.toMatchObject({ code: 'STATE_LOCKED' });
  });
});

describe('which surplus worker the machine autoscaler releases', () => {
  /** w1 (provisioned, empty) and w2 (the autoscaler's, two containers) over a pool, a clock and the room the others have. */
  function rig() {
    const pool = new ContainerPool({ log: silent, ejection: { baseMs: 0, maxMs: 0 } });
    const state = stateFileSchema.parse({
      version: 1,
      cluster: 'release-order',
      updatedAt: new Date(0).toISOString(),
      writer: 'orchestrator',
      workers: [
        { id: 'w1', provider: 'local', host: '127.0.0.1', runtime: { driver: 'process' }, state: 'up', launchedBy: 'provisioning' },
        { id: 'w2', provider: 'local', host: '127.0.0.1', runtime: { driver: 'process' }, state: 'up', launchedBy: 'autoscaler' },
      ],
      containers: [
        { id: 'w2-c1', workerId: 'w2', host: '127.0.0.1', port: 5101, runtimeId: null, managed: true },
        { id: 'w2-c2', workerId: 'w2', host: '127.0.0.1', port: 5102, runtimeId: null, managed: true },
      ],
    });
    pool.load(state.workers, state.containers, 1);
    const clock = { now: 0 };
    const roomBesides: Record<string, number> = { w1: 8, w2: 0 };
    const released: string[] = [];
    const fleet = {
      launching: 0,
      releasing: 0,
      stranded: () => [],
      release: async (id: string) => {
        released.push(id);
        return { worker: id, containers: [] };
      },
    };
    const scaler = new MachineScaler(
      {
        pool,
        fleet: fleet as unknown as WorkerFleet,
        autoscaler: { unplaced: () => 0, wanted: () => 2, paused: false },
        operations: { room: (exceptWorker?: string) => roomBesides[exceptWorker ?? ''] ?? 0 },
        log: silent,
        now: () => clock.now,
      },
      { minWorkers: 1, maxWorkers: 3, maxPerWorker: 8, surplusMs: 5_000, upCooldownMs: 0, downCooldownMs: 0, intervalMs: 1_000 },
    );
    return { scaler, clock, roomBesides, released };
  }

  it("releases the autoscaler's own worker before a provisioned one that has been surplus longer, once its own surplusMs is over", async () => {
    const { scaler, clock, roomBesides, released } = rig();
    // t = 0: only w1 is surplus (w2 holds the 2 wanted and nothing else has room for them).
    await scaler.tick();
    // t = 1 s: w1 gets room for w2's containers, so w2 is surplus too, from now on.
    clock.now = 1_000;
    roomBesides.w2 = 8;
    await scaler.tick();
    // t = 5 s: w1 has been surplus for 5 s, w2 for 4 s: nothing goes yet.
    clock.now = 5_000;
    await scaler.tick();
    expect(released).toEqual([]);
    clock.now = 6_000;
    await scaler.tick();
    expect(released).toEqual(['w2']);
  });
});
