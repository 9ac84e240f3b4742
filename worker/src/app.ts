import { setTimeout as sleep } from 'node:timers/promises';
import { bodyParser } from '@koa/bodyparser';
import Koa from 'koa';
import Router from 'koa-router';
import { z } from 'zod';
import { AppError } from '../../common/src/errors.js';
import { createLogger, type Logger } from '../../common/src/logger.js';
import type { WorkerConfig } from './config.js';
import {
  CrashedError,
  InvalidInputError,
  InvalidJsonError,
  MethodNotAllowedError,
  NotFoundError,
  PayloadTooLargeError,
} from './errors.js';
import { FaultInjector, faultSchema } from './fault-injection.js';
import { listen, type ListeningServer } from './http-server.js';
import { SentimentModel } from './model.js';

/** What the worker needs besides its config; tests pass a fake clock. */
export interface WorkerDeps {
  /** Monotonic clock in ms, for `inference_ms` and `uptimeMs`. @default performance.now */
  now?: () => number;
  /** Where failed requests and the crash are logged. @default a pino logger at `config.logLevel` */
  log?: Logger;
}

/** Longest accepted `text`, in UTF-16 code units (JS string length). */
export const MAX_TEXT_CHARS = 10_000;

const runModelBody = z.object(
  {
    text: z
      .string({ error: (issue) => (issue.input === undefined ? 'field "text" is required' : 'field "text" must be a string') })
      .min(1, 'field "text" must not be empty')
      .max(MAX_TEXT_CHARS, `field "text" must be at most ${MAX_TEXT_CHARS} characters`),
  },
  { error: 'expected a JSON object with a "text" field' },
);

const FAULT_PATH = '/api/v1/_fault';

/** The worker's Koa app: `POST /run_model`, `GET /health`, `GET /`, and the failure-drill routes (`_crash`, `_fault`) when enabled. */
export function createWorkerApp(config: WorkerConfig, model: SentimentModel, deps: WorkerDeps = {}): Koa {
  const now = deps.now ?? (() => performance.now());
  const log = deps.log ?? createLogger('worker', config.logLevel);
  const startedAt = now();
  const stats = { served: 0, inFlight: 0, maxInFlight: 0 };
  let crashed = false;
  const faults = new FaultInjector(now);

  const router = new Router();
  const routes = ['GET /', 'GET /health', 'POST /run_model', ...(config.enableCrashApi ? ['POST /api/v1/_crash', `POST ${FAULT_PATH}`] : [])];

  router.get('/', (ctx) => {
    ctx.body = { name: 'inference-worker', model: model.name, container: config.containerId, routes };
  });

  router.get('/health', (ctx) => {
    ctx.body = {
      status: 'ok',
      container: config.containerId,
      model: model.name,
      ...stats,
      uptimeMs: Math.round(now() - startedAt),
    };
  });

  router.post(
    '/run_model',
    // Counted from arrival, before the body is read, so overlapping requests show up even if one fails validation.
    async (_ctx, next) => {
      stats.inFlight += 1;
      stats.maxInFlight = Math.max(stats.maxInFlight, stats.inFlight);
      try {
        await next();
      } finally {
        stats.inFlight -= 1;
      }
    },
    ...jsonBody(config.maxBodyBytes),
    async (ctx) => {
      const parsed = runModelBody.safeParse(ctx.request.body);
      if (!parsed.success) throw new InvalidInputError(parsed.error.issues[0]!.message);
      const begunAt = now();
      const prediction = model.predict(parsed.data.text);
      if (config.workMs > 0) await sleep(config.workMs);
      const inferenceMs = now() - begunAt;
      stats.served += 1;
      ctx.body = { prediction, model: model.name, container: config.containerId, inference_ms: Math.round(inferenceMs * 1000) / 1000 };
    },
  );

  if (config.enableCrashApi) {
    router.post('/api/v1/_crash', (ctx) => {
      crashed = true;
      log.warn({ container: config.containerId }, 'crashed on request; every route now answers 500');
      ctx.body = { status: 'crashed' };
    });
    router.post(FAULT_PATH, ...jsonBody(config.maxBodyBytes), (ctx) => {
      const parsed = faultSchema.safeParse(ctx.request.body);
      if (!parsed.success) throw new InvalidInputError(parsed.error.issues[0]!.message);
      faults.set(parsed.data);
      log.warn({ container: config.containerId, fault: parsed.data }, 'fault injected on request');
      ctx.body = { fault: parsed.data };
    });
  }

  const app = new Koa();
  app.use(errorMiddleware(log));
  app.use(async (_ctx, next) => {
    if (crashed) throw new CrashedError();
    await next();
  });
  if (config.enableCrashApi) app.use(faults.middleware(FAULT_PATH));
  // The router leaves unmatched requests without a body (404, or 405 with an Allow header); give them JSON errors.
  app.use(async (ctx, next) => {
    await next();
    if (ctx.body !== undefined) return;
    throw ctx.status === 405 ? new MethodNotAllowedError(ctx.method, ctx.path) : new NotFoundError(`no route for ${ctx.method} ${ctx.path}`);
  });
  app.use(router.routes());
  app.use(router.allowedMethods());
  return app;
}

/** Requires a JSON body of at most `limitBytes` and parses it into `ctx.request.body`. */
function jsonBody(limitBytes: number): [Koa.Middleware, Koa.Middleware] {
  return [
    async (ctx, next) => {
      if (!ctx.is('application/json', '+json')) throw new InvalidInputError('expected a JSON body with Content-Type: application/json');
      await next();
    },
    bodyParser({
      enableTypes: ['json'],
      jsonLimit: limitBytes,
      onError: (error) => {
        throw toBodyError(error, limitBytes);
      },
    }),
  ];
}

/** Map body-reading failures from co-body/raw-body onto the worker's typed errors. */
function toBodyError(error: Error, limitBytes: number): AppError {
  const type = (error as { type?: unknown }).type;
  if (type === 'entity.too.large') return new PayloadTooLargeError(limitBytes, error);
  if (error instanceof SyntaxError) return new InvalidJsonError(`request body is not valid JSON: ${error.message}`, error);
  return new InvalidInputError(`cannot read request body: ${error.message}`);
}

/** The one error path: typed errors become their status and `{error, message}`; anything else is a logged 500. */
function errorMiddleware(log: Logger): Koa.Middleware {
  return async (ctx, next) => {
    try {
      await next();
    } catch (error) {
      const known = error instanceof AppError;
      ctx.status = known ? error.status : 500;
      ctx.body = {
        error: known ? error.code : 'INTERNAL',
        message: known && error.expose ? error.message : 'internal error',
      };
      if (!known) log.error({ err: error, method: ctx.method, path: ctx.path }, 'request failed');
    }
  };
}

/** Start the worker on `config.host:config.port` with the VADER model unless deps say otherwise. */
export function startWorker(config: WorkerConfig, deps: WorkerDeps & { model?: SentimentModel } = {}): Promise<ListeningServer> {
  const app = createWorkerApp(config, deps.model ?? new SentimentModel(), deps);
  return listen(app.callback(), config.port, config.host);
}
