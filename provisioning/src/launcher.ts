import type { DesiredContainer } from './inventory.js';

/** Starts the containers a provision run decided to start. */
export interface Launcher {
  /**
   * Start these containers, reporting each one's runtime id once it runs (or, for a launcher that
   * waits, once healthy); also reports siblings the launch recreated (a compose project may
   * recreate a whole worker). Aborting `signal` cancels what has not started yet. Resolves with
   * when the last of them ran (epoch ms: its process spawned, its compose project up), or when
   * the call ended if there was none.
   */
  launch(containers: readonly DesiredContainer[], onStarted: (name: string, runtimeId: string) => void, signal?: AbortSignal): Promise<{ runningAt: number }>;
  /** Take down what launches set up for worker `workerId` beyond its containers (a compose project); absent when there is nothing such. Idempotent. */
  release?(workerId: string): Promise<void>;
}
