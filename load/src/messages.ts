/** HTTP methods the load script sends; GET and HEAD go without a body. */
export const httpMethods = ['GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'HEAD'] as const;
export type HttpMethod = (typeof httpMethods)[number];

/** One load thread's share of the run, given as its `workerData`. */
export interface ThreadTask {
  /** Thread number, from 0. */
  index: number;
  url: string;
  method: HttpMethod;
  headers: Record<string, string>;
  /** Request body, or null to send none. */
  body: string | null;
  /** Requests this thread sends, exactly. */
  requests: number;
  /** Requests this thread keeps in flight at most (and keep-alive connections it opens). */
  concurrency: number;
  /** Deadline of one request, from sending to the end of the answer, in ms. */
  timeoutMs: number;
}

/** The outcome of one request. */
export interface RequestSample {
  /** HTTP status, or null when no answer arrived (see `error`). */
  status: number | null;
  /** From sending the request to the end of the answer's body (or the failure), in ms. */
  latencyMs: number;
  /** When it finished, in epoch ms (threads share this clock; their performance.now() origins differ). */
  at: number;
  /** The `x-served-by` response header: the container that served it; null when absent. */
  servedBy: string | null;
  /** Network error kind (`ECONNREFUSED`, `TIMEOUT`, `UND_ERR_SOCKET`...), when no answer arrived. */
  error?: string;
}

/** Main thread -> load thread: every thread is ready, send now (so thread start-up is not measured). */
export interface StartMessage {
  type: 'start';
}

/** Load thread -> main thread. */
export type ThreadMessage =
  /** Set up and waiting for `start`. */
  | { type: 'ready' }
  /** Outcomes of requests finished since the last batch. */
  | { type: 'samples'; samples: RequestSample[] }
  /** All of its requests finished; `requests` is how many it sent. Sent after the last batch. */
  | { type: 'done'; requests: number };
