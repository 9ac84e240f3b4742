import { rm } from 'node:fs/promises';
import { emptyState, type StateFile } from '../../status/src/schema.js';
import { isPidAlive, readStateLock, StateLockedError } from '../../status/src/state-lock.js';
import { StateStore } from '../../status/src/state-store.js';
import type { ProvisionConfig } from './config.js';
import { ClusterMismatchError } from './errors.js';
import { inventoryOwner, OrchestratorAdmin, provisionThrough, removeThrough, type Handover, type InventoryOwner } from './handover.js';
import { workerLayout } from './inventory.js';
import type { ProvisionOptions, ProvisionResult, Provider, TeardownResult } from './provider.js';
import type { WorkerProvider } from './worker-provider.js';

export interface CommandOptions {
  provider: Provider;
  /** Delete the state file first, even a corrupted or foreign one. @default false */
  reset?: boolean;
  /** Asked once the state file is known to be this cluster's, before anything changes (the cost guard). */
  confirm?: () => Promise<void>;
  /** The admin token of an orchestrator running over the state file (ORCH_ADMIN_TOKEN): changes are then handed to it. */
  adminToken?: string;
  /** Progress lines for the operator. */
  say?: (line: string) => void;
}

/** What `provision` did and recorded. */
export interface ProvisionReport extends ProvisionResult {
  cluster: string;
  statePath: string;
  /** Things the operator should know, one line each. */
  warnings: string[];
  /** Set when an orchestrator ran over the state file: the change was handed to it, the file left to it. */
  handover?: Handover;
}

/** What `teardown` did. */
export interface TeardownReport extends TeardownResult {
  cluster: string;
  statePath: string;
  warnings: string[];
  /** Set when an orchestrator ran over the state file: it drained and released the workers. */
  handover?: Handover;
  /** Set when one worker was taken down (`--worker`). */
  worker?: string;
}

/**
 * Bring the cluster to the configured size and record its inventory in the state file. A state
 * file that is not ours is refused (StateFileError) and left untouched unless `reset`.
 */
export async function provisionCluster(config: ProvisionConfig, options: CommandOptions & ProvisionOptions): Promise<ProvisionReport> {
  const { store, current, owner } = await openState(config, options);
  if (owner) {
    // The orchestrator launches what this run asks for: the cost guard asks first, as for a launch of our own.
    await options.confirm?.();
    return provisionThroughOwner(config, owner, options);
  }
  const result = await options.provider.provision(
    { workers: current?.workers ?? [], containers: current?.containers ?? [] },
    { onProgress: options.onProgress, signal: options.signal },
  );
  // Queue and counters described the old inventory; the orchestrator record describes a process, still true
  // unless it ran on an instance provisioning launched: this run deployed it again, or removed it.
  const local = current?.orchestrator?.instanceId ? null : (current?.orchestrator ?? null);
  await store.write({
    ...emptyState(config.cluster, 'provisioning'),
    // On its instance, node is PID 1 of its container.
    orchestrator: result.orchestrator ? { ...result.orchestrator, pid: 1, running: true } : local,
    workers: result.workers,
    containers: result.containers,
    // How the workers were made: a running orchestrator launches more with it, and a later provision is compared with it.
    provisioning: { ...config },
  });
  return { ...result, cluster: config.cluster, statePath: config.statePath, warnings: orchestratorWarnings(current) };
}

/** Stop every container of the cluster and clear the inventory; the state file stays valid. Idempotent. */
export async function teardownCluster(config: ProvisionConfig, options: CommandOptions): Promise<TeardownReport> {
  const { store, current, owner } = await openState(config, options);
  if (owner) return teardownThroughOwner(config, owner, options);
  const result = await options.provider.teardown({ workers: current?.workers ?? [], containers: current?.containers ?? [] });
  if (current || options.reset) {
    // An orchestrator on an instance went with it.
    await store.write({ ...emptyState(config.cluster, 'provisioning'), orchestrator: current?.orchestrator?.instanceId ? null : (current?.orchestrator ?? null) });
  }
  return { ...result, cluster: config.cluster, statePath: config.statePath, warnings: orchestratorWarnings(current) };
}

/**
 * Take one worker down: drained and released by the orchestrator running over the state file, or,
 * with none, released here and removed from the inventory with its containers. Idempotent.
 */
export async function teardownWorker(config: ProvisionConfig, workerId: string, options: Omit<CommandOptions, 'provider' | 'reset'> & { workerProvider: WorkerProvider }): Promise<TeardownReport> {
  workerLayout(config, workerId);
  const { store, current, owner } = await openState(config, options);
  const report = { cluster: config.cluster, statePath: config.statePath, worker: workerId, unknown: [], warnings: [] };
  if (owner) {
    const admin = await OrchestratorAdmin.connect(owner, options.adminToken);
    const stopped = await removeThrough(admin, [workerId], say(options));
    return { ...report, stopped, handover: { orchestrator: owner, added: [], removed: [workerId], autoscalers: [] } };
  }
  await options.workerProvider.release(workerId);
  const stopped = (current?.containers ?? []).filter((c) => c.workerId === workerId).map((c) => c.id);
  if (current) {
    await store.write({ ...current, workers: current.workers.filter((w) => w.id !== workerId), containers: current.containers.filter((c) => c.workerId !== workerId) });
  }
  return { ...report, stopped, warnings: orchestratorWarnings(current) };
}

async function provisionThroughOwner(config: ProvisionConfig, owner: InventoryOwner, options: CommandOptions): Promise<ProvisionReport> {
  const admin = await OrchestratorAdmin.connect(owner, options.adminToken);
  const { handover, status } = await provisionThrough(admin, config, say(options));
  const added = new Set(handover.added);
  const ids = (pick: (workerId: string) => boolean) => status.containers.filter((c) => pick(c.workerId)).map((c) => c.id);
  return {
    cluster: config.cluster,
    statePath: config.statePath,
    workers: status.workers,
    containers: status.containers,
    started: ids((id) => added.has(id)),
    kept: ids((id) => !added.has(id)),
    removed: [],
    warnings: [],
    handover,
  };
}

/** With the orchestrator's autoscalers paused first (nothing relaunched), every worker drained and released by it, then the provider's teardown for what is left (a machine mid-launch). */
async function teardownThroughOwner(config: ProvisionConfig, owner: InventoryOwner, options: CommandOptions): Promise<TeardownReport> {
  const admin = await OrchestratorAdmin.connect(owner, options.adminToken);
  await admin.pauseAutoscaler();
  const workers = (await admin.status()).workers;
  const drained = await removeThrough(admin, workers.map((w) => w.id), say(options));
  const left = await admin.status();
  const result = await options.provider.teardown({ workers: left.workers, containers: left.containers });
  return {
    stopped: [...new Set([...drained, ...result.stopped])],
    unknown: result.unknown,
    cluster: config.cluster,
    statePath: config.statePath,
    warnings: [],
    handover: { orchestrator: owner, added: [], removed: workers.map((w) => w.id), autoscalers: [] },
  };
}

const say = (options: Pick<CommandOptions, 'say'>): ((line: string) => void) => options.say ?? (() => undefined);

/**
 * The state file, refused when it is another cluster's, and the orchestrator that owns it if one
 * runs over it. Without one: the confirmation, then, with reset, the file deleted (refused while an
 * orchestrator holds the file's lock: it would write its inventory back).
 */
async function openState(
  config: ProvisionConfig,
  options: Pick<CommandOptions, 'reset' | 'confirm'>,
): Promise<{ store: StateStore; current: StateFile | null; owner: InventoryOwner | null }> {
  const store = new StateStore(config.statePath);
  if (options.reset) {
    const holder = await readStateLock(config.statePath);
    if (holder) throw new StateLockedError(config.statePath, holder);
  }
  const current = options.reset ? null : await store.read();
  if (current && current.cluster !== config.cluster) throw new ClusterMismatchError(config.statePath, current.cluster, config.cluster);
  const owner = await inventoryOwner(config.statePath, current);
  if (owner) return { store, current, owner };
  await options.confirm?.();
  if (options.reset) await rm(config.statePath, { force: true });
  return { store, current, owner };
}

/** A running orchestrator on this machine keeps its own copy of the inventory and rewrites the file from it (one on its own instance writes its own). */
function orchestratorWarnings(state: StateFile | null): string[] {
  const orchestrator = state?.orchestrator;
  if (!orchestrator?.running || orchestrator.instanceId || !isPidAlive(orchestrator.pid)) return [];
  return [`the orchestrator (pid ${orchestrator.pid}) is running: it keeps the old inventory and writes it back over this one; restart it`];
}

/** The provider and runtime a state file's workers were provisioned with, so teardown undoes that whatever the defaults are. */
export async function recordedSetup(statePath: string): Promise<{ provider?: ProvisionConfig['provider']; runtime?: ProvisionConfig['runtime'] }> {
  const current = await new StateStore(statePath).read().catch(() => null);
  const workers = current?.workers ?? [];
  if (workers.some((worker) => worker.provider === 'aws')) return { provider: 'aws' };
  if (workers.some((worker) => worker.runtime.driver === 'docker')) return { runtime: 'docker' };
  if (workers.some((worker) => worker.runtime.driver === 'process')) return { runtime: 'process' };
  return {};
}
