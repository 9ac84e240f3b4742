import { once } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import type Koa from 'koa';
import { z } from 'zod';

/**
 * A fault the worker plays on purpose, for failure drills:
 * - `hang`: `/run_model` accepts requests and never answers them, while `/health` still does
 *   (a deadlocked model behind a live web server, the case health probes cannot see);
 * - `slow`: every route answers `delayMs` late (an overloaded or throttled machine);
 * - `off`: back to normal.
 * A fault lasts `forMs`, or until the next one when absent.
 */
export const faultSchema = z.discriminatedUnion(
  'mode',
  [
    z.object({ mode: z.literal('hang'), forMs: z.number().int().min(1).optional() }),
    z.object({ mode: z.literal('slow'), delayMs: z.number().int().min(1).max(600_000), forMs: z.number().int().min(1).optional() }),
    z.object({ mode: z.literal('off') }),
  ],
  { error: 'expected {"mode": "hang" | "slow" | "off", "delayMs"?: ms, "forMs"?: ms}' },
);
export type Fault = z.infer<typeof faultSchema>;

/** The fault in force, and the middleware that plays it. */
export class FaultInjector {
  #fault: Fault = { mode: 'off' };
  #until = Infinity;
  readonly #now: () => number;

  constructor(now: () => number) {
    this.#now = now;
  }

  set(fault: Fault): void {
    this.#fault = fault;
    this.#until = fault.mode !== 'off' && fault.forMs !== undefined ? this.#now() + fault.forMs : Infinity;
  }

  /** The fault in force now (an expired one is `off`). */
  get current(): Fault {
    return this.#now() < this.#until ? this.#fault : { mode: 'off' };
  }

  /** Applies the fault to every request except those to `exempt` (the route that sets faults). */
  middleware(exempt: string): Koa.Middleware {
    return async (ctx, next) => {
      const fault = ctx.path === exempt ? ({ mode: 'off' } as const) : this.current;
      if (fault.mode === 'slow') await sleep(fault.delayMs);
      if (fault.mode === 'hang' && ctx.path === '/run_model') {
        // Never answer: hold the request until the client gives up and closes the connection.
        ctx.respond = false;
        if (!ctx.req.socket.destroyed) await once(ctx.req.socket, 'close');
        return;
      }
      await next();
    };
  }
}
