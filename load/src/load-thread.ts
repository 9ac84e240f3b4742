// A load thread: sends its share of the requests over its own keep-alive pool and reports each outcome.
import { performance } from 'node:perf_hooks';
import { parentPort, workerData } from 'node:worker_threads';
import { Pool } from 'undici';
import type { RequestSample, StartMessage, ThreadMessage, ThreadTask } from './messages.js';

/** Samples per message at most; batching keeps message overhead off the hot path. */
const BATCH_SIZE = 256;
/** Longest a finished sample waits before it is posted, so progress stays live on slow targets. */
const FLUSH_INTERVAL_MS = 100;

const port = parentPort;
if (!port) throw new Error('load-thread.ts runs only as a worker thread');
const task = workerData as ThreadTask;
const target = new URL(task.url);
const path = `${target.pathname}${target.search}`;
// One connection per request in flight; timeouts are left to the per-request deadline below.
const pool = new Pool(target.origin, { connections: task.concurrency, headersTimeout: 0, bodyTimeout: 0 });

const post = (message: ThreadMessage): void => port.postMessage(message);
let batch: RequestSample[] = [];
const flush = (): void => {
  if (batch.length === 0) return;
  post({ type: 'samples', samples: batch });
  batch = [];
};

/** The error's kind for counting: its code when it has one (`ECONNREFUSED`, `UND_ERR_SOCKET`), else its name. */
function errorKind(error: unknown): string {
  if (!(error instanceof Error)) return 'UNKNOWN';
  if (error.name === 'TimeoutError') return 'TIMEOUT';
  const code = (error as { code?: unknown }).code;
  return typeof code === 'string' ? code : error.name;
}

async function send(): Promise<RequestSample> {
  const started = performance.now();
  try {
    const { statusCode, headers, body } = await pool.request({
      path,
      method: task.method,
      headers: task.headers,
      body: task.body,
      signal: AbortSignal.timeout(task.timeoutMs),
    });
    // Read the whole answer: latency ends with its last byte, a cut body is an error (dump() would
    // resolve on it), and the connection is reused only once drained.
    await body.arrayBuffer();
    const servedBy = headers['x-served-by'];
    const ended = performance.now();
    return {
      status: statusCode,
      latencyMs: ended - started,
      at: performance.timeOrigin + ended,
      servedBy: typeof servedBy === 'string' ? servedBy : (servedBy?.[0] ?? null),
    };
  } catch (error) {
    const ended = performance.now();
    return { status: null, latencyMs: ended - started, at: performance.timeOrigin + ended, servedBy: null, error: errorKind(error) };
  }
}

let claimed = 0;
async function lane(): Promise<void> {
  while (claimed < task.requests) {
    claimed++;
    // Await before naming `batch`: a flush during the request replaces it.
    const sample = await send();
    batch.push(sample);
    if (batch.length >= BATCH_SIZE) flush();
  }
}

await new Promise<void>((resolve) => {
  port.once('message', (message: StartMessage) => {
    if (message.type === 'start') resolve();
  });
  post({ type: 'ready' });
});
const flusher = setInterval(flush, FLUSH_INTERVAL_MS);
await Promise.all(Array.from({ length: Math.min(task.concurrency, task.requests) }, lane));
clearInterval(flusher);
flush();
post({ type: 'done', requests: claimed });
await pool.close();
