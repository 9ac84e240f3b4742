import type { IncomingMessage, ServerResponse } from 'node:http';
import { AppError } from '../../common/src/errors.js';
import type { Logger } from '../../common/src/logger.js';
import { ClientGoneError } from './errors.js';
import { REQUEST_ID_HEADER } from './proxy-handler.js';
import type { RejectionLog } from './rejection-log.js';

export interface ErrorResponderDeps {
  log: Logger;
  /** Where expected rejections (4xx and 503/504 answers) are logged, rate-limited. */
  rejections: Pick<RejectionLog, 'record'>;
  /** Seconds a client is told to wait after a 503 (or a 429 whose error does not say). */
  retryAfterSeconds: number;
}

/** The request an error answers: its id and path (for the answer and the log). */
export interface Failed {
  req: IncomingMessage;
  res: ServerResponse;
  requestId: string;
  path: string;
  /** The client key's name, once the key was checked. */
  client?: string;
}

/** Answers `error` for `failed`; `close` forces the connection closed (its framing is in doubt). */
export type ErrorResponder = (failed: Failed, error: unknown, close?: boolean) => void;

/**
 * The edge's one error path, for the direct `/new_request` path and Koa's error middleware alike:
 * a JSON answer `{error, message, requestId}` with the error's status (500 for unexpected errors,
 * whose message is never shown), Retry-After on a 429 and a 503, and a log line (unexpected errors in full,
 * expected ones through the rate-limited rejection log). A response already started, or whose
 * client left, is cut instead: nothing else can be said on it.
 */
export function createErrorResponder(deps: ErrorResponderDeps): ErrorResponder {
  return ({ req, res, requestId, path, client }, error, close = false) => {
    if (error instanceof ClientGoneError || res.headersSent || res.destroyed) {
      if (!res.writableFinished) res.destroy();
      return;
    }
    const known = error instanceof AppError ? error : undefined;
    const status = known?.status ?? 500;
    const code = known?.code ?? 'INTERNAL';
    if (!known?.expose) deps.log.error({ err: error, requestId, path }, 'request failed');
    else deps.rejections.record({ requestId, path, status, error: code, client });
    const body = JSON.stringify({ error: code, message: known?.expose ? known.message : 'internal error', requestId });
    const headers: Record<string, string | number> = {
      [REQUEST_ID_HEADER]: requestId,
      'content-type': 'application/json; charset=utf-8',
      'content-length': Buffer.byteLength(body),
    };
    // A 429 says when this client may send again; a 503, when the cluster may have room.
    if (status === 429 || status === 503) headers['retry-after'] = String(known?.retryAfterSeconds ?? deps.retryAfterSeconds);
    // Whatever is left of an unread body (a 413, a refusal before reading) must not be taken for the next request.
    if (close || !req.complete) headers.connection = 'close';
    res.writeHead(status, headers).end(body);
  };
}
