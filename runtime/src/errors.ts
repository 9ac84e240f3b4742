import { AppError } from '../../common/src/errors.js';

/** Something already listens on the address a container should take. */
export class PortInUseError extends AppError {
  constructor(host: string, port: number) {
    super('PORT_IN_USE', `${host}:${port} is already in use`, { status: 409 });
  }
}

/** A container of that name is already running in this runtime. */
export class ContainerExistsError extends AppError {
  constructor(name: string, runtimeId: string) {
    super('CONTAINER_EXISTS', `container ${name} is already running (${runtimeId})`, { status: 409 });
  }
}

/** The runtime could not start the container's program at all. */
export class SpawnError extends AppError {
  constructor(name: string, cause: unknown) {
    super('SPAWN_FAILED', `cannot start container ${name}: ${(cause as Error)?.message ?? String(cause)}`, { cause });
  }
}

/** A new container did not start, exited, or never answered its health path in time. */
export class ContainerStartError extends AppError {
  /** The container's id (its name in the cluster). */
  readonly container: string;
  /** Why, when known: the runtime refused the start, the container exited, or it was not healthy in time. */
  readonly reason: StartFailure | undefined;
  /** The container's exit code, when it exited and the runtime knows it. */
  readonly exitCode: number | null;

  constructor(id: string, detail: string, cause?: unknown, failure?: { reason: StartFailure; exitCode?: number | null }) {
    super('CONTAINER_START_FAILED', `container ${id} did not start: ${detail}`, { status: 502, expose: true, cause });
    this.container = id;
    this.reason = failure?.reason;
    this.exitCode = failure?.exitCode ?? null;
  }
}

/** Why a start failed (ContainerStartError.reason). */
export type StartFailure = 'refused' | 'exited' | 'timeout';

/** Its starter cancelled a container's start (e.g. a scale-in): it was no longer wanted, and was stopped before it served. */
export class StartCancelledError extends AppError {
  constructor(id: string) {
    super('START_CANCELLED', `the start of container ${id} was cancelled by a scale-in`);
  }
}

/** A container outlived SIGKILL (e.g. stuck in uninterruptible I/O). */
export class StopFailedError extends AppError {
  constructor(runtimeId: string) {
    super('STOP_FAILED', `process ${runtimeId} is still alive after SIGKILL`);
  }
}

/** A registry entry of the process driver is unreadable; it is left as is for a human to look at. */
export class RegistryError extends AppError {
  constructor(path: string, reason: string, cause?: unknown) {
    super('REGISTRY_INVALID', `process registry entry ${path} is invalid (${reason})`, { cause });
  }
}

/** The container engine cannot be reached: no socket, connection refused, SSH host down, no engine behind SSH. */
export class EngineUnreachableError extends AppError {
  constructor(target: string, cause: unknown) {
    super('ENGINE_UNREACHABLE', `container engine at ${target} is unreachable: ${messageOf(cause)}`, { status: 503, cause });
  }
}

/** The SSH server refused every key we offered. */
export class SshAuthError extends AppError {
  constructor(target: string, cause: unknown) {
    super('SSH_AUTH_FAILED', `SSH authentication to ${target} failed: the server accepted none of the configured keys`, { status: 502, cause });
  }
}

/** The SSH server presented a key that known_hosts does not list for it (strict checking refuses it). */
export class HostKeyUnknownError extends AppError {
  constructor(target: string, knownHostsPath: string, fingerprint: string, cause?: unknown) {
    super('HOST_KEY_UNKNOWN', `SSH host key ${fingerprint} of ${target} is not in ${knownHostsPath}`, { status: 502, cause });
  }
}

/** The SSH server presented a key that differs from (or is revoked in) known_hosts: possibly an impostor. */
export class HostKeyMismatchError extends AppError {
  constructor(target: string, knownHostsPath: string, fingerprint: string, cause?: unknown) {
    super('HOST_KEY_MISMATCH', `SSH host key ${fingerprint} of ${target} does not match ${knownHostsPath}`, { status: 502, cause });
  }
}

/** The image is not on the engine (and was not, or could not be, pulled). */
export class ImageNotFoundError extends AppError {
  constructor(image: string, cause?: unknown) {
    super('IMAGE_NOT_FOUND', `image ${image} is not available on the engine (build it, or docker pull it there)`, { status: 404, cause });
  }
}

/**
 * How the engine refuses a GPU request it has no device driver for, e.g. `could not select device
 * driver "nvidia" with capabilities: [[gpu]]` (Docker 20.10 to 28): at container start, not at create.
 */
export const GPU_REFUSAL = /could not select device driver/i;

/** A container asks for GPUs and the engine has no device driver for them (no NVIDIA Container Toolkit on its host). */
export class GpuUnavailableError extends AppError {
  /** `what`: e.g. `container w1-5000`; `target`: the engine, e.g. `unix:///var/run/docker.sock`. */
  constructor(what: string, target: string, cause: unknown) {
    super(
      'GPU_UNAVAILABLE',
      `${what} asks for GPUs, but the engine at ${target} has no GPU runtime: install the NVIDIA driver and the NVIDIA Container Toolkit on its host (nvidia-ctk runtime configure --runtime=docker, then restart Docker), or provision without gpus`,
      { status: 503, cause },
    );
  }
}

/** A runtime that cannot apply a container's resources (CPU, memory, GPUs) refuses it rather than run it unlimited. */
export class ResourcesUnsupportedError extends AppError {
  constructor(name: string, runtime: string) {
    super('RESOURCES_UNSUPPORTED', `container ${name} sets resources, which the ${runtime} runtime cannot apply: use the Docker runtime`, { status: 400 });
  }
}

/** Any other failure the engine reported (HTTP status in `engineStatus` when it answered). */
export class EngineError extends AppError {
  readonly engineStatus: number | null;

  constructor(action: string, cause: unknown) {
    const engineStatus = (cause as { statusCode?: unknown })?.statusCode;
    super('ENGINE_ERROR', `container engine failed to ${action}: ${messageOf(cause)}`, { status: 502, cause });
    this.engineStatus = typeof engineStatus === 'number' ? engineStatus : null;
  }
}

function messageOf(cause: unknown): string {
  return (cause as Error)?.message ?? String(cause);
}
