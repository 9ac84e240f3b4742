import { AppError } from '../../common/src/errors.js';

/** Some containers did not answer /health with their own id in time. */
export class HealthTimeoutError extends AppError {
  /** Names of the containers still not healthy, with why (`w1-5000: connection refused`). */
  readonly pending: string[];

  constructor(timeoutMs: number, pending: string[]) {
    super('HEALTH_TIMEOUT', `not healthy after ${timeoutMs} ms: ${pending.join('; ')}`);
    this.pending = pending;
  }
}

/** A container's process ended before it became healthy. */
export class ContainerExitedError extends AppError {
  constructor(name: string, detail: string) {
    super('CONTAINER_EXITED', `container ${name} exited before it became healthy (${detail})`);
  }
}

/** The state file describes another cluster than the one asked for. */
export class ClusterMismatchError extends AppError {
  constructor(path: string, found: string, wanted: string) {
    super('CLUSTER_MISMATCH', `state file ${path} belongs to cluster "${found}", not "${wanted}"; use its --cluster, another --state-path, or --reset`);
  }
}

/** The run was interrupted (Ctrl-C) before it finished. */
export class AbortedError extends AppError {
  constructor() {
    super('ABORTED', 'interrupted');
  }
}
