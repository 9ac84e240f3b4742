import { rm } from 'node:fs/promises';
import { emptyState, type StateFile } from '../../status/src/schema.js';
import { StateStore } from '../../status/src/state-store.js';
import type { ProvisionConfig } from './config.js';
import { ClusterMismatchError } from './errors.js';
import type { ProvisionOptions, ProvisionResult, Provider, TeardownResult } from './provider.js';

export interface CommandOptions {
  provider: Provider;
  /** Delete the state file first, even a corrupted or foreign one. @default false */
  reset?: boolean;
  /** Asked once the state file is known to be this cluster's, before anything changes (the cost guard). */
  confirm?: () => Promise<void>;
}

/** What `provision` did and recorded. */
export interface ProvisionReport extends ProvisionResult {
  cluster: string;
  statePath: string;
  /** Things the operator should know, one line each. */
  warnings: string[];
}

/** What `teardown` did. */
export interface TeardownReport extends TeardownResult {
  cluster: string;
  statePath: string;
  warnings: string[];
}

/**
 * Bring the cluster to the configured size and record its inventory in the state file. A state
 * file that is not ours is refused (StateFileError) and left untouched unless `reset`.
 */
export async function provisionCluster(config: ProvisionConfig, options: CommandOptions & ProvisionOptions): Promise<ProvisionReport> {
  const { store, current } = await openState(config, options);
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
  });
  return { ...result, cluster: config.cluster, statePath: config.statePath, warnings: orchestratorWarnings(current) };
}

/** Stop every container of the cluster and clear the inventory; the state file stays valid. Idempotent. */
export async function teardownCluster(config: ProvisionConfig, options: CommandOptions): Promise<TeardownReport> {
  const { store, current } = await openState(config, options);
  const result = await options.provider.teardown({ workers: current?.workers ?? [], containers: current?.containers ?? [] });
  if (current || options.reset) {
    // An orchestrator on an instance went with it.
    await store.write({ ...emptyState(config.cluster, 'provisioning'), orchestrator: current?.orchestrator?.instanceId ? null : (current?.orchestrator ?? null) });
  }
  return { ...result, cluster: config.cluster, statePath: config.statePath, warnings: orchestratorWarnings(current) };
}

/** The state file, refused when it is another cluster's; then the confirmation; then, with reset, the file deleted. */
async function openState(config: ProvisionConfig, options: Pick<CommandOptions, 'reset' | 'confirm'>): Promise<{ store: StateStore; current: StateFile | null }> {
  const store = new StateStore(config.statePath);
  const current = options.reset ? null : await store.read();
  if (current && current.cluster !== config.cluster) throw new ClusterMismatchError(config.statePath, current.cluster, config.cluster);
  await options.confirm?.();
  if (options.reset) await rm(config.statePath, { force: true });
  return { store, current };
}

/** A running orchestrator on this machine keeps its own copy of the inventory and rewrites the file from it (one on its own instance writes its own). */
function orchestratorWarnings(state: StateFile | null): string[] {
  const orchestrator = state?.orchestrator;
  if (!orchestrator?.running || orchestrator.instanceId || !isAlive(orchestrator.pid)) return [];
  return [`the orchestrator (pid ${orchestrator.pid}) is running: it keeps the old inventory and writes it back over this one; restart it`];
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
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
