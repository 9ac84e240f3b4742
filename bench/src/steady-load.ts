import { performance } from 'node:perf_hooks';
import { runLoad } from '../../load/src/run-load.js';

export interface SteadyLoadOptions {
  url: string;
  /** How long to keep the load on, in ms. */
  durationMs: number;
  /** Requests in flight at once. */
  concurrency: number;
  /** Load threads. */
  threads: number;
  body: string;
  /** Aimed length of one slice, in ms (the last one is cut to what remains). */
  sliceMs: number;
  /** Deadline of one request, in ms. */
  timeoutMs: number;
  /** Aborting ends the load after the slice under way. */
  signal?: AbortSignal;
}

/** One runLoad call of a steady load. */
export interface Slice {
  /** Seconds from the start of the steady load to the start of this slice. */
  startS: number;
  durationMs: number;
  requests: number;
  throughputRps: number;
  /** Answers with a non-2xx status, plus requests with no answer. */
  failed: number;
  /** Latency of this slice's answers, in ms; null when none came. */
  latencyMs: { p50: number; p99: number; max: number } | null;
}

export interface SteadyLoadResult {
  /** Requests sent in all. */
  requests: number;
  /** Answers by HTTP status, summed over the slices. */
  statusCodes: Record<string, number>;
  /** Requests with no answer, by error kind, summed over the slices. */
  errors: Record<string, number>;
  durationMs: number;
  slices: Slice[];
}

/** Requests of the first slice, per unit of concurrency: enough to measure the throughput the next slices are sized from. */
const FIRST_SLICE_REQUESTS_PER_LANE = 40;
/** Requests per lane left in a slice from which it no longer counts as at full concurrency. */
const TAIL_REQUESTS_PER_LANE = 4;
/** A remainder shorter than this is not worth another slice's thread start-up, in ms. */
const MIN_SLICE_MS = 500;

const addInto = (total: Record<string, number>, part: Record<string, number>): void => {
  for (const [key, n] of Object.entries(part)) total[key] = (total[key] ?? 0) + n;
};

export interface SteadyLoadHooks {
  /** Requests finished so far, over all slices. */
  onProgress?: (requestsDone: number) => void;
  /**
   * Whether the load is at full concurrency now: true once a slice's first answers arrive (every
   * lane has its request out), false from its last few requests on, and between slices.
   */
  onFullLoad?: (full: boolean) => void;
}

/**
 * A load at constant concurrency for a duration, from runLoad, which sends a fixed number of
 * requests: consecutive runs ("slices"), each sized from the previous one's throughput to last
 * about `sliceMs`. Between two slices, the lanes drain and new threads start (a fraction of a second).
 */
export async function runSteadyLoad(options: SteadyLoadOptions, hooks: SteadyLoadHooks = {}): Promise<SteadyLoadResult> {
  const started = performance.now();
  const result: SteadyLoadResult = { requests: 0, statusCodes: {}, errors: {}, durationMs: 0, slices: [] };
  let requests = options.concurrency * FIRST_SLICE_REQUESTS_PER_LANE;
  const remainingMs = (): number => options.durationMs - (performance.now() - started);
  while (remainingMs() >= MIN_SLICE_MS && !options.signal?.aborted) {
    const startS = (performance.now() - started) / 1000;
    const done = result.requests;
    // Lanes run dry from here on: a margin of a few requests per lane keeps "full" true only while every lane is busy.
    const drainingFrom = requests - TAIL_REQUESTS_PER_LANE * options.concurrency;
    const slice = await runLoad(
      { url: options.url, requests, threads: options.threads, concurrency: options.concurrency, method: 'POST', body: options.body, timeoutMs: options.timeoutMs },
      {
        onProgress: (progress) => {
          hooks.onProgress?.(done + progress.done);
          hooks.onFullLoad?.(progress.done > 0 && progress.done < drainingFrom);
        },
      },
    );
    hooks.onFullLoad?.(false);
    result.requests += slice.requests;
    addInto(result.statusCodes, slice.statusCodes);
    addInto(result.errors, slice.errors);
    result.slices.push({
      startS,
      durationMs: slice.durationMs,
      requests: slice.requests,
      throughputRps: slice.throughputRps,
      failed: slice.failed,
      latencyMs: slice.latencyMs && { p50: slice.latencyMs.p50, p99: slice.latencyMs.p99, max: slice.latencyMs.max },
    });
    requests = Math.max(options.concurrency, Math.round((slice.throughputRps * Math.min(options.sliceMs, remainingMs())) / 1000));
  }
  result.durationMs = performance.now() - started;
  return result;
}
