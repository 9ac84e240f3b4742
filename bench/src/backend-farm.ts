import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

/** What one emulated model container measured itself. */
export interface BackendStats {
  id: string;
  port: number;
  served: number;
  /** Health probes answered. */
  probes: number;
  /** Highest number of requests it held at once (in service plus waiting): a proxy keeping `maxconn 1` never exceeds 1. */
  maxConcurrency: number;
  /** Requests it holds now (in service plus waiting). */
  inFlight: number;
  /** Mean time from starting a request to answering it, in ms. */
  meanServiceMs: number;
  /** Mean time from answering a request to receiving the next one, in ms, over the arrivals that found it idle: the proxy's hand-over gap. */
  meanGapMs: number;
}

interface Pending {
  res: ServerResponse;
}

/**
 * An emulated model container: serves `slots` requests at a time (a single-threaded model: 1), the
 * rest in arrival order, each taking `serviceMs` on a timer (not burning CPU), and counts the
 * concurrency it sees.
 */
export class EmulatedBackend {
  readonly id: string;
  serviceMs: number;
  readonly #slots: number;
  #server: Server | undefined;
  #queue: Pending[] = [];
  #busy = 0;
  #held = 0;
  #served = 0;
  #probes = 0;
  #maxConcurrency = 0;
  #serviceTotalMs = 0;
  #answeredAt = 0;
  #gapTotalMs = 0;
  #gaps = 0;

  /** `slots`: requests served at once. @default 1 */
  constructor(id: string, serviceMs: number, slots = 1) {
    this.id = id;
    this.serviceMs = serviceMs;
    this.#slots = slots;
  }

  async listen(): Promise<number> {
    this.#server = createServer((req, res) => this.#onRequest(req, res));
    this.#server.keepAliveTimeout = 65_000;
    await new Promise<void>((resolve) => this.#server!.listen(0, '127.0.0.1', resolve));
    return this.port;
  }

  get port(): number {
    return (this.#server!.address() as AddressInfo).port;
  }

  stats(): BackendStats {
    return {
      id: this.id,
      port: this.port,
      served: this.#served,
      probes: this.#probes,
      maxConcurrency: this.#maxConcurrency,
      inFlight: this.#held,
      meanServiceMs: this.#served === 0 ? 0 : this.#serviceTotalMs / this.#served,
      meanGapMs: this.#gaps === 0 ? 0 : this.#gapTotalMs / this.#gaps,
    };
  }

  reset(serviceMs: number): void {
    this.serviceMs = serviceMs;
    this.#served = 0;
    this.#probes = 0;
    this.#maxConcurrency = 0;
    this.#serviceTotalMs = 0;
    this.#answeredAt = 0;
    this.#gapTotalMs = 0;
    this.#gaps = 0;
  }

  async close(): Promise<void> {
    this.#server?.closeAllConnections();
    await new Promise((resolve) => this.#server?.close(resolve));
  }

  #onRequest(req: IncomingMessage, res: ServerResponse): void {
    if (req.url === '/health') {
      this.#probes++;
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ status: 'ok', container: this.id }));
      return;
    }
    // Count it from arrival, and only then read the body: arrival is what a proxy controls.
    if (this.#held === 0 && this.#answeredAt > 0) {
      this.#gapTotalMs += performance.now() - this.#answeredAt;
      this.#gaps++;
    }
    this.#held++;
    this.#maxConcurrency = Math.max(this.#maxConcurrency, this.#held);
    req.resume();
    req.once('end', () => {
      this.#queue.push({ res });
      this.#next();
    });
  }

  #next(): void {
    if (this.#busy === this.#slots) return;
    const pending = this.#queue.shift();
    if (!pending) return;
    this.#busy++;
    const started = performance.now();
    const answer = (): void => {
      pending.res.writeHead(200, { 'content-type': 'application/json' }).end(`{"container":"${this.id}"}`);
      this.#answeredAt = performance.now();
      this.#serviceTotalMs += this.#answeredAt - started;
      this.#served++;
      this.#held--;
      this.#busy--;
      this.#next();
    };
    if (this.serviceMs > 0) setTimeout(answer, this.serviceMs);
    else answer();
  }
}
