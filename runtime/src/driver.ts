/** What a runtime says of a container it runs. */
export type RunState = 'starting' | 'running' | 'exited' | 'unknown';

/** Labels put on everything a driver creates, so it can be found again after a restart. */
export const LABELS = {
  cluster: 'io.inference-orchestrator.cluster',
  worker: 'io.inference-orchestrator.worker',
  container: 'io.inference-orchestrator.container',
  port: 'io.inference-orchestrator.port',
  /** Address the container listens on. */
  host: 'io.inference-orchestrator.host',
} as const;

/** Where a container belongs and listens: what its labels say. */
export interface ContainerPlace {
  cluster: string;
  worker: string;
  /** Its name in the cluster, e.g. `w1-5000`. */
  container: string;
  port: number;
  /** Address it listens on. */
  host: string;
}

/** The one label set every container gets (LABELS), whoever starts it: provisioning or the orchestrator. */
export function containerLabels(place: ContainerPlace): Record<string, string> {
  return {
    [LABELS.cluster]: place.cluster,
    [LABELS.worker]: place.worker,
    [LABELS.container]: place.container,
    [LABELS.port]: String(place.port),
    [LABELS.host]: place.host,
  };
}

/**
 * CPU, memory and GPUs of one container; a field left out means no limit (no GPU). Only the Docker
 * runtime applies them. Defined here so runtime/ needs nothing of the status store's; the worker
 * template's zod schema (status/src/schema.ts containerResourcesSchema) mirrors it, and tsc checks
 * the two agree where a template becomes a spec (orchestrator/src/runtime-operations.ts).
 */
export interface ContainerResources {
  /** CPU cores it may use, e.g. 0.5 (Docker NanoCpus, compose `cpus`). */
  cpus?: number;
  /** Memory limit, in MiB (Docker Memory, compose `mem_limit`). */
  memoryMb?: number;
  /** GPUs reserved for it, a count or 'all'; the engine's host needs the NVIDIA Container Toolkit. */
  gpus?: number | 'all';
}

/** What to run: one model container on a worker. */
export interface ContainerSpec {
  /** Container name, unique in the cluster, e.g. `w1-5000`. */
  name: string;
  /** Address the container listens on. */
  host: string;
  port: number;
  /** The model app's variables (the worker's template env); see containerEnv for what else it gets. */
  env: Record<string, string>;
  /** Labels (see LABELS); a driver adds them to what it creates. */
  labels: Record<string, string>;
  /** Image to run (Docker); the process driver runs its configured command instead. */
  image?: string;
  /** Command overriding the image's (Docker). */
  command?: string[];
  /** Limits and GPUs (Docker); the process driver refuses a spec that has any. */
  resources?: ContainerResources;
}

/**
 * The only variables a model started as a local process takes from its starter's environment:
 * what any program needs to run (find programs, a home and a temp folder, locale, time zone).
 * Nothing that configures or authorises the starter (ORCH_*, PROVISION_*, AWS_*, tokens) and no
 * NODE_OPTIONS, which configures the starter's own Node (heap, inspector port, --import hooks).
 * A model needing more gets it from its template's env.
 */
export const MODEL_HOST_ENV: readonly string[] = Object.freeze([
  'PATH',
  'HOME',
  'TMPDIR',
  'TZ',
  'LANG',
  'LC_ALL',
  'LC_CTYPE',
  'LC_COLLATE',
  'LC_MESSAGES',
  'LC_MONETARY',
  'LC_NUMERIC',
  'LC_TIME',
]);

/** The allowed `names` of `env` that are set: a starter's environment cut down to what a child may see. */
export function pickEnv(env: NodeJS.ProcessEnv, names: readonly string[]): Record<string, string> {
  const picked: Record<string, string> = {};
  for (const name of names) {
    const value = env[name];
    if (value !== undefined) picked[name] = value;
  }
  return picked;
}

/**
 * What a model container is told, on every runtime: the spec's env (the worker's template), then
 * where it listens and its name, which always win (docker-compose.worker.yml sets the same). `host` is the address the app itself binds.
 */
export function containerEnv(spec: Pick<ContainerSpec, 'env' | 'name' | 'port'>, host: string): Record<string, string> {
  const port = String(spec.port);
  // FLASK_RUN_*: what `flask run` reads, so a Flask app runs unchanged.
  return { ...spec.env, HOST: host, PORT: port, CONTAINER_ID: spec.name, FLASK_RUN_HOST: host, FLASK_RUN_PORT: port };
}

export interface ContainerInfo {
  /** The runtime's own handle (a pid for processes, a container id for Docker). */
  runtimeId: string;
  name: string;
  state: RunState;
  labels: Record<string, string>;
  host: string;
  port: number;
  /** Exit code once exited, else null. */
  exitCode: number | null;
}

/** The container's name as the cluster knows it: its container label (compose names containers its own way), else the runtime's name. */
export function containerName(info: Pick<ContainerInfo, 'labels' | 'name'>): string {
  return info.labels[LABELS.container] ?? info.name;
}

/**
 * A container runtime, Nomad task-driver style: verbs keyed by the runtime's id.
 * Implementations: local processes; Docker over a local socket or SSH.
 */
export interface RuntimeDriver {
  readonly kind: string;
  /** Runtime operations this runtime runs at once for one worker; more wait in order. */
  readonly concurrency: number;
  /** Create and start a container; resolves once the runtime has started it (not once it is healthy). */
  start(spec: ContainerSpec): Promise<ContainerInfo>;
  /** Ask it to stop, then force it after `timeoutMs`. Stopping a stopped container is not an error. */
  stop(runtimeId: string, options?: { timeoutMs?: number }): Promise<void>;
  /** Forget it (and its resources). Removing an unknown id is not an error. */
  remove(runtimeId: string): Promise<void>;
  /** Current state, or null when the runtime does not know the id. */
  inspect(runtimeId: string): Promise<ContainerInfo | null>;
  /** Every container carrying all of these labels. */
  list(labels: Record<string, string>): Promise<ContainerInfo[]>;
}

/** Stop a container (forcing it after `timeoutMs`, see RuntimeDriver.stop), then remove it: how every caller takes one away. */
export async function stopAndRemove(driver: RuntimeDriver, runtimeId: string, options?: { timeoutMs?: number }): Promise<void> {
  await driver.stop(runtimeId, options);
  await driver.remove(runtimeId);
}
