import { z } from 'zod';
import { DEFAULT_CONTRACT, modelContractSchema } from '../../runtime/src/model-contract.js';
import { runtimeTargetSchema } from '../../runtime/src/runtime-target.js';

// Defined by the runtime, which uses them for its own work; the state file stores them as they are.
export { DEFAULT_CONTRACT, modelContractSchema, type ModelContract } from '../../runtime/src/model-contract.js';
export { runtimeTargetSchema, type RuntimeTarget } from '../../runtime/src/runtime-target.js';

/** Version of the state file layout; a file with another version is refused, never rewritten. */
export const STATE_VERSION = 1;

/** Live state of a container as the orchestrator sees it. */
export const containerStates = ['starting', 'free', 'busy', 'unhealthy', 'draining', 'down'] as const;
export type ContainerState = (typeof containerStates)[number];

/** CPU, memory and GPUs of each container (Docker runtime); mirrors runtime/src/driver.ts ContainerResources. Absent field: no limit. */
export const containerResourcesSchema = z.object({
  /** CPU cores it may use, e.g. 0.5. */
  cpus: z.number().positive().optional(),
  /** Memory limit, in MiB. */
  memoryMb: z.number().int().positive().optional(),
  /** GPUs reserved for it: a count or 'all' (the worker needs the NVIDIA Container Toolkit). */
  gpus: z.union([z.number().int().positive(), z.literal('all')]).optional(),
});

/** How the orchestrator starts a new container on a worker (replacement, scale-out): as provisioning did. */
export const containerTemplateSchema = z.object({
  /** Image (Docker runtime); the process runtime runs the worker app. */
  image: z.string().min(1).optional(),
  /** Environment of the model app (WORK_MS, ENABLE_CRASH_API...); PORT, HOST and CONTAINER_ID are set per container. */
  env: z.record(z.string(), z.string()).default({}),
  /** How the model app is called and probed; files written before it existed get the bundled worker's. */
  contract: modelContractSchema.default(DEFAULT_CONTRACT),
  /** Limits and GPUs of each container; absent: none. */
  resources: containerResourcesSchema.optional(),
});
export type ContainerTemplate = z.infer<typeof containerTemplateSchema>;

export const workerRecordSchema = z.object({
  id: z.string().min(1),
  provider: z.enum(['local', 'docker', 'aws']),
  /** Address the orchestrator uses to reach this worker's containers. */
  host: z.string().min(1),
  runtime: runtimeTargetSchema,
  /** draining: being removed (no new container goes there, its containers leave the rotation). */
  state: z.enum(['up', 'down', 'draining']).default('up'),
  /** Who asked for it: `npm run provision`, or the orchestrator's machine autoscaler (which may release it again). */
  launchedBy: z.enum(['provisioning', 'autoscaler']).default('provisioning'),
  /** Ports new containers may take on this worker, lowest free first. Absent: above the highest port in use. */
  ports: z.object({ first: z.number().int().min(1).max(65535), last: z.number().int().min(1).max(65535) }).optional(),
  template: containerTemplateSchema.default({ env: {}, contract: DEFAULT_CONTRACT }),
});
export type WorkerRecord = z.infer<typeof workerRecordSchema>;

export const containerRecordSchema = z.object({
  id: z.string().min(1),
  workerId: z.string().min(1),
  host: z.string().min(1),
  port: z.number().int().min(1).max(65535),
  /** The runtime's own handle: a process id for the process driver, a container id for Docker. */
  runtimeId: z.string().nullable().default(null),
  /** Whether the orchestrator may replace or remove it (false for containers it merely routes to). */
  managed: z.boolean().default(true),
  state: z.enum(containerStates).default('starting'),
  limit: z.number().int().min(1).default(1),
  inFlight: z.number().int().min(0).default(0),
  served: z.number().int().min(0).default(0),
  failures: z.number().int().min(0).default(0),
  lastError: z.string().nullable().default(null),
  /** Replacements tried after it failed, successful or not (as Kubernetes counts restarts). */
  restarts: z.number().int().min(0).default(0),
  /** When the next replacement may happen, while a crash loop backs off (ISO time); null when not waiting. */
  nextRestartAt: z.string().nullable().default(null),
  /** Its latest health changes, oldest first. */
  history: z.array(z.object({ at: z.string(), state: z.enum(containerStates), reason: z.string() })).default([]),
});
export type ContainerRecord = z.infer<typeof containerRecordSchema>;

export const queueSnapshotSchema = z.object({
  length: z.number().int().min(0),
  capacity: z.number().int().min(0),
  oldestWaitMs: z.number().min(0),
});
export type QueueSnapshot = z.infer<typeof queueSnapshotSchema>;

export const countersSchema = z.object({
  accepted: z.number().int().min(0),
  /** Requests that had to wait for a container. */
  queued: z.number().int().min(0),
  completed: z.number().int().min(0),
  failed: z.number().int().min(0),
  rejected: z.number().int().min(0),
  timedOut: z.number().int().min(0),
  cancelled: z.number().int().min(0),
  /** Answered with an error before waiting for a container (413, 408, 400, shutting down, no containers); absent in files written before it was counted. */
  refused: z.number().int().min(0).default(0),
  redispatched: z.number().int().min(0),
});
export type Counters = z.infer<typeof countersSchema>;

export const scalingDecisionSchema = z.object({
  at: z.string(),
  policy: z.string(),
  /** Containers counted before the decision, and what the policy asked for (after bounds and step). */
  current: z.number().int(),
  desired: z.number().int(),
  action: z.enum(['scale-out', 'scale-in', 'none']),
  reason: z.string(),
});
export type ScalingDecision = z.infer<typeof scalingDecisionSchema>;

export const autoscalerSnapshotSchema = z.object({
  policy: z.string(),
  paused: z.boolean(),
  min: z.number().int(),
  max: z.number().int(),
  /** Latest decisions, newest last. */
  decisions: z.array(scalingDecisionSchema),
});

/** One thing the machine autoscaler decided or did, newest last. */
export const machineDecisionSchema = z.object({
  at: z.string(),
  action: z.enum(['launch', 'launched', 'launch-failed', 'adopt', 'release', 'released', 'release-failed', 'held']),
  workerId: z.string().nullable(),
  /** Workers up or launching when it was decided. */
  workers: z.number().int(),
  reason: z.string(),
});
export type MachineDecision = z.infer<typeof machineDecisionSchema>;

/** Where one launch's time went (ms), from the need being seen to its first container in rotation. */
export const launchTimingSchema = z.object({
  workerId: z.string(),
  /** When the machine autoscaler first saw containers it wanted fit on no worker (ISO); null for a launch asked for otherwise. */
  needSince: z.string().nullable(),
  /** From the need to the launch being asked for (the decision: cooldowns, back-off, the loop's period). */
  decisionMs: z.number().nullable(),
  /** From the launch asked for to the machine running (processes spawned, compose project up, instance running). */
  launchMs: z.number(),
  /** From running to every container answering its health path. */
  startMs: z.number(),
  /** From healthy to in rotation here (the orchestrator's own first probe). */
  probeMs: z.number(),
});
export type LaunchTiming = z.infer<typeof launchTimingSchema>;

export const machineScalerSnapshotSchema = z.object({
  /** process, docker or aws. */
  provider: z.string(),
  paused: z.boolean(),
  minWorkers: z.number().int(),
  maxWorkers: z.number().int(),
  launching: z.array(z.object({ workerId: z.string(), since: z.string(), reason: z.string() })),
  releasing: z.array(z.object({ workerId: z.string(), since: z.string(), reason: z.string() })),
  /** Launches that failed in a row; the next waits until `backoffUntil`. */
  failures: z.number().int().min(0),
  backoffUntil: z.string().nullable(),
  lastError: z.string().nullable(),
  /** Since the start. */
  counts: z.object({ launched: z.number().int(), launchFailed: z.number().int(), adopted: z.number().int(), released: z.number().int(), releaseFailed: z.number().int() }),
  decisions: z.array(machineDecisionSchema),
  /** The latest launches' timings, newest last. */
  launches: z.array(launchTimingSchema),
});
export type MachineScalerSnapshot = z.infer<typeof machineScalerSnapshotSchema>;

export const stateFileSchema = z.object({
  version: z.literal(STATE_VERSION, {
    error: (issue) => (issue.input === undefined ? 'missing, so not a cluster state file' : `${JSON.stringify(issue.input)}, this program reads version ${STATE_VERSION}`),
  }),
  cluster: z.string().min(1),
  updatedAt: z.string(),
  /** Who wrote the file last. */
  writer: z.enum(['provisioning', 'orchestrator']),
  workers: z.array(workerRecordSchema),
  containers: z.array(containerRecordSchema),
  /** Present while (or after) an orchestrator ran. */
  orchestrator: z
    .object({
      pid: z.number().int(),
      url: z.string(),
      startedAt: z.string(),
      running: z.boolean(),
      /** Set when it runs on an EC2 instance of its own (provisioned withOrchestrator): pid is its container's, url where its clients reach it. */
      instanceId: z.string().optional(),
    })
    .nullable()
    .default(null),
  queue: queueSnapshotSchema.nullable().default(null),
  counters: countersSchema.nullable().default(null),
  autoscaler: autoscalerSnapshotSchema.nullable().default(null),
  /** The machine autoscaler, when the orchestrator runs one (maxWorkers). */
  machines: machineScalerSnapshotSchema.nullable().default(null),
  /**
   * The provisioning config the workers were made with (as `npm run provision` resolved it): the
   * orchestrator launches more workers with it, exactly as provisioning would. Holds no secret.
   */
  provisioning: z.record(z.string(), z.unknown()).nullable().default(null),
});
export type StateFile = z.infer<typeof stateFileSchema>;

/** An empty state for a cluster with no workers yet. */
export function emptyState(cluster: string, writer: StateFile['writer']): StateFile {
  return {
    version: STATE_VERSION,
    cluster,
    updatedAt: new Date().toISOString(),
    writer,
    workers: [],
    containers: [],
    orchestrator: null,
    queue: null,
    counters: null,
    autoscaler: null,
    machines: null,
    provisioning: null,
  };
}
