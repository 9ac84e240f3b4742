import type { Logger } from '../../common/src/logger.js';

/** One exchange as it ended: what the access log writes. */
export interface FinishedExchange {
  requestId: string;
  method: string;
  /** The path as the client sent it, without the query. */
  path: string;
  /** The status sent; the one set so far when the connection closed first. */
  status: number;
  /** From the request's arrival to the connection's 'close' of its response, in ms (one decimal). */
  ms: number;
  /** The container that answered, if one did. */
  container: string | undefined;
  /** The name of the client key the request came with (keys configured); never the key. */
  client: string | undefined;
  /** Whether the whole answer was handed to the connection. */
  completed: boolean;
}

/** The access log: one info line `request` per finished exchange. */
export const accessLog =
  (log: Logger) =>
  (exchange: FinishedExchange): void =>
    log.info(exchange, 'request');
