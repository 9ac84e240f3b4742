import { createHash, timingSafeEqual } from 'node:crypto';
import Koa, { type Context } from 'koa';
import Router from 'koa-router';
import { AppError } from '../../common/src/errors.js';
import type { Logger } from '../../common/src/logger.js';
import { MethodNotAllowedError, NotFoundError, PayloadTooLargeError } from '../../common/src/http-errors.js';
import { REQUEST_ID_HEADER, type ProxyHandler } from './proxy-handler.js';
import type { ScalingDecision, StateFile } from '../../status/src/schema.js';
import { AdminDisabledError, BadRequestError, UnauthorizedError } from './errors.js';

/** What the admin API can do; each call throws typed errors (404 unknown container, 409 conflict). */
export interface AdminActions {
  /** Bearer token; undefined turns the admin API off. */
  token: string | undefined;
  /** Decide and start scaling (containers start or drain in the background). */
  scaleTo(containers: number): ScalingDecision;
  drain(containerId: string): void;
  remove(containerId: string): Promise<void>;
  setPaused(paused: boolean): void;
}

/** Paths the orchestrator answers itself; they are never forwarded to containers. */
export const RESERVED_PATHS = ['/new_request', '/status', '/health', '/metrics', '/dashboard'] as const;
/** Path prefix reserved for administration. */
export const RESERVED_PREFIX = '/admin/';

export interface AppDeps {
  proxy: ProxyHandler;
  status: () => StateFile;
  admin: AdminActions;
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
            container: ctx.state.servedBy,
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
  app.use(adminRouter(deps.admin).routes());

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

/** Largest admin request body, in bytes. */
const ADMIN_BODY_LIMIT = 16 * 1024;

/** /admin/...: off without a token, 401 without the right one; the token is compared in constant time. */
function adminRouter(admin: AdminActions): Router {
  const router = new Router({ prefix: '/admin' });
  const expected = admin.token === undefined ? undefined : digest(admin.token);
  router.use(async (ctx, next) => {
    if (!expected) throw new AdminDisabledError();
    const given = /^Bearer (.+)$/.exec(ctx.get('authorization'))?.[1];
    if (!given || !timingSafeEqual(digest(given), expected)) {
      ctx.set('WWW-Authenticate', 'Bearer realm="admin"');
      throw new UnauthorizedError();
    }
    await next();
  });
  router.post('/scale', async (ctx) => {
    const body = await readJson(ctx);
    const containers = (body as { containers?: unknown } | null)?.containers;
    if (!Number.isInteger(containers) || (containers as number) < 0) {
      throw new BadRequestError('expected a JSON body {"containers": N} with N a whole number >= 0');
    }
    ctx.status = 202;
    ctx.body = { decision: admin.scaleTo(containers as number) };
  });
  router.post('/containers/:id/drain', (ctx) => {
    admin.drain(ctx.params.id!);
    ctx.status = 202;
    ctx.body = { container: ctx.params.id, draining: true };
  });
  router.delete('/containers/:id', async (ctx) => {
    await admin.remove(ctx.params.id!);
    ctx.body = { container: ctx.params.id, removed: true };
  });
  router.post('/autoscaler/pause', (ctx) => {
    admin.setPaused(true);
    ctx.body = { paused: true };
  });
  router.post('/autoscaler/resume', (ctx) => {
    admin.setPaused(false);
    ctx.body = { paused: false };
  });
  return router;
}

const digest = (value: string): Buffer => createHash('sha256').update(value).digest();

/** The request body as JSON (null when empty); 400 on bad JSON, 413 past ADMIN_BODY_LIMIT. */
async function readJson(ctx: Context): Promise<unknown> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of ctx.req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > ADMIN_BODY_LIMIT) throw new PayloadTooLargeError(ADMIN_BODY_LIMIT);
    chunks.push(chunk);
  }
  if (size === 0) return null;
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8'));
  } catch {
    throw new BadRequestError('the body is not valid JSON');
  }
}
