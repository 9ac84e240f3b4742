import { timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { IncomingMessage, RequestListener } from 'node:http';
import Koa, { type Context } from 'koa';
import Router from 'koa-router';
import { REPO_ROOT } from '../../common/src/paths.js';
import type { AppError } from '../../common/src/errors.js';
import type { Logger } from '../../common/src/logger.js';
import { MethodNotAllowedError, NotFoundError, PayloadTooLargeError, UnsupportedMediaTypeError } from '../../common/src/http-errors.js';
import type { FinishedExchange } from './access-log.js';
import { sha256, type AccessControl } from './access-control.js';
import type { KeyScope } from './config.js';
import { statusSentOn } from './client-errors.js';
import { createErrorResponder, type ErrorResponder } from './error-responder.js';
import { PREDICT_ROUTE, REQUEST_ID_HEADER, type Exchange, type ProxyHandler, type UpstreamTarget } from './proxy-handler.js';
import type { ScalingDecision, StateFile, WorkerRecord } from '../../status/src/schema.js';
import type { DashboardFeed } from './dashboard-feed.js';
import type { OrchestratorMetrics } from './metrics.js';
import type { RejectionLog } from './rejection-log.js';
import { AdminDisabledError, BadRequestError, UnauthorizedError } from './errors.js';
import { ADMIN_PATH, parseTarget, type RequestTarget, type TargetKind } from './request-target.js';

/** What the admin API can do; each call throws typed errors (404 unknown container, 409 conflict). */
export interface AdminActions {
  /** Bearer token; undefined turns the admin API off. */
  token: string | undefined;
  /** Decide and start scaling (containers start or drain in the background). */
  scaleTo(containers: number): ScalingDecision;
  drain(containerId: string): void;
  remove(containerId: string): Promise<void>;
  setPaused(paused: boolean): void;
  /**
   * Launch worker `id` (else the lowest free `w<k>`) with the orchestrator's worker provider; resolves
   * once its containers are in rotation (a launch can take minutes on EC2).
   */
  addWorker(id: string | undefined, reason: string): Promise<WorkerRecord>;
  /** Drain worker `id` (its requests finish, none new go there), then release it; resolves with its containers once released. */
  removeWorker(id: string, reason: string): Promise<{ worker: string; containers: string[] }>;
}

export interface AppDeps {
  proxy: ProxyHandler;
  status: () => StateFile;
  /** The Prometheus exposition. */
  metrics: () => Promise<{ contentType: string; body: string }>;
  /** The live dashboard's event stream. */
  dashboard: Pick<DashboardFeed, 'subscribe'>;
  admin: AdminActions;
  /** Client keys: who may call which route, and how often. */
  access: Pick<AccessControl, 'guards' | 'authenticate' | 'admit'>;
  /** Where inference requests the key check refused are counted, by key name (the proxy counts the rest). */
  clientCounts: Pick<OrchestratorMetrics, 'clientRequest'>;
  /** Own health: whether requests can be served now. */
  healthy: () => boolean;
  log: Logger;
  /** Where expected rejections (4xx and 503/504 answers) are logged, rate-limited. */
  rejections: Pick<RejectionLog, 'record'>;
  /** Seconds a client is told to wait after a 503. */
  retryAfterSeconds: number;
  /** Told of every exchange once its connection is done with it, whichever path served it (the access log). */
  onFinished?: (exchange: FinishedExchange) => void;
  /** Shutting down: every answer then closes its connection, so keep-alive clients leave instead of racing the close. */
  closing: () => boolean;
}

const REQUEST_ID = /^[\w.:-]{1,128}$/;

/**
 * What a 401 asks for. A read route also offers Basic, so a browser asks for the key (as the
 * password) and then sends it with the dashboard and its event stream.
 */
const CHALLENGES: Record<KeyScope, string[]> = {
  infer: ['Bearer realm="orchestrator"'],
  read: ['Bearer realm="orchestrator"', 'Basic realm="orchestrator", charset="UTF-8"'],
};

/** The dashboard: one self-contained page (its script draws the charts; no front-end build). */
const DASHBOARD_PAGE = readFileSync(join(REPO_ROOT, 'orchestrator/dashboard/index.html'), 'utf8');

/** One exchange at the edge: the proxy's, plus its id, its path and when it arrived. */
interface EdgeExchange extends Exchange {
  requestId: string;
  /** The path as the client sent it, without the query. */
  path: string;
  startedAt: number;
  /** The target as read once at the edge, for what Koa serves. */
  target?: OwnTarget;
}

/** A target the orchestrator answers itself (Koa never sees a forwarded one). */
type OwnTarget = RequestTarget & { kind: Exclude<TargetKind, 'forward'> };

/** The edge exchange of each request, for Koa's middleware (Koa builds its context from req and res only). */
const exchanges = new WeakMap<IncomingMessage, EdgeExchange>();

const pathOf = (url: string): string => {
  const q = url.indexOf('?');
  return q === -1 ? url : url.slice(0, q);
};

/**
 * What is wrong with the request's Host headers, if anything: HTTP/1.1 needs exactly one (RFC 9112
 * section 3.2). Node keeps the first of several and drops the rest; a proxy in front may have read another.
 */
function hostProblem(req: IncomingMessage): string | undefined {
  let hosts = 0;
  const raw = req.rawHeaders;
  for (let i = 0; i < raw.length; i += 2) if (raw[i]!.length === 4 && raw[i]!.toLowerCase() === 'host') hosts++;
  if (hosts > 1) return 'the request has more than one Host header';
  if (hosts === 0 && req.httpVersionMajor === 1 && req.httpVersionMinor >= 1) return 'an HTTP/1.1 request needs a Host header';
  return undefined;
}

/**
 * The key a route needs when that scope is guarded: `infer` for the model (`/new_request`, every
 * forwarded path and containers' control routes), `read` for what shows the cluster. /health
 * stays open for load balancers; /admin has its own token.
 */
function scopeOf(target: RequestTarget): KeyScope | undefined {
  switch (target.kind) {
    case 'forward':
    case 'container-control':
      return 'infer';
    case 'admin':
      return undefined;
    case 'orchestrator': {
      const path = target.path.toLowerCase();
      return path === '/health' ? undefined : path === PREDICT_ROUTE ? 'infer' : 'read';
    }
  }
}

/**
 * The request's Authorization header when it has exactly one. Node keeps the first of several and
 * drops the rest; a proxy in front may have read another, so several count as none.
 */
function soleAuthorization(req: IncomingMessage): string | undefined {
  let count = 0;
  const raw = req.rawHeaders;
  for (let i = 0; i < raw.length; i += 2) if (raw[i]!.length === 13 && raw[i]!.toLowerCase() === 'authorization') count++;
  return count === 1 ? req.headers.authorization : undefined;
}

/**
 * The orchestrator's request listener. The target is read once (see parseTarget); every request
 * that is forwarded to a container (`POST /new_request` in any spelling, and every path that is
 * not the orchestrator's) goes straight to the proxy: one forwarding path, without Koa's
 * per-request context (it cost about a quarter of the orchestrator's CPU per forwarded request).
 * The orchestrator's own routes and the admin API go through Koa. Both answer errors with the one
 * error responder, and both tell `onFinished` of each exchange. When client keys are configured,
 * the key is checked (and an inference request counted against its rate) before anything else
 * answers: no route, method, body or refusal shows to a caller without one.
 */
export function createRequestListener(deps: AppDeps): RequestListener {
  const bootId = Date.now().toString(36);
  let sequence = 0;
  const requestIdOf = (given: string | string[] | undefined): string =>
    typeof given === 'string' && REQUEST_ID.test(given) ? given : `${bootId}-${++sequence}`;
  const respondError = createErrorResponder(deps);
  const koa = createApp(deps, respondError).callback();
  const { onFinished, access } = deps;
  const isAdmin = bearerMatch(deps.admin.token);
  return (req, res) => {
    const url = req.url ?? '';
    const exchange: EdgeExchange = { req, res, requestId: requestIdOf(req.headers[REQUEST_ID_HEADER]), path: pathOf(url) || '-', startedAt: performance.now() };
    if (onFinished) res.once('close', () => onFinished(finishedOf(exchange)));
    if (deps.closing()) res.setHeader('connection', 'close');
    const problem = hostProblem(req);
    if (problem) {
      respondError(exchange, new BadRequestError(problem), true);
      return;
    }
    let target: RequestTarget;
    try {
      target = parseTarget(url);
    } catch (error) {
      respondError(exchange, error);
      return;
    }
    const scope = scopeOf(target);
    if (scope !== undefined && access.guards(scope)) {
      try {
        const authorization = soleAuthorization(req);
        // The admin token reads too: provisioning's handover reads /status with it.
        if (scope === 'infer' || !isAdmin(authorization)) {
          exchange.client = access.authenticate(authorization, scope);
          if (scope === 'infer') access.admit(exchange.client);
        }
      } catch (error) {
        const status = (error as AppError).status;
        if (status === 401) res.setHeader('www-authenticate', CHALLENGES[scope]);
        if (scope === 'infer') deps.clientCounts.clientRequest(exchange.client, status);
        respondError(exchange, error);
        return;
      }
    }
    // A path that is not the orchestrator's goes to the container as sent; a predict request to each container's own predict path.
    if (target.kind === 'forward') void forward(deps.proxy, respondError, exchange, url);
    else if (target.kind === 'orchestrator' && req.method === 'POST' && target.path.toLowerCase() === PREDICT_ROUTE) {
      void forward(deps.proxy, respondError, exchange, { predictQuery: target.search });
    } else {
      exchange.target = target as OwnTarget;
      exchanges.set(req, exchange);
      void koa(req, res);
    }
  };
}

function finishedOf(exchange: EdgeExchange): FinishedExchange {
  const { req, res } = exchange;
  return {
    requestId: exchange.requestId,
    method: req.method ?? '-',
    path: exchange.path,
    // The server itself may have answered on the socket (408 for a body too slow, 400 for broken framing).
    status: statusSentOn(req.socket) ?? res.statusCode,
    ms: Math.round((performance.now() - exchange.startedAt) * 10) / 10,
    container: exchange.servedBy,
    client: exchange.client,
    completed: res.writableFinished,
  };
}

async function forward(proxy: ProxyHandler, respondError: ErrorResponder, exchange: EdgeExchange, target: UpstreamTarget): Promise<void> {
  try {
    await proxy.forward(exchange, exchange.req.method!, target, exchange.requestId);
  } catch (error) {
    respondError(exchange, error);
  }
}

/**
 * The Koa application for what is not forwarded: one error path; then, on the target the listener
 * read, the orchestrator's routes, the admin API behind its token, or a refusal for containers'
 * control routes.
 */
function createApp(deps: AppDeps, respondError: ErrorResponder): Koa {
  const app = new Koa();
  // Koa reports here what escapes every middleware: the socket under a response still open failed
  // (a client that cut a dashboard stream). The stream's owner logs a client gone, rate-limited;
  // anything else is one JSON line. Koa's default would print a raw stack on stderr.
  app.on('error', (error: NodeJS.ErrnoException, ctx?: Context) => {
    if (!/^(ECONNRESET|EPIPE|ECONNABORTED)$/.test(error.code ?? '')) deps.log.error({ err: error, requestId: ctx?.state.requestId, path: ctx?.path }, 'request failed');
  });

  app.use(async (ctx, next) => {
    const exchange = exchanges.get(ctx.req)!;
    ctx.state.exchange = exchange;
    ctx.state.requestId = exchange.requestId;
    try {
      await next();
    } catch (error) {
      ctx.respond = false;
      respondError(exchange, error);
    }
  });

  const own = withMethodCheck(orchestratorRouter(deps));
  const admin = withMethodCheck(adminRouter(deps.admin));
  const adminAuth = adminGate(deps.admin.token);
  app.use(async (ctx) => {
    const target = (ctx.state.exchange as EdgeExchange).target!;
    switch (target.kind) {
      case 'container-control':
        throw new NotFoundError(`${target.path} is a container's control route; the orchestrator does not forward it`);
      case 'orchestrator':
        // Its routes have no parameters: route on the one spelling they are registered under.
        ctx.path = target.path.toLowerCase();
        return own(ctx);
      case 'admin':
        adminAuth(ctx);
        ctx.path = target.path;
        return admin(ctx);
    }
  });
  return app;
}

/** The orchestrator's own routes. */
function orchestratorRouter(deps: AppDeps): Router {
  const router = new Router();
  // A POST was forwarded before Koa; any other method is answered here.
  router.all(PREDICT_ROUTE, (ctx) => {
    ctx.set('Allow', 'POST');
    throw new MethodNotAllowedError(ctx.method, ctx.path);
  });
  router.get('/status', (ctx) => {
    ctx.set('Cache-Control', 'no-store');
    ctx.body = deps.status();
  });
  router.get('/metrics', async (ctx) => {
    const { contentType, body } = await deps.metrics();
    ctx.set('Cache-Control', 'no-store');
    ctx.type = contentType;
    ctx.body = body;
  });
  router.get('/dashboard', (ctx) => {
    ctx.set('Cache-Control', 'no-cache');
    ctx.type = 'text/html; charset=utf-8';
    ctx.body = DASHBOARD_PAGE;
  });
  router.get('/dashboard/events', (ctx) => {
    // subscribe throws (TOO_MANY_VIEWERS) before writing anything, so the error path can still answer.
    deps.dashboard.subscribe(ctx.res);
    ctx.respond = false;
  });
  router.get('/health', (ctx) => {
    const ok = deps.healthy();
    ctx.status = ok ? 200 : 503;
    ctx.body = { status: ok ? 'ok' : 'unavailable' };
  });
  return router;
}

/** Run `router` on ctx.path: 404 for a path it does not have, 405 (with Allow) for a method it does not take there. */
function withMethodCheck(router: Router): (ctx: Context) => Promise<void> {
  const dispatch = router.routes();
  return async (ctx) => {
    const matched = router.match(ctx.path, ctx.method);
    if (!matched.route) {
      const allowed = [...new Set(matched.path.flatMap((layer) => layer.methods))];
      if (allowed.length === 0) throw new NotFoundError(`${ctx.method} ${ctx.path} is reserved by the orchestrator and not available`);
      ctx.set('Allow', allowed.join(', '));
      throw new MethodNotAllowedError(ctx.method, ctx.path);
    }
    await dispatch(ctx as Parameters<typeof dispatch>[0], async () => {});
  };
}

/**
 * Every /admin path, known or not, first: 403 when the admin API is off, 401 without the right
 * bearer token (compared in constant time), 415 for a body that is not JSON. A page the operator
 * opens can send a `text/plain` POST without asking; it cannot add the Authorization header or a
 * JSON content type without a preflight this server never grants.
 */
function adminGate(token: string | undefined): (ctx: Context) => void {
  const matches = bearerMatch(token);
  return (ctx) => {
    if (token === undefined) throw new AdminDisabledError();
    if (!matches(ctx.get('authorization'))) {
      ctx.set('WWW-Authenticate', 'Bearer realm="admin"');
      throw new UnauthorizedError();
    }
    const hasBody = Number(ctx.get('content-length') || 0) > 0 || ctx.get('transfer-encoding') !== '';
    if (hasBody && !ctx.is('application/json')) throw new UnsupportedMediaTypeError('application/json');
  };
}

/** A worker id as provisioning names workers: w1, w2, ... */
const WORKER_ID = /^w[1-9][0-9]{0,3}$/;

/** Largest admin request body, in bytes. */
const ADMIN_BODY_LIMIT = 16 * 1024;

/** /admin/...: each route; adminGate has let the request in. */
function adminRouter(admin: AdminActions): Router {
  const router = new Router({ prefix: ADMIN_PATH });
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
  router.post('/workers', async (ctx) => {
    const body = await readJson(ctx);
    const id = body === null ? undefined : (body as { id?: unknown }).id;
    if ((body !== null && (typeof body !== 'object' || Array.isArray(body))) || (id !== undefined && (typeof id !== 'string' || !WORKER_ID.test(id)))) {
      throw new BadRequestError('expected no body, or a JSON body {"id": "w<k>"} with k from 1 to 9999');
    }
    ctx.status = 201;
    ctx.body = { worker: await admin.addWorker(id as string | undefined, 'admin request') };
  });
  router.delete('/workers/:id', async (ctx) => {
    ctx.body = await admin.removeWorker(ctx.params.id!, 'admin request');
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

/** Whether an Authorization value is `Bearer <token>` (compared in constant time); never, without a token. */
function bearerMatch(token: string | undefined): (authorization: string | undefined) => boolean {
  const expected = token === undefined ? undefined : sha256(token);
  return (authorization) => {
    // The scheme name is case-insensitive (RFC 9110 section 11.1).
    const given = authorization === undefined ? undefined : /^Bearer (.+)$/i.exec(authorization)?.[1];
    return expected !== undefined && given !== undefined && timingSafeEqual(sha256(given), expected);
  };
}

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
