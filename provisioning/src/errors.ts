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

/** Instances would be launched (they cost money) and nobody can be asked: no terminal and no `--yes`. */
export class ConfirmationRequiredError extends AppError {
  constructor(launches: number, region: string) {
    super('CONFIRMATION_REQUIRED', `would launch ${launches} EC2 instance${launches === 1 ? '' : 's'} in ${region} and there is no terminal to confirm on; pass --yes to launch without asking (--dry-run shows the plan)`);
  }
}

/** The person at the terminal did not confirm the launch. */
export class LaunchNotConfirmedError extends AppError {
  constructor() {
    super('NOT_CONFIRMED', 'not confirmed: nothing was created');
  }
}

/** A worker id that is not `w<k>`, or whose containers' ports would not exist. */
export class WorkerIdError extends AppError {
  constructor(id: string, expected: string) {
    super('WORKER_ID_INVALID', `worker id ${JSON.stringify(id)}: ${expected}`);
  }
}
