import { Agent, request } from 'undici';

/**
 * Every request of a load, judged from the client side. Only `model` counts as served: every other
 * answer, documented error or not, is a request the model did not answer.
 */
export interface ClientOutcomes {
  sent: number;
  /**
   * The model's answers: a 2xx passed on from a container, so carrying `x-served-by`, whose JSON
   * body holds a prediction made by that same container.
   */
  model: number;
  /** JSON errors `{error, message}` with a 4xx or 5xx status (the orchestrator's own, or a container's), by `error` code. */
  errors: Record<string, number>;
  /** Any other answer (no JSON error shape, a 2xx without a prediction or without the container that made it), by status. */
  unexpected: Record<string, number>;
  /** Requests with no answer, by error code: the client gave up (`TIMEOUT`) or the connection failed. */
  unanswered: Record<string, number>;
  servedBy: Record<string, number>;
}

export interface ClientLoad {
  /** Stop sending, wait for the requests in flight, and return what happened to each one. Idempotent. */
  stop(): Promise<ClientOutcomes>;
  /** The outcomes so far. */
  readonly outcomes: ClientOutcomes;
}

const bump = (counts: Record<string, number>, key: string): void => {
  counts[key] = (counts[key] ?? 0) + 1;
};

/**
 * Closed-loop load at `concurrency` (each lane sends its next request when its last one ended)
 * from this process, until stopped. Unlike the load tool, it reads every answer and sorts it:
 * the model's answer, a JSON error, any other answer, or nothing at all, which is what a fault drill counts.
 */
export function startClientLoad(url: string, options: { concurrency: number; timeoutMs: number; body?: string }): ClientLoad {
  const outcomes: ClientOutcomes = { sent: 0, model: 0, errors: {}, unexpected: {}, unanswered: {}, servedBy: {} };
  const dispatcher = new Agent({ connections: options.concurrency, headersTimeout: options.timeoutMs, bodyTimeout: options.timeoutMs });
  const body = options.body ?? '{"text":"steady as she goes"}';
  let running = true;

  const one = async (): Promise<void> => {
    outcomes.sent++;
    try {
      const response = await request(url, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body,
        dispatcher,
        signal: AbortSignal.timeout(options.timeoutMs),
      });
      const text = await response.body.text();
      const parsed = parseJson(text);
      const servedBy = response.headers['x-served-by'];
      if (typeof servedBy === 'string') bump(outcomes.servedBy, servedBy);
      if (isModelAnswer(response.statusCode, servedBy, parsed)) outcomes.model++;
      else if (response.statusCode >= 400 && typeof parsed?.error === 'string' && typeof parsed.message === 'string') bump(outcomes.errors, parsed.error);
      else bump(outcomes.unexpected, String(response.statusCode));
    } catch (error) {
      const e = error as { name?: string; code?: string };
      bump(outcomes.unanswered, e.name === 'TimeoutError' || e.code === 'UND_ERR_HEADERS_TIMEOUT' || e.code === 'UND_ERR_BODY_TIMEOUT' ? 'TIMEOUT' : (e.code ?? e.name ?? 'unknown'));
    }
  };
  const lanes = Array.from({ length: options.concurrency }, async () => {
    while (running) await one();
  });
  let stopped: Promise<ClientOutcomes> | undefined;
  return {
    outcomes,
    stop() {
      stopped ??= (async () => {
        running = false;
        await Promise.all(lanes);
        await dispatcher.close();
        return outcomes;
      })();
      return stopped;
    },
  };
}

/** The worker's /run_model answer (worker/src/app.ts) as the orchestrator passes it on: the container that made it is the one that served it. */
function isModelAnswer(status: number, servedBy: string | string[] | undefined, body: Record<string, unknown> | null): boolean {
  return status >= 200 && status < 300 && typeof servedBy === 'string' && body?.prediction !== undefined && body.container === servedBy;
}

function parseJson(text: string): Record<string, unknown> | null {
  try {
    const value: unknown = JSON.parse(text);
    return typeof value === 'object' && value !== null ? (value as Record<string, unknown>) : null;
  } catch {
    return null;
  }
}
