import PQueue from 'p-queue';
import { StartCancelledError } from '../../runtime/src/errors.js';

/** A container to start, and the worker whose queue it waits in. */
export interface QueuedStart {
  name: string;
  workerId: string;
}

export interface WorkerStartOptions {
  /** Starts one worker runs at once: its runtime's `concurrency`. More wait, in order. */
  concurrency: number;
  /** Cancels the starts: those waiting never begin, those running get the abort through their own signal. */
  signal?: AbortSignal;
  /** One progress line per start begun, done or failed, from the worker queue's events. */
  say?: (line: string) => void;
}

/**
 * Runs `start` for each container through a p-queue per worker (`concurrency` at once, in the
 * containers' order), every worker at the same time. The first failure aborts the signal every
 * start gets, so the rest stop early (a start not begun yet must check it before starting).
 * Resolves once every start settled, with the outcomes in the containers' order.
 */
export async function startPerWorker<C extends QueuedStart, R>(
  containers: readonly C[],
  start: (container: C, signal: AbortSignal) => Promise<R>,
  options: WorkerStartOptions,
): Promise<PromiseSettledResult<R>[]> {
  const failed = new AbortController();
  const signal = options.signal ? AbortSignal.any([options.signal, failed.signal]) : failed.signal;
  const queues = new Map<string, PQueue>();
  const queueOf = (workerId: string): PQueue => {
    let queue = queues.get(workerId);
    if (!queue) {
      // Started once all is queued, so the first progress lines already count what waits.
      queue = new PQueue({ concurrency: options.concurrency, autoStart: false });
      queues.set(workerId, queue);
      if (options.say) report(workerId, queue, options.say);
    }
    return queue;
  };
  const outcomes = Promise.allSettled(
    containers.map((container) =>
      queueOf(container.workerId).add(
        () =>
          start(container, signal).catch((error: unknown) => {
            failed.abort();
            throw error;
          }),
        { id: container.name },
      ),
    ),
  );
  for (const queue of queues.values()) queue.start();
  return outcomes;
}

/** Progress lines from a worker queue's events: which start began, and how many run and wait. */
function report(workerId: string, queue: PQueue, say: (line: string) => void): void {
  // `finished`: on 'completed' and 'error' the queue still counts the task that just ended as pending.
  const load = (finished: 0 | 1): string => `${queue.pending - finished} starting, ${queue.size} waiting`;
  queue.on('active', () => say(`${workerId}: starting ${queue.runningTasks.at(-1)?.id} (${load(0)})`));
  queue.on('completed', (started: { name?: string } | undefined) => say(`${workerId}: ${started?.name ?? 'a container'} healthy (${load(1)})`));
  queue.on('error', (error: unknown) => {
    if (!(error instanceof StartCancelledError)) say(`${workerId}: ${error instanceof Error ? error.message : String(error)} (${load(1)})`);
  });
}
