import Docker from 'dockerode';
import { AppError, ConfigError } from '../../common/src/errors.js';
import { pollWithin } from '../../common/src/poll-until.js';
import { containerEnv, LABELS, type ContainerInfo, type ContainerResources, type ContainerSpec, type RunState, type RuntimeDriver } from './driver.js';
import { ContainerExistsError, EngineError, EngineUnreachableError, GPU_REFUSAL, GpuUnavailableError, ImageNotFoundError, PortInUseError, SshAuthError } from './errors.js';
import { HostKeyVerifier, assertUsablePrivateKey, isAuthFailure, isHostDenied, sshOptions, sshTargetName, type SshTarget } from './ssh-connection.js';

export type { SshTarget } from './ssh-connection.js';


/** The engine's unix socket (a `unix://` prefix, as in DOCKER_HOST, is accepted), or an engine reached over SSH. */
export type DockerConnection = { socketPath?: string } | { ssh: SshTarget };

export interface DockerDriverOptions {
  /** Where the engine is. The driver never reads DOCKER_HOST itself: pass it here. @default { socketPath: '/var/run/docker.sock' } */
  connection?: DockerConnection;
  /** Image for specs that name none. */
  defaultImage?: string;
  /** `host`: the container shares the engine host's network and listens on spec.host:spec.port itself; `bridge`: spec.port is published on spec.host. @default 'host' */
  network?: 'host' | 'bridge';
  /** Pull an image the engine lacks before failing with IMAGE_NOT_FOUND. @default false (no registry on these machines) */
  pull?: boolean;
  /** How long start() watches a host-network container for an early exit on EADDRINUSE, in ms. @default 1000 */
  startGraceMs?: number;
}

export const DEFAULT_SOCKET_PATH = '/var/run/docker.sock';
/** How often start() looks at a container during its grace period, in ms. */
const GRACE_POLL_MS = 100;
/** Transport failures: the engine (or the SSH host in front of it) is not there. */
const UNREACHABLE_CODES = new Set(['ECONNREFUSED', 'ENOENT', 'EACCES', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN']);
/**
 * docker-modem fills every option left out from DOCKER_HOST, DOCKER_CERT_PATH and friends (a tcp
 * DOCKER_HOST would even win over our socketPath): name them all so only the caller's options count.
 */
const NO_ENV_DEFAULTS = {
  socketPath: undefined,
  host: undefined,
  port: undefined,
  protocol: undefined,
  username: undefined,
  ca: undefined,
  cert: undefined,
  key: undefined,
  timeout: undefined,
} satisfies Docker.DockerOptions;

/** How an app says its port is taken: Node (EADDRINUSE), Python (errno 98's text), gunicorn. */
const ADDRESS_IN_USE = /EADDRINUSE|Address already in use|Connection in use/;

/**
 * Runs each container in a Docker engine, over its local socket or over SSH. Everything it creates
 * carries the spec's labels plus LABELS.container/port, so another instance finds it again;
 * runtimeId is the container id. Restart policy is `no`: the orchestrator owns replacement.
 */
export class DockerDriver implements RuntimeDriver {
  readonly kind = 'docker';
  /** One engine per worker serialises much of create/start itself (and over SSH each call is a round trip); more at once only queue there. */
  readonly concurrency = 2;
  /** The engine, for messages: `unix:///var/run/docker.sock` or `ssh://user@host:port`. */
  readonly target: string;
  readonly defaultImage: string | undefined;
  readonly network: 'host' | 'bridge';
  readonly #pull: boolean;
  readonly #startGraceMs: number;
  readonly #connection: DockerConnection;
  readonly #verifier: HostKeyVerifier | null = null;
  #client: Promise<Docker> | null = null;

  constructor(options: DockerDriverOptions = {}) {
    this.#connection = options.connection ?? {};
    this.defaultImage = options.defaultImage;
    this.network = options.network ?? 'host';
    this.#pull = options.pull ?? false;
    this.#startGraceMs = options.startGraceMs ?? 1_000;
    if ('ssh' in this.#connection) {
      const ssh = this.#connection.ssh;
      assertUsablePrivateKey(ssh.privateKey);
      this.target = sshTargetName(ssh);
      if (!ssh.insecureSkipHostKeyCheck) this.#verifier = new HostKeyVerifier(ssh);
    } else {
      this.target = `unix://${socketPathOf(this.#connection)}`;
    }
  }

  async start(spec: ContainerSpec): Promise<ContainerInfo> {
    const image = spec.image ?? this.defaultImage;
    if (!image) throw new ConfigError(`image: expected spec.image or the driver's defaultImage for container ${spec.name}, received neither`);
    const docker = await this.#docker();
    await this.#refuseTakenPort(docker, spec);
    const container = await this.#create(docker, spec, image);
    try {
      await container.start();
    } catch (error) {
      // A container that never ran would only block its name.
      await this.remove(container.id).catch(() => {});
      if (/address already in use|port is already allocated/i.test(String((error as Error)?.message))) throw new PortInUseError(spec.host, spec.port);
      // The engine accepts DeviceRequests at create and looks for a device driver only at start.
      if (GPU_REFUSAL.test(String((error as Error)?.message))) throw new GpuUnavailableError(`container ${spec.name}`, this.target, error);
      throw this.#fail(error, `start container ${spec.name}`);
    }
    if (this.network === 'host') await this.#watchEarlyExit(container, spec);
    // Gone already (removed by someone else): report what was started.
    return (await this.inspect(container.id)) ?? { runtimeId: container.id, name: spec.name, state: 'unknown', labels: labelsOf(spec), host: spec.host, port: spec.port, exitCode: null };
  }

  /** Resolves when the engine has `image` (pulling it first when the driver may pull); else IMAGE_NOT_FOUND. */
  async ensureImage(image: string): Promise<void> {
    const docker = await this.#docker();
    try {
      await docker.getImage(image).inspect();
    } catch (error) {
      if (statusOf(error) !== 404) throw this.#fail(error, `inspect image ${image}`);
      if (!this.#pull) throw new ImageNotFoundError(image, error);
      await this.#pullImage(docker, image);
    }
  }

  async stop(runtimeId: string, options: { timeoutMs?: number } = {}): Promise<void> {
    const docker = await this.#docker();
    try {
      await docker.getContainer(runtimeId).stop({ t: Math.ceil((options.timeoutMs ?? 10_000) / 1_000) });
    } catch (error) {
      // 304: already stopped; 404: no such container. Neither is an error for stop().
      if (statusOf(error) === 304 || statusOf(error) === 404) return;
      throw this.#fail(error, `stop container ${runtimeId}`);
    }
  }

  /** Force-removes it (killing it if still running); an unknown id is fine. */
  async remove(runtimeId: string): Promise<void> {
    const docker = await this.#docker();
    try {
      await docker.getContainer(runtimeId).remove({ force: true });
    } catch (error) {
      if (statusOf(error) === 404) return;
      // Someone else is removing it already.
      if (statusOf(error) === 409 && /already in progress/.test(String((error as Error).message))) return;
      throw this.#fail(error, `remove container ${runtimeId}`);
    }
  }

  async inspect(runtimeId: string): Promise<ContainerInfo | null> {
    const docker = await this.#docker();
    let data: Docker.ContainerInspectInfo;
    try {
      data = await docker.getContainer(runtimeId).inspect();
    } catch (error) {
      if (statusOf(error) === 404) return null;
      throw this.#fail(error, `inspect container ${runtimeId}`);
    }
    const state = stateOf(data.State.Status, data.State.Health?.Status);
    const labels = data.Config.Labels ?? {};
    return {
      runtimeId: data.Id,
      name: data.Name.replace(/^\//, ''),
      state,
      labels,
      host: labels[LABELS.host] ?? envValue(data.Config.Env, 'HOST') ?? '',
      port: Number(labels[LABELS.port] ?? envValue(data.Config.Env, 'PORT') ?? 0),
      exitCode: state === 'exited' ? data.State.ExitCode : null,
    };
  }

  /** Every container, running or not, carrying all these labels. */
  async list(labels: Record<string, string>): Promise<ContainerInfo[]> {
    const docker = await this.#docker();
    let containers: Docker.ContainerInfo[];
    try {
      containers = await docker.listContainers({ all: true, filters: JSON.stringify({ label: labelFilters(labels) }) });
    } catch (error) {
      throw this.#fail(error, 'list containers');
    }
    return containers.map((container) => {
      const health = /\(health: (\w+)\)/.exec(container.Status)?.[1];
      const state = stateOf(container.State, health);
      const exitCode = /^Exited \((-?\d+)\)/.exec(container.Status)?.[1];
      return {
        runtimeId: container.Id,
        name: (container.Names[0] ?? '').replace(/^\//, ''),
        state,
        labels: container.Labels ?? {},
        host: container.Labels?.[LABELS.host] ?? '',
        port: Number(container.Labels?.[LABELS.port] ?? 0),
        exitCode: state === 'exited' && exitCode !== undefined ? Number(exitCode) : null,
      };
    });
  }

  /** The dockerode client, made on first use (over SSH it first reads known_hosts to pick host-key algorithms). */
  #docker(): Promise<Docker> {
    this.#client ??= this.#connect().catch((error: unknown) => {
      // docker-modem reads DOCKER_CERT_PATH files at construction even though our options win; let a later call retry.
      this.#client = null;
      throw new EngineError('set up the Docker client', error);
    });
    return this.#client;
  }

  async #connect(): Promise<Docker> {
    if (!('ssh' in this.#connection)) return new Docker({ ...NO_ENV_DEFAULTS, socketPath: socketPathOf(this.#connection) });
    const ssh = this.#connection.ssh;
    return new Docker({
      ...NO_ENV_DEFAULTS,
      protocol: 'ssh',
      host: ssh.host,
      port: ssh.port ?? 22,
      username: ssh.username,
      sshOptions: await sshOptions(ssh, this.#verifier),
    });
  }

  /** Another running container on this engine claims this host port (by its label): starting would only crash. */
  async #refuseTakenPort(docker: Docker, spec: ContainerSpec): Promise<void> {
    let holders: Docker.ContainerInfo[];
    try {
      holders = await docker.listContainers({ filters: JSON.stringify({ label: [`${LABELS.port}=${spec.port}`], status: ['running'] }) });
    } catch (error) {
      throw this.#fail(error, 'list containers');
    }
    // The holder may be this very container, still running: that is the more useful thing to say.
    const same = holders.find((holder) => holder.Names.includes(`/${spec.name}`));
    if (same) throw new ContainerExistsError(spec.name, same.Id);
    if (holders.length > 0) throw new PortInUseError(spec.host, spec.port);
  }

  async #create(docker: Docker, spec: ContainerSpec, image: string, pulled = false): Promise<Docker.Container> {
    const portKey = `${spec.port}/tcp`;
    try {
      return await docker.createContainer({
        name: spec.name,
        Image: image,
        ...(spec.command ? { Cmd: spec.command } : {}),
        // The engine adds nothing of this process's environment: the image's ENV plus exactly these.
        // Behind a bridge the app must listen on every interface of its own namespace; the host side binds spec.host.
        Env: Object.entries(containerEnv(spec, this.network === 'host' ? spec.host : '0.0.0.0')).map(([key, value]) => `${key}=${value}`),
        Labels: labelsOf(spec),
        ...(this.network === 'bridge' ? { ExposedPorts: { [portKey]: {} } } : {}),
        HostConfig: {
          NetworkMode: this.network,
          RestartPolicy: { Name: 'no' },
          ...hostResources(spec.resources),
          ...(this.network === 'bridge' ? { PortBindings: { [portKey]: [{ HostIp: spec.host, HostPort: String(spec.port) }] } } : {}),
        },
      });
    } catch (error) {
      if (statusOf(error) === 409) throw new ContainerExistsError(spec.name, await this.#idOf(docker, spec.name));
      if (statusOf(error) !== 404) throw this.#fail(error, `create container ${spec.name}`);
      if (!this.#pull || pulled) throw new ImageNotFoundError(image, error);
      await this.#pullImage(docker, image);
      return this.#create(docker, spec, image, true);
    }
  }

  async #pullImage(docker: Docker, image: string): Promise<void> {
    try {
      const progress = await docker.pull(image);
      await new Promise<void>((resolve, reject) => docker.modem.followProgress(progress, (error) => (error ? reject(error) : resolve())));
    } catch (error) {
      const failure = this.#fail(error, `pull ${image}`);
      throw failure instanceof EngineError ? new ImageNotFoundError(image, error) : failure;
    }
  }

  async #idOf(docker: Docker, name: string): Promise<string> {
    try {
      return (await docker.getContainer(name).inspect()).Id;
    } catch {
      return 'unknown id';
    }
  }

  /**
   * With host networking Docker cannot see a port clash: the app itself fails to bind and exits. Watch
   * it for a moment; if it died of EADDRINUSE, remove it and say so.
   */
  async #watchEarlyExit(container: Docker.Container, spec: ContainerSpec): Promise<void> {
    await pollWithin(
      async (round) => {
        // The first look comes one poll after the start: nothing has had time to fail before.
        if (round === 0) return undefined;
        let running: boolean;
        try {
          running = (await container.inspect()).State.Running;
        } catch (error) {
          if (statusOf(error) === 404) return true;
          throw this.#fail(error, `inspect container ${spec.name}`);
        }
        if (running) return undefined;
        let logs: Buffer;
        try {
          logs = await container.logs({ stdout: true, stderr: true, tail: 100 });
        } catch (error) {
          throw this.#fail(error, `read the logs of container ${spec.name}`);
        }
        if (!ADDRESS_IN_USE.test(logs.toString('utf8'))) return true;
        await this.remove(container.id);
        throw new PortInUseError(spec.host, spec.port);
      },
      // Still running when the grace is over: it bound its port.
      { timeoutMs: this.#startGraceMs, intervalMs: GRACE_POLL_MS },
    );
  }

  /** The typed error for a failure of the engine or of the way to it. */
  #fail(error: unknown, action: string): AppError {
    if (error instanceof AppError) return error;
    if (this.#verifier && isHostDenied(error)) return this.#verifier.refusalError(error);
    if ('ssh' in this.#connection && isAuthFailure(error)) return new SshAuthError(this.target, error);
    if (statusOf(error) === null && isUnreachable(error)) return new EngineUnreachableError(this.target, error);
    return new EngineError(action, error);
  }
}

function socketPathOf(connection: { socketPath?: string }): string {
  return (connection.socketPath ?? DEFAULT_SOCKET_PATH).replace(/^unix:\/\//, '');
}

function statusOf(error: unknown): number | null {
  const status = (error as { statusCode?: unknown })?.statusCode;
  return typeof status === 'number' ? status : null;
}

function isUnreachable(error: unknown): boolean {
  const { code, level, message } = (error ?? {}) as { code?: unknown; level?: unknown; message?: unknown };
  if (typeof code === 'string' && UNREACHABLE_CODES.has(code)) return true;
  // ssh2: socket errors and handshake timeouts; an engine missing behind SSH shows as the HTTP stream hanging up.
  return level === 'client-socket' || level === 'client-timeout' || message === 'socket hang up';
}

/** Docker's state (and health, when the image has a healthcheck) as a RunState. */
function stateOf(status: string, health: string | undefined): RunState {
  switch (status) {
    case 'created':
    case 'restarting':
      return 'starting';
    case 'running':
      return health === 'starting' ? 'starting' : 'running';
    case 'exited':
    case 'dead':
      return 'exited';
    default:
      // paused, removing
      return 'unknown';
  }
}

/** HostConfig fields for the spec's resources, as `docker run --cpus --memory --gpus` sets them. */
function hostResources(resources: ContainerResources | undefined): Docker.HostConfig {
  if (!resources) return {};
  return {
    ...(resources.cpus !== undefined ? { NanoCpus: Math.round(resources.cpus * 1e9) } : {}),
    ...(resources.memoryMb !== undefined ? { Memory: resources.memoryMb * 1024 * 1024 } : {}),
    // Count -1 is every GPU; the same request as compose's device reservation in worker/docker-compose.gpu.yml.
    ...(resources.gpus !== undefined ? { DeviceRequests: [{ Driver: 'nvidia', Count: resources.gpus === 'all' ? -1 : resources.gpus, Capabilities: [['gpu']] }] } : {}),
  };
}

function labelFilters(labels: Record<string, string>): string[] {
  return Object.entries(labels).map(([key, value]) => `${key}=${value}`);
}

function envValue(env: string[] | null | undefined, key: string): string | undefined {
  const entry = env?.find((item) => item.startsWith(`${key}=`));
  return entry?.slice(key.length + 1);
}

/** The spec's labels plus what finds the container again and tells where it listens. */
function labelsOf(spec: ContainerSpec): Record<string, string> {
  return { ...spec.labels, [LABELS.container]: spec.name, [LABELS.port]: String(spec.port), [LABELS.host]: spec.host };
}
