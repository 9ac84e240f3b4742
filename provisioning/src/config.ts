import { z } from 'zod';
import { boolFrom, intFrom, loadConfig, type ConfigSources } from '../../common/src/config-loader.js';
import { DEFAULT_CONTRACT, modelContractSchema } from '../../runtime/src/model-contract.js';

/** Environment variables `PROVISION_<KEY>` set config keys, e.g. `PROVISION_WORKERS=3`. */
export const ENV_PREFIX = 'PROVISION_';

export const provisionConfigSchema = z
  .object({
    /** Cluster name: labels what provisioning creates and names its run folders. @default 'local' */
    cluster: z
      .string()
      .regex(/^[a-z0-9][a-z0-9-]{0,39}$/, 'expected lowercase letters, digits and dashes (max 40)')
      .default('local'),
    /** Where workers come from: this machine, or EC2 instances. @default 'local' */
    provider: z.enum(['local', 'aws']).default('local'),
    /** What runs a local worker's containers: plain processes, or the local Docker engine with docker-compose.worker.yml. @default 'process' */
    runtime: z.enum(['process', 'docker']).default('process'),
    /** Image of the model containers (runtime docker), as built by `npm run build:image`. @default 'inference-worker:latest' */
    workerImage: z.string().min(1).default('inference-worker:latest'),
    /** Number of workers. @default 2 locally, 4 on AWS */
    workers: intFrom(1, 100).optional(),
    /** Model containers per worker. @default 2 */
    containersPerWorker: intFrom(1, 100).default(2),
    /** Address the containers listen on and are reached at. @default '127.0.0.1' */
    host: z.string().min(1).default('127.0.0.1'),
    /** Port of the first container of worker w1. @default 5000 */
    basePort: intFrom(1, 65535).default(5000),
    /** Port distance between workers: worker k uses basePort+(k-1)*portStride+i. @default 100 */
    portStride: intFrom(1, 65535).default(100),
    /** The cluster state file; process registry and logs go to `run/` and `logs/` next to it. @default 'status/state.json' */
    statePath: z.string().min(1).default('status/state.json'),
    /** Path of the model app that `POST /new_request` is forwarded to, recorded in each worker's template. @default '/run_model' */
    predictPath: modelContractSchema.shape.predictPath,
    /** Path of the model app probed with `GET` (healthy: any 2xx), recorded in each worker's template. @default '/health' */
    healthPath: modelContractSchema.shape.healthPath,
    /** Simulated inference time per request, passed to containers as WORK_MS, in ms. @default 0 */
    workMs: intFrom(0).default(0),
    /** Let containers expose their crash API (ENABLE_CRASH_API), for fault drills. @default false */
    enableCrashApi: boolFrom().default(false),
    /** CPU cores each model container may use, e.g. 0.5 (runtime docker or provider aws). @default no limit */
    cpus: z
      .preprocess((value) => (typeof value === 'string' && /^\d*\.?\d+$/.test(value.trim()) ? Number(value) : value), z.number({ error: 'expected a positive number of CPU cores, e.g. 0.5' }).positive('expected a positive number of CPU cores, e.g. 0.5'))
      .optional(),
    /** Memory limit of each model container, in MiB; Docker's minimum is 6 (runtime docker or provider aws). @default no limit */
    memoryMb: intFrom(6).optional(),
    /** GPUs reserved for each model container, a count or 'all'; the worker needs the NVIDIA Container Toolkit (runtime docker or provider aws). @default none */
    gpus: z
      .preprocess((value) => (typeof value === 'string' && /^\d+$/.test(value.trim()) ? Number(value) : value), z.union([z.number().int().positive(), z.literal('all')], { error: "expected a positive integer or 'all'" }))
      .optional(),
    /** How long every container has to answer /health after start, in ms. @default 30000 */
    healthTimeoutMs: intFrom(1).default(30_000),
    /** AWS region; else AWS_REGION or the profile's. */
    region: z.string().min(1).optional(),
    /** EC2 endpoint URL, for an EC2-compatible service (LocalStack) or tests; else AWS's own. */
    awsEndpoint: z.url().optional(),
    /** Instance type of the workers. @default 't3.small' */
    instanceType: z.string().min(1).default('t3.small'),
    /** AMI of the workers; else the newest Ubuntu 24.04 LTS amd64 image from Canonical. */
    amiId: z.string().regex(/^ami-[0-9a-f]+$/, 'expected an AMI id like ami-0abc...').optional(),
    /** Size of each worker's root volume (encrypted gp3, deleted with the instance), in GiB; Ubuntu's image needs 8. @default 20 */
    rootVolumeGb: intFrom(8, 16_384).default(20),
    /** An existing EC2 key pair to use (with sshKeyPath); else provisioning creates one and saves its private key. */
    keyName: z.string().min(1).optional(),
    /** Private key of keyName; for a created key pair, where it is saved. @default 'status/keys/<cluster>.pem' */
    sshKeyPath: z.string().min(1).optional(),
    /** Upload the worker image from this machine's Docker over SSH (docker save | docker load) instead of pulling it from a registry. @default false */
    uploadImage: boolFrom().default(false),
    /** How provisioning reaches the containers' /health: directly (the model ports must be open to this machine), or through an SSH tunnel (only SSH). @default 'direct' ('ssh' with withOrchestrator) */
    healthVia: z.enum(['direct', 'ssh']).optional(),
    /** SSH port of the workers. @default 22 */
    sshPort: intFrom(1, 65535).default(22),
    /** SSH user of the AMI. @default 'ubuntu' */
    sshUser: z.string().min(1).default('ubuntu'),
    /** Who may SSH to the workers (CIDR): the operator's address, e.g. 203.0.113.7/32. Required with provider aws. */
    sshCidr: z.string().regex(/^\d{1,3}(\.\d{1,3}){3}\/\d{1,2}$/, 'expected an IPv4 CIDR like 203.0.113.7/32').optional(),
    /** Who may reach the model ports (CIDR): the orchestrator's address. @default sshCidr */
    orchestratorCidr: z.string().regex(/^\d{1,3}(\.\d{1,3}){3}\/\d{1,2}$/, 'expected an IPv4 CIDR like 203.0.113.7/32').optional(),
    /** Also launch an instance that runs the orchestrator in a container, the model ports open to it alone (AWS). @default false */
    withOrchestrator: boolFrom().default(false),
    /** Who may reach the orchestrator's port (CIDR): its clients and the operator. Required with withOrchestrator. */
    clientCidr: z.string().regex(/^\d{1,3}(\.\d{1,3}){3}\/\d{1,2}$/, 'expected an IPv4 CIDR like 198.51.100.0/24').optional(),
    /** Image of the orchestrator (withOrchestrator), as built by `npm run build:orchestrator-image`. @default 'inference-orchestrator:latest' */
    orchestratorImage: z.string().min(1).default('inference-orchestrator:latest'),
    /** Port the orchestrator listens on (withOrchestrator). @default 8080 */
    orchestratorPort: intFrom(1, 65535).default(8080),
    /** Instance type of the orchestrator's instance (withOrchestrator). @default 't3.small' */
    orchestratorInstanceType: z.string().min(1).default('t3.small'),
    /**
     * JSON config file of the orchestrator on its instance (withOrchestrator): client keys, TLS, rates. Checked here
     * first; uploaded with the TLS files it names; host, port and statePath are provisioning's. A re-run where only it
     * or its TLS files changed sends SIGHUP instead of restarting. @default none (the orchestrator's defaults)
     */
    orchestratorConfig: z.string().min(1).optional(),
    /** Allow 0.0.0.0/0 in sshCidr, orchestratorCidr or clientCidr (open to the whole internet). @default false */
    allowWorldOpen: boolFrom().default(false),
    /** Which worker address goes into the inventory: public, or private when the orchestrator runs in the same VPC. @default 'public' */
    addressType: z.enum(['public', 'private']).default('public'),
    /** Check the workers' SSH host keys, read from their console output into a known_hosts file. @default true */
    sshHostKeyCheck: boolFrom().default(true),
    /** How long EC2 instances get to run and answer, in ms. @default 900000 */
    launchTimeoutMs: intFrom(1).default(900_000),
    /** Level of the JSON log on stderr; progress and the summary are printed regardless. @default 'warn' */
    logLevel: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('warn'),
  })
  .superRefine((config, ctx) => {
    // Each worker's containers must fit in its stride, or two workers would share ports.
    if (config.containersPerWorker > config.portStride) {
      ctx.addIssue({
        code: 'custom',
        path: ['containersPerWorker'],
        message: `expected at most portStride (${config.portStride}) containers per worker`,
      });
    }
    if ((config.runtime === 'docker' || config.provider === 'aws') && config.containersPerWorker !== 2) {
      ctx.addIssue({
        code: 'custom',
        path: ['containersPerWorker'],
        message: 'expected 2 with runtime docker or provider aws (docker-compose.worker.yml runs two containers per worker)',
      });
    }
    // Local processes cannot be limited; running them unlimited would ignore what was asked.
    for (const key of ['cpus', 'memoryMb', 'gpus'] as const) {
      if (config.runtime === 'process' && config.provider === 'local' && config[key] !== undefined) {
        ctx.addIssue({ code: 'custom', path: [key], message: 'expected none with runtime process (local processes cannot be limited): use runtime docker or provider aws' });
      }
    }
    if (config.runtime === 'process' && config.provider === 'local') {
      // Local processes run the bundled worker, whose paths are the defaults.
      for (const key of ['predictPath', 'healthPath'] as const) {
        if (config[key] !== DEFAULT_CONTRACT[key]) ctx.addIssue({ code: 'custom', path: [key], message: `expected ${DEFAULT_CONTRACT[key]} with runtime process (it runs the bundled worker); another model's paths need runtime docker or provider aws` });
      }
    }
    if (config.provider === 'aws') {
      if (!config.sshCidr) ctx.addIssue({ code: 'custom', path: ['sshCidr'], message: 'expected the CIDR allowed to SSH to the workers (your address, e.g. 203.0.113.7/32) with provider aws' });
      if (config.keyName && !config.sshKeyPath) ctx.addIssue({ code: 'custom', path: ['sshKeyPath'], message: `expected the path of key pair ${config.keyName}'s private key` });
      for (const key of ['sshCidr', 'orchestratorCidr', 'clientCidr'] as const) {
        if (config[key]?.endsWith('/0') && !config.allowWorldOpen) {
          ctx.addIssue({ code: 'custom', path: [key], message: 'refusing a rule open to the whole internet; set allowWorldOpen to mean it' });
        }
      }
    }
    if (config.withOrchestrator) {
      if (config.provider !== 'aws') ctx.addIssue({ code: 'custom', path: ['withOrchestrator'], message: 'expected provider aws (locally, run the orchestrator with npm start)' });
      if (!config.clientCidr) ctx.addIssue({ code: 'custom', path: ['clientCidr'], message: "expected the CIDR allowed to reach the orchestrator (its clients' and yours) with withOrchestrator" });
      // The model ports open to the orchestrator's security group alone: neither a CIDR nor this machine reaches them.
      if (config.orchestratorCidr) ctx.addIssue({ code: 'custom', path: ['orchestratorCidr'], message: "expected none with withOrchestrator: the model ports open to the orchestrator's security group" });
      if (config.healthVia === 'direct') ctx.addIssue({ code: 'custom', path: ['healthVia'], message: 'expected ssh with withOrchestrator: the model ports are closed to this machine' });
    } else if (config.orchestratorConfig !== undefined) {
      ctx.addIssue({ code: 'custom', path: ['orchestratorConfig'], message: 'expected withOrchestrator: it configures the orchestrator on its instance (locally: npm start -- --config FILE)' });
    }
    const lastPort = config.basePort + ((config.workers ?? 2) - 1) * config.portStride + config.containersPerWorker - 1;
    if (lastPort > 65535) {
      ctx.addIssue({ code: 'custom', path: ['workers'], message: `the last container would need port ${lastPort} (> 65535)` });
    }
  });

/** The validated, frozen provisioning config, with the provider's default worker count and health path filled in. */
export type ProvisionConfig = Readonly<Omit<z.infer<typeof provisionConfigSchema>, 'workers' | 'healthVia'> & { workers: number; healthVia: 'direct' | 'ssh' }>;

/** Parse the provisioning config from an optional JSON file, `PROVISION_*` env and flags (later wins). */
export function loadProvisionConfig(sources: Omit<ConfigSources, 'envPrefix'>): ProvisionConfig {
  const config = loadConfig(provisionConfigSchema, { ...sources, envPrefix: ENV_PREFIX });
  return Object.freeze({
    ...config,
    workers: config.workers ?? (config.provider === 'aws' ? 4 : 2),
    healthVia: config.healthVia ?? (config.withOrchestrator ? 'ssh' : 'direct'),
  });
}
