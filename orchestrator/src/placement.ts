import type { Container, ContainerPool, Worker } from './container-pool.js';

/** Where a new container goes. */
export interface Placement {
  worker: Worker;
  port: number;
}

/**
 * The worker with the fewest containers (ties: the least loaded, then the first), on its lowest
 * free port; null when every worker is full, down or draining. `maxPerWorker`: containers one worker may hold.
 */
export function place(pool: ContainerPool, maxPerWorker: number): Placement | null {
  let best: { worker: Worker; containers: Container[]; load: number } | undefined;
  for (const worker of pool.workers()) {
    const containers = pool.onWorker(worker.id);
    if (roomOn(worker, containers, maxPerWorker) === 0) continue;
    const load = containers.reduce((n, c) => n + c.inFlight, 0);
    if (!best || containers.length < best.containers.length || (containers.length === best.containers.length && load < best.load)) {
      best = { worker, containers, load };
    }
  }
  return best ? { worker: best.worker, port: freePort(best.worker, best.containers)! } : null;
}

/**
 * How many more containers placement can take now, over every worker that is up (but
 * `exceptWorker`). Containers
 * draining or starting hold their worker's slots and ports until they are gone.
 */
export function room(pool: ContainerPool, maxPerWorker: number, exceptWorker?: string): number {
  let n = 0;
  for (const worker of pool.workers()) if (worker.id !== exceptWorker) n += roomOn(worker, pool.onWorker(worker.id), maxPerWorker);
  return n;
}

/** Containers `worker` can take now: none unless up (not down, not draining), else up to its per-worker maximum and its free ports. */
function roomOn(worker: Worker, containers: readonly Container[], maxPerWorker: number): number {
  if (worker.state !== 'up') return 0;
  return Math.max(0, Math.min(maxPerWorker - containers.length, freePortCount(worker, containers)));
}

/** How many ports of the worker's range no container of it holds; without a range, those above the highest in use. */
function freePortCount(worker: Worker, containers: readonly Container[]): number {
  if (!worker.ports) return 65535 - Math.max(4999, ...containers.map((c) => c.port));
  const used = new Set(containers.map((c) => c.port).filter((port) => port >= worker.ports!.first && port <= worker.ports!.last));
  return worker.ports.last - worker.ports.first + 1 - used.size;
}

/** The lowest port of the worker's range that no container of it holds; above the highest in use without a range. */
function freePort(worker: Worker, containers: readonly Container[]): number | null {
  const used = new Set(containers.map((c) => c.port));
  if (!worker.ports) {
    const highest = Math.max(4999, ...used);
    return highest < 65535 ? highest + 1 : null;
  }
  for (let port = worker.ports.first; port <= worker.ports.last; port++) if (!used.has(port)) return port;
  return null;
}
