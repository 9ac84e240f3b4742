import type { ContainerRecord, WorkerRecord } from '../../status/src/schema.js';

/** One worker brought up by a WorkerProvider, every container of it answering its health path. */
export interface LaunchedWorker {
  worker: WorkerRecord;
  /** Its containers, `free`, with their runtime ids where the runtime has them. */
  containers: ContainerRecord[];
  /** Epoch ms: when the launch began, when the machine ran (processes spawned, compose project up, instance running), when every container answered. */
  timings: { requestedAt: number; runningAt: number; healthyAt: number };
  /** True when the machine already ran (found by its labels or tags) and was only waited for. */
  adopted: boolean;
}

/**
 * Where one more worker comes from, one worker at a time: the code `npm run provision` uses, so a
 * worker the orchestrator launches is the worker provisioning would have made (worker `w<k>` on
 * ports basePort + (k-1) * portStride, its containers labelled or its instance tagged with the
 * cluster and the worker id).
 */
export interface WorkerProvider {
  readonly kind: 'process' | 'docker' | 'aws';
  /**
   * Bring worker `workerId` up and wait until each of its containers answers. Idempotent: what
   * already runs for that worker and answers is kept (`adopted`). On failure, timeout or abort it
   * stops what this call started and rejects.
   */
  launch(workerId: string, signal?: AbortSignal): Promise<LaunchedWorker>;
  /** Stop and remove everything of worker `workerId` (containers, compose project, instance), listed or not. Idempotent. */
  release(workerId: string): Promise<void>;
  /** Ids of the cluster's workers the runtime or cloud runs now (by labels or tags), sorted. */
  list(): Promise<string[]>;
}
