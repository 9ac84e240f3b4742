import { performance } from 'node:perf_hooks';
import { Worker } from 'node:worker_threads';
import { AppError } from '../../common/src/errors.js';
import type { RequestSample, StartMessage, ThreadMessage, ThreadTask } from './messages.js';
import type { LoadOptions } from './options.js';

/** The `servedBy` key of answers that carried no `x-served-by` header. */
export const NO_CONTAINER = '(none)';

/** Latency of the requests that got an answer (any status), in ms, rounded to µs. */
export interface LatencySummary {
  min: number;
  mean: number;
  p50: number;
  p90: number;
  p99: number;
  max: number;
}

/** What one run measured; this is also the `--json` output. */
export interface LoadResult {
  url: string;
  method: string;
  /** Requests sent (= options.requests). */
  requests: number;
  /** Threads used: min(threads, concurrency, requests). */
  threads: number;
  /** Requests in flight at once at most, over all threads. */
  concurrency: number;
  /** When the threads were told to start (after they all set up), ISO 8601. */
  startedAt: string;
  /** From the start signal to the last thread's last answer, in ms. */
  durationMs: number;
  /** Answers (any status) per second over `durationMs`. */
  throughputRps: number;
  /** Requests answered with a 2xx status. */
  succeeded: number;
  /** Requests that failed: answered with a non-2xx status, or not answered (network error). */
  failed: number;
  /** Answers by HTTP status, e.g. `{"200": 98, "503": 2}`. */
  statusCodes: Record<string, number>;
  /** Unanswered requests by error kind, e.g. `{"ECONNREFUSED": 5, "TIMEOUT": 1}`. */
  errors: Record<string, number>;
  /** Null when no request got an answer. */
  latencyMs: LatencySummary | null;
  /** Answers by the container that served them (`x-served-by`), `(none)` when absent; sums to the answers. */
  servedBy: Record<string, number>;
  /** With `timeline`: each second of the run, from the start signal. */
  timeline?: TimelineSecond[];
}

/** One second of a run: what finished in it. */
export interface TimelineSecond {
  /** Seconds from the start signal (this second covers [second, second + 1)). */
  second: number;
  answered: number;
  failed: number;
  /** Latency percentiles of the answers that finished in this second; null when none did. */
  latencyMs: { p50: number; p90: number; p99: number } | null;
  servedBy: Record<string, number>;
}

/** Progress of a run, reported after each batch of answers. */
export interface LoadProgress {
  /** Requests finished (answered or failed). */
  done: number;
  total: number;
  /** Requests failed so far (non-2xx or network error). */
  failed: number;
}

/** A load thread crashed or ended without sending its share: the run's numbers would be wrong. */
export class LoadThreadError extends AppError {
  constructor(index: number, reason: string, cause?: unknown) {
    super('LOAD_THREAD_FAILED', `load thread ${index} failed: ${reason}`, { cause });
  }
}

/** `total` split into `parts` shares that differ by at most one and sum to `total`. */
export function split(total: number, parts: number): number[] {
  return Array.from({ length: parts }, (_, i) => Math.floor(total / parts) + (i < total % parts ? 1 : 0));
}

/** Send `options.requests` requests from worker threads, `options.concurrency` in flight in all, and measure them. */
export async function runLoad(options: LoadOptions, hooks: { onProgress?: (progress: LoadProgress) => void } = {}): Promise<LoadResult> {
  const threadCount = Math.min(options.threads, options.concurrency, options.requests);
  const requestShares = split(options.requests, threadCount);
  const concurrencyShares = split(options.concurrency, threadCount);
  const headers: Record<string, string> = {
    ...(options.body === null ? {} : { 'content-type': 'application/json' }),
    ...(options.key === undefined ? {} : { authorization: `Bearer ${options.key}` }),
  };
  const tasks: ThreadTask[] = requestShares.map((requests, index) => ({
    index,
    url: options.url,
    method: options.method,
    headers,
    body: options.body,
    requests,
    concurrency: concurrencyShares[index]!,
    timeoutMs: options.timeoutMs,
  }));

  const tally = new Tally(options.requests, options.timeline ?? false);
  let startedAt = '';
  let startMs = 0;
  let endMs = 0;
  const failure = await new Promise<LoadThreadError | undefined>((resolve) => {
    const workers = tasks.map(spawnThread);
    const sent = new Array<number | undefined>(workers.length);
    let ready = 0;
    let exited = 0;
    let firstFailure: LoadThreadError | undefined;
    const fail = (error: LoadThreadError): void => {
      firstFailure ??= error;
      for (const worker of workers) void worker.terminate();
    };
    workers.forEach((worker, index) => {
      worker.on('message', (message: ThreadMessage) => {
        switch (message.type) {
          case 'ready':
            if (++ready < workers.length) return;
            startedAt = new Date().toISOString();
            startMs = performance.now();
            tally.startAt = performance.timeOrigin + startMs;
            for (const w of workers) w.postMessage({ type: 'start' } satisfies StartMessage);
            return;
          case 'samples':
            for (const sample of message.samples) tally.add(sample);
            hooks.onProgress?.({ done: tally.done, total: options.requests, failed: tally.failed });
            return;
          case 'done':
            sent[index] = message.requests;
            endMs = performance.now();
            return;
        }
      });
      worker.on('error', (error) => fail(new LoadThreadError(index, error.message, error)));
      worker.on('exit', (code) => {
        const share = tasks[index]!.requests;
        if (sent[index] !== share) fail(new LoadThreadError(index, `exited (code ${code}) without finishing its ${share} requests`));
        if (++exited === workers.length) resolve(firstFailure);
      });
    });
  });
  if (failure) throw failure;

  const durationMs = endMs - startMs;
  return {
    url: options.url,
    method: options.method,
    requests: options.requests,
    threads: threadCount,
    concurrency: concurrencyShares.reduce((sum, share, i) => sum + Math.min(share, requestShares[i]!), 0),
    startedAt,
    durationMs: round(durationMs),
    throughputRps: durationMs > 0 ? round((tally.answered * 1000) / durationMs) : 0,
    succeeded: tally.done - tally.failed,
    failed: tally.failed,
    statusCodes: sortedRecord(tally.statusCodes),
    errors: sortedRecord(tally.errors),
    latencyMs: tally.latencySummary(),
    servedBy: sortedRecord(tally.servedBy),
    ...(options.timeline ? { timeline: tally.timeline() } : {}),
  };
}

/**
 * Start one load thread. From TypeScript sources (tsx, vitest) the thread loads its .ts file through
 * tsx's API: Node 20 threads do not inherit tsx's loader, not even with `--import tsx` in execArgv.
 */
function spawnThread(task: ThreadTask): Worker {
  if (!import.meta.url.endsWith('.ts')) return new Worker(new URL('./load-thread.js', import.meta.url), { workerData: task });
  const boot = [
    `import { tsImport } from ${JSON.stringify(import.meta.resolve('tsx/esm/api'))};`,
    `await tsImport(${JSON.stringify(new URL('./load-thread.ts', import.meta.url).href)}, import.meta.url);`,
  ].join('\n');
  return new Worker(new URL(`data:text/javascript,${encodeURIComponent(boot)}`), { workerData: task });
}

/** Nearest-rank percentile of sorted values: the smallest value that at least p% of them do not exceed. */
const percentileOf = (sorted: ArrayLike<number>, p: number): number => round(sorted[Math.max(0, Math.ceil((p / 100) * sorted.length) - 1)]!);

/** What finished in one second, while the run goes on. */
interface SecondTally {
  answered: number;
  failed: number;
  latencies: number[];
  servedBy: Map<string, number>;
}

/** Running counts of a run's samples; latencies are kept whole for exact percentiles. */
class Tally {
  done = 0;
  failed = 0;
  answered = 0;
  /** Epoch ms of the start signal, for the timeline. */
  startAt = 0;
  readonly statusCodes = new Map<string, number>();
  readonly errors = new Map<string, number>();
  readonly servedBy = new Map<string, number>();
  readonly #latencies: Float64Array;
  readonly #seconds: Map<number, SecondTally> | undefined;

  constructor(requests: number, timeline: boolean) {
    this.#latencies = new Float64Array(requests);
    this.#seconds = timeline ? new Map() : undefined;
  }

  add(sample: RequestSample): void {
    this.done++;
    const second = this.#secondOf(sample);
    if (sample.status === null) {
      this.failed++;
      if (second) second.failed++;
      increment(this.errors, sample.error ?? 'UNKNOWN');
      return;
    }
    const failed = sample.status < 200 || sample.status > 299;
    if (failed) this.failed++;
    this.#latencies[this.answered++] = sample.latencyMs;
    increment(this.statusCodes, String(sample.status));
    increment(this.servedBy, sample.servedBy ?? NO_CONTAINER);
    if (second) {
      second.answered++;
      if (failed) second.failed++;
      second.latencies.push(sample.latencyMs);
      increment(second.servedBy, sample.servedBy ?? NO_CONTAINER);
    }
  }

  #secondOf(sample: RequestSample): SecondTally | undefined {
    if (!this.#seconds) return undefined;
    const index = Math.max(0, Math.floor((sample.at - this.startAt) / 1000));
    let second = this.#seconds.get(index);
    if (!second) {
      second = { answered: 0, failed: 0, latencies: [], servedBy: new Map() };
      this.#seconds.set(index, second);
    }
    return second;
  }

  /** Every second from the start to the last answer, empty ones included. */
  timeline(): TimelineSecond[] {
    const seconds = this.#seconds ?? new Map<number, SecondTally>();
    const last = Math.max(-1, ...seconds.keys());
    return Array.from({ length: last + 1 }, (_, index) => {
      const s = seconds.get(index);
      const sorted = Float64Array.from(s?.latencies ?? []).sort();
      return {
        second: index,
        answered: s?.answered ?? 0,
        failed: s?.failed ?? 0,
        latencyMs: sorted.length === 0 ? null : { p50: percentileOf(sorted, 50), p90: percentileOf(sorted, 90), p99: percentileOf(sorted, 99) },
        servedBy: sortedRecord(s?.servedBy ?? new Map()),
      };
    });
  }

  latencySummary(): LatencySummary | null {
    const n = this.answered;
    if (n === 0) return null;
    const sorted = this.#latencies.subarray(0, n).sort();
    const at = (p: number): number => percentileOf(sorted, p);
    return {
      min: round(sorted[0]!),
      mean: round(sorted.reduce((sum, ms) => sum + ms, 0) / n),
      p50: at(50),
      p90: at(90),
      p99: at(99),
      max: round(sorted[n - 1]!),
    };
  }
}

const increment = (map: Map<string, number>, key: string): void => {
  map.set(key, (map.get(key) ?? 0) + 1);
};

const sortedRecord = (map: Map<string, number>): Record<string, number> =>
  Object.fromEntries([...map].sort(([a], [b]) => a.localeCompare(b, 'en', { numeric: true })));

const round = (ms: number): number => Math.round(ms * 1000) / 1000;
