import { Presets, SingleBar } from 'cli-progress';
import type { LoadProgress } from './run-load.js';

/** Shows a run's progress; `stop()` ends the display before the summary is printed. */
export interface ProgressDisplay {
  update(progress: LoadProgress): void;
  stop(): void;
}

/** Least time between two progress lines when the stream is not a terminal, in ms. */
export const PROGRESS_LINE_INTERVAL_MS = 2_000;

/** A progress bar on a terminal; elsewhere (CI logs, pipes) a plain line at most every 2 s, as a bar would flood them. */
export function createProgressDisplay(total: number, stream: NodeJS.WriteStream, now: () => number = Date.now): ProgressDisplay {
  if (stream.isTTY) {
    const bar = new SingleBar(
      { stream, format: 'load |{bar}| {percentage}% | {value}/{total} requests | {failed} failed | ETA {eta_formatted}' },
      Presets.shades_classic,
    );
    bar.start(total, 0, { failed: 0 });
    return {
      update: ({ done, failed }) => bar.update(done, { failed }),
      stop: () => bar.stop(),
    };
  }
  let lastLineAt = now();
  return {
    update: ({ done, failed }) => {
      if (now() - lastLineAt < PROGRESS_LINE_INTERVAL_MS) return;
      lastLineAt = now();
      stream.write(`load: ${done}/${total} requests (${Math.floor((100 * done) / total)}%), ${failed} failed\n`);
    },
    stop: () => {},
  };
}
