import { fork } from 'node:child_process';
import type { BackendStats } from './backend-farm.js';

/** The emulated backends, in a child process of their own (backend-farm-main.ts). */
export class BackendFarm {
  readonly #child;
  /** One IPC exchange at a time: replies carry no id, so each waits for the one before. */
  #exchange: Promise<unknown> = Promise.resolve();
  ports: number[] = [];
  /** The `direct` backend's port, when asked for one; null otherwise. */
  directPort: number | null = null;

  /** `backends` single-request backends, and with `directSlots` one more backend serving that many requests at once. */
  constructor(backends: number, options: { directSlots?: number } = {}) {
    this.#child = fork(new URL('./backend-farm-main.ts', import.meta.url), [String(backends), String(options.directSlots ?? 0)], {
      execArgv: ['--import', 'tsx'],
      stdio: 'inherit',
    });
  }

  get pid(): number {
    return this.#child.pid!;
  }

  /** Wait until the child listens on every port */
  async start(): Promise<void> {
    ({ ports: this.ports, directPort: this.directPort } = await this.#ask<{ ports: number[]; directPort: number | null }>());
  }

  async reset(serviceMs: number): Promise<void> {
    await this.#ask({ type: 'reset', serviceMs });
  }

  /** What each single-request backend measured since the last reset. */
  async stats(): Promise<BackendStats[]> {
    return (await this.snapshot()).stats;
  }

  /** What every backend measured since the last reset: the single-request ones, and the `direct` one if any. */
  snapshot(): Promise<{ stats: BackendStats[]; direct: BackendStats | null }> {
    return this.#ask({ type: 'stats' });
  }

  /** Disconnect: the child closes its servers and exits. */
  async stop(): Promise<void> {
    if (!this.#child.connected) return;
    const exited = new Promise((resolve) => this.#child.once('exit', resolve));
    this.#child.disconnect();
    await exited;
  }

  /** Send `message` (none: just wait) and resolve with the child's next message. */
  #ask<T>(message?: object): Promise<T> {
    const reply = this.#exchange.then(
      () =>
        new Promise<T>((resolve) => {
          this.#child.once('message', (m) => resolve(m as T));
          if (message) this.#child.send(message);
        }),
    );
    this.#exchange = reply;
    return reply;
  }
}
