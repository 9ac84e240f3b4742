import type { WorkerProvider } from '../../provisioning/src/worker-provider.js';
import { createServer as createNetServer, type Server as NetServer } from 'node:net';
import { pino } from 'pino';
import { ClusterView } from '../../orchestrator/src/cluster-view.js';
import { loadOrchestratorConfig } from '../../orchestrator/src/config.js';
import { ContainerPool } from '../../orchestrator/src/container-pool.js';
import { Orchestrator } from '../../orchestrator/src/orchestrator.js';
import { RequestStats } from '../../orchestrator/src/request-stats.js';
import { provisionCluster } from '../../provisioning/src/commands.js';
import { createProvider } from '../../provisioning/src/create-provider.js';
import { machineScalerSnapshotSchema, stateFileSchema, type MachineScalerSnapshot, type StateFile } from '../../status/src/schema.js';
import type { TempCluster } from './cluster.js';

/**
 * A machine autoscaler that launched w2 (need seen 1.5 s before the launch was asked for), is
 * launching w3, releasing w1, and waits out a back-off after a failed launch; bounds 1 to 4.
 * Its times are relative to `now` so the back-off is still running.
 */
export function machineSnapshot(now = Date.now(), overrides: Partial<MachineScalerSnapshot> = {}): MachineScalerSnapshot {
  const at = (offsetMs: number) => new Date(now + offsetMs).toISOString();
  return machineScalerSnapshotSchema.parse({
    provider: 'process',
    paused: false,
    minWorkers: 1,
    maxWorkers: 4,
    launching: [{ workerId: 'w3', since: at(-4_000), reason: '2 containers fit on no worker' }],
    releasing: [{ workerId: 'w1', since: at(-2_000), reason: 'its containers surplus for 60 s' }],
    failures: 2,
    backoffUntil: at(30_000),
    lastError: 'spawn ENOENT: worker binary missing',
    counts: { launched: 3, launchFailed: 2, adopted: 1, released: 5, releaseFailed: 0 },
    decisions: [
      { at: at(-60_000), action: 'launch', workerId: 'w2', workers: 1, reason: '3 containers fit on no worker' },
      { at: at(-55_000), action: 'launched', workerId: 'w2', workers: 2, reason: 'its containers answer' },
      { at: at(-10_000), action: 'launch-failed', workerId: 'w4', workers: 2, reason: 'spawn ENOENT: worker binary missing' },
      { at: at(-4_000), action: 'launch', workerId: 'w3', workers: 2, reason: '2 containers fit on no worker' },
      { at: at(-2_000), action: 'release', workerId: 'w1', workers: 3, reason: 'its containers surplus for 60 s' },
    ],
    launches: [
      { workerId: 'w0', needSince: null, decisionMs: null, launchMs: 900, startMs: 800, probeMs: 100 },
      { workerId: 'w2', needSince: at(-61_500), decisionMs: 1_500, launchMs: 2_250, startMs: 3_000, probeMs: 125 },
    ],
    ...overrides,
  });
}

/** Two workers: w1 (provisioned, draining, one container) and w2 (launched by the autoscaler, up, two containers). */
export function machineCluster(): StateFile {
  return stateFileSchema.parse({
    version: 1,
    cluster: 'machines',
    updatedAt: new Date().toISOString(),
    writer: 'orchestrator',
    workers: [
      { id: 'w1', provider: 'local', host: '127.0.0.1', runtime: { driver: 'process' }, state: 'draining' },
      { id: 'w2', provider: 'local', host: '127.0.0.1', runtime: { driver: 'process' }, state: 'up', launchedBy: 'autoscaler' },
    ],
    containers: [
      { id: 'w1-c1', workerId: 'w1', host: '127.0.0.1', port: 5001, runtimeId: null, managed: false },
      { id: 'w2-c1', workerId: 'w2', host: '127.0.0.1', port: 5101, runtimeId: null, managed: false },
      { id: 'w2-c2', workerId: 'w2', host: '127.0.0.1', port: 5102, runtimeId: null, managed: false },
    ],
  });
}

/**
 * The cluster view the orchestrator builds, over `state`'s workers and containers and a machine
 * autoscaler read through `machines` (the orchestrator's own source is its MachineScaler).
 */
export function machineClusterView(state: StateFile, machines: () => MachineScalerSnapshot | null): ClusterView {
  const pool = new ContainerPool();
  pool.load(state.workers, state.containers, 1);
  return new ClusterView({
    cluster: state.cluster,
    pool,
    queue: { length: 0, oldestWaitMs: () => 0, counters: { queued: 0 } },
    maxQueue: 100,
    stats: new RequestStats(),
    orchestrator: () => null,
    autoscaler: () => null,
    machines,
    provisioning: null,
    scaling: () => ({ decisions: { 'scale-out': 0, 'scale-in': 0, none: 0 }, desired: pool.size }),
  });
}

/** Provision `workers` workers of the real worker app on `cluster`, as `npm run provision` does (the state file records the provisioning config). */
export async function provisionWorkers(cluster: TempCluster, workers = 1): Promise<void> {
  const provisioning = cluster.config({ workers });
  await provisionCluster(provisioning, { provider: createProvider(provisioning, pino({ level: 'silent' })) });
}

/**
 * Provision one worker on `cluster` (unless `provision` is false: the test did), then start an
 * orchestrator over it on 127.0.0.1:0 with a machine autoscaler: two containers a worker, up to
 * two workers, a worker surplus for 300 ms released. No scaling policy: the test sets the
 * container target (`orchestrator.autoscaler.scaleTo`). Close the orchestrator, then let the
 * cluster's cleanup stop what is left.
 */
export async function startMachineOrchestrator(
  cluster: TempCluster,
  flags: Record<string, unknown> = {},
  options: { provision?: boolean; workerProvider?: WorkerProvider } = {},
): Promise<{ orchestrator: Orchestrator; url: string }> {
  const silent = pino({ level: 'silent' });
  if (options.provision ?? true) await provisionWorkers(cluster);
  const config = loadOrchestratorConfig({
    flags: {
      port: 0,
      statePath: cluster.statePath,
      healthIntervalMs: 200,
      statusWriteIntervalMs: 50,
      scaleIntervalMs: 100,
      maxContainersPerWorker: 2,
      maxContainers: 4,
      maxWorkers: 2,
      minWorkers: 1,
      workerSurplusMs: 300,
      workerScaleDownCooldownMs: 0,
      scaleDownCooldownMs: 0,
      shutdownTimeoutMs: 5_000,
      ...flags,
    },
  });
  const orchestrator = await Orchestrator.create(config, silent, { workerProvider: options.workerProvider });
  try {
    return { orchestrator, url: await orchestrator.listen() };
  } catch (error) {
    await orchestrator.close();
    throw error;
  }
}

/** Something else listening on 127.0.0.1:`port`, as another program would: a worker launched there fails with PORT_IN_USE. */
export async function squat(port: number): Promise<NetServer> {
  const server = createNetServer((socket) => socket.destroy());
  await new Promise<void>((resolve, reject) => server.once('error', reject).listen(port, '127.0.0.1', () => resolve()));
  return server;
}
