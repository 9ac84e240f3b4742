import { AppError } from '../../../common/src/errors.js';

/** The credential chain found nothing (env, shared profile, SSO...). */
export class AwsCredentialsError extends AppError {
  constructor(cause: unknown) {
    super(
      'AWS_CREDENTIALS_MISSING',
      'no AWS credentials found: set AWS_PROFILE (or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY), or run `aws sso login`',
      { cause },
    );
  }
}

/** The credentials lack an IAM permission. */
export class AwsUnauthorizedError extends AppError {
  constructor(action: string, cause?: unknown) {
    super('AWS_UNAUTHORIZED', `not allowed to call ec2:${action}; the IAM actions provisioning needs are listed in the README`, { cause });
  }
}

/** Any other EC2 failure, with AWS's own code and message (on one line). */
export class AwsApiError extends AppError {
  constructor(action: string, code: string, message: string, cause?: unknown) {
    super('AWS_ERROR', `ec2:${action} failed: ${code}: ${oneLine(message)}`, { cause });
  }
}

/** A worker's RunInstances failed after earlier workers of the same run were launched: those are tagged, so a re-run adopts them. */
export class PartialLaunchError extends AppError {
  constructor(workerId: string, launched: string[], cause: AppError) {
    super(
      'PARTIAL_LAUNCH',
      `worker ${workerId} was not launched (${cause.message}); ${launched.join(', ')} ${launched.length === 1 ? 'was' : 'were'} launched and tagged with the cluster: ` +
        'run provision again to launch the rest, or `npm run teardown -- --provider aws` to remove them',
      { cause },
    );
  }
}

/** Instances that did not reach a state in time, or fell into a state they cannot leave. */
export class InstanceWaitError extends AppError {
  /** The instances waited for. */
  readonly instanceIds: string[];
  /** What went wrong, without the advice. */
  readonly detail: string;

  /** @param instances each `w1 i-0abc (pending)`; @param advice what the operator can do next */
  constructor(state: string, outcome: string, instanceIds: string[], instances: string[], advice: string, cause?: unknown) {
    const detail = `instances did not reach ${state} (${outcome}): ${instances.join(', ')}`;
    super('INSTANCE_WAIT_FAILED', `${detail}; ${advice}`, { cause });
    this.instanceIds = instanceIds;
    this.detail = detail;
  }
}

/** The security group is still referenced (DependencyViolation) after teardown's deadline. */
export class SecurityGroupInUseError extends AppError {
  constructor(group: string, waitedMs: number, cause: unknown) {
    super(
      'SECURITY_GROUP_IN_USE',
      `security group ${group} is still in use after ${waitedMs} ms (DependencyViolation: ${oneLine((cause as Error).message)}): ` +
        "an instance still shutting down, a network interface or another group's rule refers to it; run teardown again once it is gone",
      { cause },
    );
  }
}

/** Instances that ran but whose containers never answered: named, and left for teardown. */
export class WorkersUnhealthyError extends AppError {
  /** What went wrong, without the advice. */
  readonly detail: string;

  constructor(detail: string) {
    super('WORKERS_UNHEALTHY', `${detail}; the instances are left running: \`npm run teardown -- --provider aws\` removes them`);
    this.detail = detail;
  }
}

/**
 * One worker the worker provider was asked for did not come up. The instance this call launched is
 * terminated; one it found already running for the worker (adopted) is left to its owner.
 */
export class WorkerLaunchError extends AppError {
  readonly workerId: string;
  /** The instance launched or adopted, if any. */
  readonly instanceId: string | undefined;
  /** Whether that instance was terminated (it was launched by this call). */
  readonly terminated: boolean;

  constructor(workerId: string, instance: { id: string; terminated: boolean } | undefined, cause: unknown) {
    const what = (cause as { detail?: string }).detail ?? (cause as Error)?.message ?? String(cause);
    const fate = !instance
      ? 'no instance was launched'
      : instance.terminated
        ? `its instance ${instance.id} was terminated`
        : `instance ${instance.id}, found running for it, is left as it is (release the worker to remove it)`;
    super('WORKER_LAUNCH_FAILED', `worker ${workerId} did not come up: ${what}; ${fate}`, { cause });
    this.workerId = workerId;
    this.instanceId = instance?.id;
    this.terminated = instance?.terminated ?? false;
  }
}

/** The worker image could not be copied to a worker. */
export class ImageUploadError extends AppError {
  constructor(message: string) {
    super('IMAGE_UPLOAD_FAILED', message);
  }
}

/** Key pair exists in EC2 but its private key is not here. */
export class KeyPairError extends AppError {
  constructor(message: string) {
    super('KEY_PAIR', message);
  }
}

/** The EC2 error code of an SDK error, if it is one. */
export function awsCode(error: unknown): string | undefined {
  const e = error as { name?: string; Code?: string; $metadata?: unknown };
  return e?.$metadata ? (e.Code ?? e.name) : undefined;
}

/** Map an SDK failure of `action` to one of ours. */
export function toAwsError(action: string, error: unknown): AppError {
  if (error instanceof AppError) return error;
  const name = (error as { name?: string })?.name;
  if (name === 'CredentialsProviderError') return new AwsCredentialsError(error);
  const code = awsCode(error);
  if (code === 'UnauthorizedOperation') return new AwsUnauthorizedError(action, error);
  return new AwsApiError(action, code ?? name ?? 'Error', (error as Error)?.message ?? String(error), error);
}

function oneLine(text: string): string {
  return text.replace(/\s+/g, ' ').trim();
}
