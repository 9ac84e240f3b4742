import { hostname } from 'node:os';
import { z } from 'zod';
import { boolFrom, intFrom, loadConfig, type ConfigSources } from '../../common/src/config-loader.js';

/** Worker settings; environment variables carry no prefix (`PORT`, `WORK_MS`, ...) to match the Flask image. */
export const workerConfigSchema = z.object({
  /** Interface to listen on. @default '127.0.0.1' */
  host: z.string().min(1).default('127.0.0.1'),
  /** TCP port; 0 picks a free one. @default 5000 */
  port: intFrom(0, 65_535).default(5000),
  /** Id reported in every answer. @default `${os.hostname()}:${port}` */
  containerId: z.string().min(1).optional(),
  /** Simulated extra inference time per request in ms, waited on a timer. @default 0 */
  workMs: intFrom(0, 600_000).default(0),
  /** Serve the failure drills: `POST /api/v1/_crash` (every later request fails) and `POST /api/v1/_fault` (hang or slow down). @default false */
  enableCrashApi: boolFrom().default(false),
  /** Largest accepted request body in bytes. @default 1048576 (1 MiB) */
  maxBodyBytes: intFrom(1).default(1024 * 1024),
  /** pino log level. @default 'info' */
  logLevel: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
});

/** The validated, frozen worker config; `containerId` is always set. */
export type WorkerConfig = Readonly<Omit<z.infer<typeof workerConfigSchema>, 'containerId'> & { containerId: string }>;

/** Parse the worker config from env (no prefix) and flags; throws `ConfigError` naming the bad key. */
export function loadWorkerConfig(sources: Pick<ConfigSources, 'env' | 'flags'>): WorkerConfig {
  const parsed = loadConfig(workerConfigSchema, { env: sources.env, envPrefix: '', flags: sources.flags });
  return Object.freeze({ ...parsed, containerId: parsed.containerId ?? `${hostname()}:${parsed.port}` });
}
