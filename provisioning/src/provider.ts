import type { Inventory } from './inventory.js';

/** What provision() did, per container name, and the inventory to record. */
export interface ProvisionResult extends Inventory {
  /** Containers this run started. */
  started: string[];
  /** Containers that were already running and healthy, left alone. */
  kept: string[];
  /** Containers stopped because they were stale (not healthy) or no longer wanted. */
  removed: string[];
  /** The orchestrator this run deployed on an instance of its own (withOrchestrator), or found running there. */
  orchestrator?: { url: string; instanceId: string; startedAt: string };
}

/** What teardown() stopped. */
export interface TeardownResult {
  /** Names of the containers stopped (or found already stopped) and forgotten. */
  stopped: string[];
  /** Containers the inventory lists but the runtime does not know: nothing proves what runs under their id, so they were not signalled. */
  unknown: string[];
}

export interface ProvisionOptions {
  /** Health progress: containers answering /health with their own id, out of all wanted. */
  onProgress?: (healthy: number, total: number) => void;
  /** Aborting (Ctrl-C) stops what this run started, like a timeout does. */
  signal?: AbortSignal;
}

/**
 * Where workers come from (this machine; later Docker hosts or EC2). A provider brings the
 * cluster to its configured size and takes it down; the caller owns the state file.
 */
export interface Provider {
  readonly name: string;
  /**
   * Make the cluster match the config, keeping what `current` (or the runtime's labels) shows is
   * running and healthy. Resolves once every container is healthy; on failure, stops what it started.
   */
  provision(current: Inventory, options?: ProvisionOptions): Promise<ProvisionResult>;
  /** Stop and forget every container of the cluster: those `current` lists and those the runtime labels as the cluster's. */
  teardown(current: Inventory): Promise<TeardownResult>;
}
