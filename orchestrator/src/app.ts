import Koa from 'koa';
import Router from 'koa-router';
import { AppError } from '../../common/src/errors.js';
import type { Logger } from '../../common/src/logger.js';
import { MethodNotAllowedError, NotFoundError } from '../../common/src/http-errors.js';
import { REQUEST_ID_HEADER, SERVED_BY_HEADER, type ProxyHandler } from './proxy-handler.js';
import type { StateFile } from '../../status/src/schema.js';

/** Paths the orchestrator answers itself; they are never forwarded to containers. */
export const RESERVED_PATHS = ['/new_request', '/status', '/health', '/metrics', '/dashboard'] as const;
/** Path prefix reserved for administration. */
export const RESERVED_PREFIX = '/admin/';

export interface AppDeps {
  proxy: ProxyHandler;
  status: () => StateFile;
  /** Own health: whether requests can be served now. */
  health: () => { ok: boolean; detail: Record<string, unknown> };
  log: Logger;
  /** Seconds a client is told to wait after a 503. */
  retryAfterSeconds: number;
  /** Log one line per request (method, path, status, duration, container). */
  accessLog: boolean;
}

const REQUEST_ID = /^[\w.:-]{1,128}$/;

/** The orchestrator's HTTP edge: one error path, reserved routes, then forwarding of everything else. */
export function createApp(deps: AppDeps): Koa {
  const app = new Koa();
  const bootId = Date.now().toString(36);
  let sequence = 0;

  if (deps.accessLog) {
    app.use(async (ctx, next) => {
      const started = performance.now();
      ctx.res.once('close', () => {
        deps.log.info(
          {
            requestId: ctx.state.requestId,
            method: ctx.method,
            path: ctx.path,
            status: ctx.res.statusCode,
            ms: Math.round((performance.now() - started) * 10) / 10,
            container: ctx.res.getHeader(SERVED_BY_HEADER),
            completed: ctx.res.writableFinished,
          },
          'request',
        );
      });
      await next();
    });
  }

  app.use(async (ctx, next) => {
    const given = ctx.get(REQUEST_ID_HEADER);
    ctx.state.requestId = REQUEST_ID.test(given) ? given : `${bootId}-${++sequence}`;
    try {
      await next();
    } catch (error) {
      if (ctx.respond === false) return;
      const known = error instanceof AppError ? error : undefined;
      ctx.status = known?.status ?? 500;
      ctx.set(REQUEST_ID_HEADER, ctx.state.requestId as string);
      if (ctx.status === 503) ctx.set('Retry-After', String(deps.retryAfterSeconds));
      ctx.body = {
        error: known?.code ?? 'INTERNAL',
        message: known?.expose ? known.message : 'internal error',
        requestId: ctx.state.requestId,
      };
      if (!known?.expose) deps.log.error({ err: error, requestId: ctx.state.requestId, path: ctx.path }, 'request failed');
    }
  });

  const router = new Router();
  router.post('/new_request', (ctx) => deps.proxy.forward(ctx, 'POST', `/run_model${ctx.search}`, ctx.state.requestId as string));
  router.get('/status', (ctx) => {
    ctx.set('Cache-Control', 'no-store');
    ctx.body = deps.status();
  });
  router.get('/health', (ctx) => {
    const { ok, detail } = deps.health();
    ctx.status = ok ? 200 : 503;
    ctx.body = { status: ok ? 'ok' : 'unavailable', ...detail };
  });
  app.use(router.routes());

  app.use(async (ctx) => {
    const allowed = router.stack.filter((layer) => layer.path === ctx.path).flatMap((layer) => layer.methods);
    if (allowed.length > 0) {
      ctx.set('Allow', allowed.join(', '));
      throw new MethodNotAllowedError(ctx.method, ctx.path);
    }
    if ((RESERVED_PATHS as readonly string[]).includes(ctx.path) || ctx.path.startsWith(RESERVED_PREFIX)) {
      throw new NotFoundError(`${ctx.method} ${ctx.path} is reserved by the orchestrator and not available`);
    }
    await deps.proxy.forward(ctx, ctx.method, ctx.url, ctx.state.requestId as string);
  });
  return app;
}
