import { z } from 'zod';
import { boolFrom, intFrom, loadConfig, type ConfigSources } from '../../common/src/config-loader.js';

const pathList = z.preprocess(
  (value) => (typeof value === 'string' ? value.split(',').map((p) => p.trim()).filter(Boolean) : value),
  z.array(z.string().startsWith('/', 'expected paths starting with "/"')),
);

/** A user-defined scaling rule: when `metric` over the last `windowMs` is `op` `threshold`, scale `action` by `by`. */
export const scaleRuleSchema = z.object({
  /** requests: forwarded in the window; queueLength, inFlight: their mean over it; p90LatencyMs: of requests answered in it. */
  metric: z.enum(['requests', 'queueLength', 'inFlight', 'p90LatencyMs']),
  windowMs: z.number().int().min(100),
  op: z.enum(['>', '<']),
  threshold: z.number().min(0),
  action: z.enum(['scale-out', 'scale-in']),
  by: z.number().int().min(1).default(1),
});
export type ScaleRule = z.infer<typeof scaleRuleSchema>;

/** A list that comes as a JSON array from the config file, or as a JSON string from env or a flag. */
const jsonList = <T extends z.ZodType>(item: T) =>
  z.preprocess((value) => {
    if (typeof value !== 'string') return value;
    try {
      return JSON.parse(value);
    } catch {
      return value;
    }
  }, z.array(item));

const ruleList = jsonList(scaleRuleSchema);

/** What a client key may do: `infer` (the model and every forwarded path) and `read` (/status, /metrics, /dashboard). */
export const KEY_SCOPES = ['infer', 'read'] as const;
export type KeyScope = (typeof KEY_SCOPES)[number];

/** One client key as the config holds it: its name and the SHA-256 of the key, never the key. */
export const clientKeySchema = z
  .object({
    /** Shown in logs, metrics and /status in place of the key. */
    name: z.string().regex(/^[A-Za-z0-9][\w.-]{0,63}$/, 'expected a name of letters, digits, ".", "_" or "-" (at most 64)'),
    /** SHA-256 of the key, 64 lowercase hex digits (`npm run keys -- new NAME` prints it). */
    sha256: z.string().regex(/^[0-9a-f]{64}$/, 'expected the SHA-256 of the key as 64 lowercase hex digits'),
    /** @default ['infer'] */
    scopes: z.array(z.enum(KEY_SCOPES)).min(1).default(['infer']),
    /** This key's own rate (requests per second), over clientRatePerSecond. */
    ratePerSecond: z.number().positive().optional(),
    /** This key's own burst, over clientBurst. */
    burst: z.number().int().min(1).optional(),
  })
  .strict();
export type ClientKeyEntry = z.infer<typeof clientKeySchema>;


/** The orchestrator's whole configuration: defaults here, overridden by `--config FILE`, `ORCH_*` env, then flags. */
export const orchestratorConfigSchema = z.object({
  /** Address to listen on. @default '127.0.0.1' ('0.0.0.0' on a server) */
  host: z.string().min(1).default('127.0.0.1'),
  /** Port to listen on. @default 8080 (80 on a server) */
  port: intFrom(0, 65535).default(8080),
  /** The JSON status store holding the inventory and the live state. @default 'status/state.json' */
  statePath: z.string().min(1).default('status/state.json'),
  /** Requests a container serves at once. @default 1 */
  containerConcurrency: intFrom(1, 1024).default(1),
  /** Requests that may wait for a container; past it, 503. @default 1000 */
  maxQueue: intFrom(0).default(1000),
  /** Longest a request may wait for a container; past it, 504. @default 30000 */
  queueTimeoutMs: intFrom(1).default(30_000),
  /** Longest a container may take to send response headers (and between body chunks). @default 120000 */
  upstreamTimeoutMs: intFrom(1).default(120_000),
  /** Longest to open a connection to a container. @default 2000 */
  connectTimeoutMs: intFrom(1).default(2_000),
  /** An idle connection to a container is closed after this long, under the 5 s keep-alive timeout of common servers (Node's), so theirs never races a new request. @default 4000 */
  upstreamIdleTimeoutMs: intFrom(1).default(4_000),
  /** Idle keep-alive connections kept per container; one more freed is closed. The default is above containerConcurrency's maximum plus a probe's, so no reusable connection is closed. @default 1025 */
  upstreamMaxIdlePerContainer: intFrom(1).default(1025),
  /** A container's answer up to this size is read whole, so the container is free before its client reads; larger ones are streamed. @default 65536 */
  upstreamBufferBytes: intFrom(1).default(64 * 1024),
  /** Largest answer head (status line and headers) a container may send; past it, its answer fails as malformed. @default 65536 */
  upstreamMaxHeadBytes: intFrom(1024).default(64 * 1024),
  /** Longest chunk-size or trailer line in a chunked answer; past it, the answer fails as malformed. @default 8192 */
  upstreamMaxLineBytes: intFrom(64).default(8 * 1024),
  /** Containers one request may be tried on before a 502. @default 3 */
  maxAttempts: intFrom(1, 20).default(3),
  /** Paths whose requests are safe to resend after a container failed mid-request; `/new_request` stands for every container's predict path. @default ['/new_request', '/run_model'] */
  idempotentPaths: pathList.default(['/new_request', '/run_model']),
  /** Largest request body accepted, in bytes; past it, 413. @default 1048576 */
  maxBodyBytes: intFrom(1).default(1024 * 1024),
  /** Largest request head (request line and headers), in bytes; past it, 431. @default 16384 */
  maxHeaderBytes: intFrom(1024, 1024 * 1024).default(16 * 1024),
  /** Longest a client may take to send its request head; past it, 408 (slow clients hold no connection forever). @default 10000 */
  clientHeadersTimeoutMs: intFrom(100).default(10_000),
  /** Longest a client may take to send its whole request, body included; past it, 408. @default 30000 */
  clientRequestTimeoutMs: intFrom(100).default(30_000),
  /** Health probe period per container. @default 1000 */
  healthIntervalMs: intFrom(10).default(1_000),
  /** Health probe timeout. @default 2000 */
  healthTimeoutMs: intFrom(10).default(2_000),
  /** Consecutive failed probes that take a container out of rotation. @default 3 */
  healthFall: intFrom(1, 100).default(3),
  /** Consecutive good probes that put it back. @default 2 */
  healthRise: intFrom(1, 100).default(2),
  /**
   * Health probes in flight at once, a pass's and the start waits' together; more wait their turn.
   * Each holds a socket (a file descriptor) and a slice of the event loop the requests run on.
   * 64 is about 6% of the usual soft limit of 1024 descriptors, and a burst of 64 answers costs a
   * few ms of the event loop; a pass over 200 healthy containers still takes milliseconds, and in
   * the worst case (every probe hangs) ceil(N / 64) x healthTimeoutMs: 4 x 2 s = 8 s for 200. @default 64
   */
  healthProbeConcurrency: intFrom(1, 10_000).default(64),
  /**
   * Runtime operations (start, replace, relocate, stop and remove, list) under way at once over
   * the whole cluster; each worker also runs only its runtime's own number at once, in order. Each
   * holds a Docker API or SSH session and, while it starts, a probe every 100 ms. 32 lets a full
   * scale step (maxScaleStep 8), a lost worker's containers (maxContainersPerWorker 8) and the
   * healer's replacements run at once, while a 50-worker cluster moving at once cannot open
   * a hundred sessions from one process. @default 32
   */
  maxRuntimeOperations: intFrom(1, 10_000).default(32),
  /** A container real requests took out of rotation (failed, timed out, 5xx in a row) stays out at least this long, doubled each time in a row, whatever its probes say. @default 5000 */
  ejectionBaseMs: intFrom(0).default(5_000),
  /** Longest such ejection. @default 300000 */
  ejectionMaxMs: intFrom(0).default(300_000),
  /** Replace managed containers that leave the rotation (unhealthy, or gone from their runtime). @default true */
  replaceUnhealthy: boolFrom().default(true),
  /** Longest a worker's runtime may take to say what runs on it, when none of its containers answers; `healthFall` such failures in a row mark the worker down and its containers move to the others. @default 10000 */
  workerCheckTimeoutMs: intFrom(1).default(10_000),
  /** Back-off before the second replacement of a container in a row; doubles for each further one. @default 1000 */
  restartBackoffMs: intFrom(1).default(1_000),
  /** Longest back-off between replacements. @default 300000 */
  restartBackoffMaxMs: intFrom(1).default(300_000),
  /** A replaced container healthy this long has its back-off reset. @default 600000 */
  restartBackoffResetMs: intFrom(1).default(600_000),
  /** How long a new container has to answer its health path. @default 30000 */
  startTimeoutMs: intFrom(1).default(30_000),
  /** How long stopping a container may take before it is killed. @default 10000 */
  stopTimeoutMs: intFrom(0).default(10_000),
  /** How long a drained container's requests get to finish before it is removed anyway. @default 30000 */
  drainTimeoutMs: intFrom(0).default(30_000),
  /** Autoscaling policy: none, requests (the seeds' windowed rule), concurrency (Knative style) or rules (scaleRules). @default 'none' */
  autoscalePolicy: z.enum(['none', 'requests', 'concurrency', 'rules']).default('none'),
  /** `rules` policy: the rules, evaluated every scaleIntervalMs; a matching scale-out rule wins over scale-in ones. @default [] */
  scaleRules: ruleList.default([]),
  /** Fewest containers in the cluster. @default 1 */
  minContainers: intFrom(0, 10_000).default(1),
  /** Most containers in the cluster. @default 16 */
  maxContainers: intFrom(1, 10_000).default(16),
  /** Fewest containers on each worker that is up (scale-in never goes below; the start fills up to it). @default 0 */
  minContainersPerWorker: intFrom(0, 10_000).default(0),
  /** Most containers on one worker. @default 8 */
  maxContainersPerWorker: intFrom(1, 10_000).default(8),
  /** Containers one pass of the autoscaler adds or removes at most; later passes go on toward the target. @default 8 */
  maxScaleStep: intFrom(1, 10_000).default(8),
  /** `requests` policy: the counting window and decision period. @default 120000 */
  scaleWindowMs: intFrom(100).default(120_000),
  /** `requests` policy: desired = floor(requests in the window / this) + 1. @default 20 */
  requestsPerContainer: intFrom(1).default(20),
  /** `concurrency` and `rules` policies: the decision period; every policy: how often the loop moves toward its target. @default 2000 */
  scaleIntervalMs: intFrom(100).default(2_000),
  /** `concurrency` policy: in-flight plus queued requests one container should carry. @default 1 */
  targetConcurrency: z.coerce.number().positive().default(1),
  /** `concurrency` policy: scale in only to the highest count wanted over this window. @default 30000 */
  scaleDownStabilizationMs: intFrom(0).default(30_000),
  /** Least time between two scale-outs. @default 0 */
  scaleUpCooldownMs: intFrom(0).default(0),
  /** Least time between two scale-ins. @default 10000 */
  scaleDownCooldownMs: intFrom(0).default(10_000),
  /** Most workers (machines) the machine autoscaler may have, launched with the provisioning config the state file records; 0 turns it off. @default 0 */
  maxWorkers: intFrom(0, 100).default(0),
  /** Fewest workers up; the machine autoscaler launches up to it. @default 1 */
  minWorkers: intFrom(0, 100).default(1),
  /** A worker surplus this long in a row (the others hold or have room for every container wanted) is drained and released. @default 60000 */
  workerSurplusMs: intFrom(0).default(60_000),
  /** Least time between two worker launches. @default 0 */
  workerScaleUpCooldownMs: intFrom(0).default(0),
  /** Least time between two worker releases. @default 60000 */
  workerScaleDownCooldownMs: intFrom(0).default(60_000),
  /** Back-off after a failed worker launch, doubled for each further failure in a row. @default 10000 */
  workerLaunchBackoffMs: intFrom(1).default(10_000),
  /** Longest back-off between worker launches. @default 300000 */
  workerLaunchBackoffMaxMs: intFrom(1).default(300_000),
  /** Bearer token of the admin API (/admin/...); without one the admin API is off. Never logged or shown. */
  adminToken: z.string().min(16, 'expected at least 16 characters').optional(),
  /**
   * Client keys (hashed). With an `infer` key, the model and every forwarded path need
   * `Authorization: Bearer <key>`; with a `read` key, /status, /metrics and /dashboard do. /health stays open.
   * Reloaded from the config file on SIGHUP. @default [] (open)
   */
  clientKeys: jsonList(clientKeySchema).default([]),
  /** Requests per second each key may send (a token bucket); 0: no limit. A key's `ratePerSecond` overrides it. @default 0 */
  clientRatePerSecond: z.coerce.number().min(0).default(0),
  /** Requests a key may send at once over its rate (the bucket's size); unset: the rate rounded up, at least 1. */
  clientBurst: intFrom(1).optional(),
  /** Share of maxQueue one key's requests may hold while they wait; one more gets 429 QUEUE_SHARE_EXCEEDED. @default 0.5 */
  clientQueueShare: z.coerce.number().gt(0).max(1).default(0.5),
  /** PEM certificate chain: with tlsKeyFile, the orchestrator serves HTTPS only. Reloaded on SIGHUP. */
  tlsCertFile: z.string().min(1).optional(),
  /** PEM private key of tlsCertFile. Reloaded on SIGHUP. */
  tlsKeyFile: z.string().min(1).optional(),
  /** Oldest TLS version accepted; nothing older than 1.2 can be set. @default 'TLSv1.2' */
  tlsMinVersion: z.enum(['TLSv1.2', 'TLSv1.3']).default('TLSv1.2'),
  /** Dashboard event streams open at once (each holds a connection and gets every sample); one more gets 503 TOO_MANY_VIEWERS. @default 100 */
  maxDashboardViewers: intFrom(1).default(100),
  /** Least time between two writes of the status file. @default 250 */
  statusWriteIntervalMs: intFrom(10).default(250),
  /** On SIGTERM, how long in-flight and queued requests get to finish. @default 30000 */
  shutdownTimeoutMs: intFrom(0).default(30_000),
  /** pino level. @default 'info' */
  logLevel: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  /** Log one line per request: method, path, status, duration, container, request id. @default false */
  accessLog: boolFrom().default(false),
}).superRefine((config, ctx) => {
  if (config.autoscalePolicy === 'rules' && config.scaleRules.length === 0) {
    ctx.addIssue({ code: 'custom', path: ['scaleRules'], message: 'expected at least one rule with autoscalePolicy rules' });
  }
  if (config.minContainersPerWorker > config.maxContainersPerWorker) {
    ctx.addIssue({ code: 'custom', path: ['minContainersPerWorker'], message: `expected at most maxContainersPerWorker (${config.maxContainersPerWorker})` });
  }
  if (config.minContainers > config.maxContainers) {
    ctx.addIssue({ code: 'custom', path: ['minContainers'], message: `expected at most maxContainers (${config.maxContainers})` });
  }
  if (config.maxWorkers > 0 && config.minWorkers > config.maxWorkers) {
    ctx.addIssue({ code: 'custom', path: ['minWorkers'], message: `expected at most maxWorkers (${config.maxWorkers})` });
  }
  if (config.workerLaunchBackoffMs > config.workerLaunchBackoffMaxMs) {
    ctx.addIssue({ code: 'custom', path: ['workerLaunchBackoffMs'], message: `expected at most workerLaunchBackoffMaxMs (${config.workerLaunchBackoffMaxMs})` });
  }
  if (config.ejectionBaseMs > config.ejectionMaxMs) {
    ctx.addIssue({ code: 'custom', path: ['ejectionBaseMs'], message: `expected at most ejectionMaxMs (${config.ejectionMaxMs})` });
  }
  if ((config.tlsCertFile === undefined) !== (config.tlsKeyFile === undefined)) {
    ctx.addIssue({ code: 'custom', path: [config.tlsCertFile === undefined ? 'tlsCertFile' : 'tlsKeyFile'], message: 'expected tlsCertFile and tlsKeyFile together' });
  }
  const names = new Set<string>();
  const hashes = new Set<string>();
  for (const [i, key] of config.clientKeys.entries()) {
    if (names.has(key.name)) ctx.addIssue({ code: 'custom', path: ['clientKeys', i, 'name'], message: `expected unique key names; "${key.name}" is there twice` });
    if (hashes.has(key.sha256)) ctx.addIssue({ code: 'custom', path: ['clientKeys', i, 'sha256'], message: 'expected each key once; this sha256 is there twice' });
    names.add(key.name);
    hashes.add(key.sha256);
  }
  if (config.clientHeadersTimeoutMs > config.clientRequestTimeoutMs) {
    ctx.addIssue({ code: 'custom', path: ['clientHeadersTimeoutMs'], message: `expected at most clientRequestTimeoutMs (${config.clientRequestTimeoutMs})` });
  }
});

export type OrchestratorConfig = Readonly<z.infer<typeof orchestratorConfigSchema>>;

/** Config keys a reload (SIGHUP, Orchestrator.reload) applies to a running orchestrator; every other key takes a restart. */
export const RELOADABLE_KEYS: ReadonlySet<string> = new Set(['clientKeys', 'clientRatePerSecond', 'clientBurst', 'tlsCertFile', 'tlsKeyFile', 'tlsMinVersion'] satisfies Array<keyof OrchestratorConfig>);

/** Load the orchestrator config; throws ConfigError naming the key on bad input. */
export function loadOrchestratorConfig(sources: Omit<ConfigSources, 'envPrefix'>): OrchestratorConfig {
  return loadConfig(orchestratorConfigSchema, { ...sources, envPrefix: 'ORCH_' });
}
