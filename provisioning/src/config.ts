import { z } from 'zod';
import { boolFrom, intFrom, loadConfig, type ConfigSources } from '../../common/src/config-loader.js';

/** Environment variables `PROVISION_<KEY>` set config keys, e.g. `PROVISION_WORKERS=3`. */
export const ENV_PREFIX = 'PROVISION_';

export const provisionConfigSchema = z
  .object({
    /** Cluster name: labels what provisioning creates and names its run folders. @default 'local' */
    cluster: z
      .string()
      .regex(/^[a-z0-9][a-z0-9-]{0,39}$/, 'expected lowercase letters, digits and dashes (max 40)')
      .default('local'),
    /** Where workers come from. @default 'local' */
    provider: z.enum(['local']).default('local'),
    /** What runs a local worker's containers: plain processes, or the local Docker engine with docker-compose.worker.yml. @default 'process' */
    runtime: z.enum(['process', 'docker']).default('process'),
    /** Image of the model containers (runtime docker), as built by `npm run build:image`. @default 'inference-worker:latest' */
    workerImage: z.string().min(1).default('inference-worker:latest'),
    /** Number of workers. @default 2 */
    workers: intFrom(1, 100).default(2),
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
    /** Simulated inference time per request, passed to containers as WORK_MS, in ms. @default 0 */
    workMs: intFrom(0).default(0),
    /** Let containers expose their crash API (ENABLE_CRASH_API), for fault drills. @default false */
    enableCrashApi: boolFrom().default(false),
    /** How long every container has to answer /health after start, in ms. @default 30000 */
    healthTimeoutMs: intFrom(1).default(30_000),
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
    if (config.runtime === 'docker' && config.containersPerWorker !== 2) {
      ctx.addIssue({
        code: 'custom',
        path: ['containersPerWorker'],
        message: 'expected 2 with runtime docker (docker-compose.worker.yml runs two containers per worker)',
      });
    }
    const lastPort = config.basePort + (config.workers - 1) * config.portStride + config.containersPerWorker - 1;
    if (lastPort > 65535) {
      ctx.addIssue({ code: 'custom', path: ['workers'], message: `the last container would need port ${lastPort} (> 65535)` });
    }
  });

/** The validated, frozen provisioning config. */
export type ProvisionConfig = Readonly<z.infer<typeof provisionConfigSchema>>;

/** Parse the provisioning config from an optional JSON file, `PROVISION_*` env and flags (later wins). */
export function loadProvisionConfig(sources: Omit<ConfigSources, 'envPrefix'>): ProvisionConfig {
  return loadConfig(provisionConfigSchema, { ...sources, envPrefix: ENV_PREFIX });
}
