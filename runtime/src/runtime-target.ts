import { z } from 'zod';

/** How the orchestrator reaches a worker's runtime (the driver and its connection); the status file stores it with each worker. */
export const runtimeTargetSchema = z.discriminatedUnion('driver', [
  z.object({ driver: z.literal('process') }),
  z.object({
    driver: z.literal('docker'),
    /** Docker engine: local socket when absent, otherwise Docker over SSH. */
    ssh: z
      .object({
        host: z.string(),
        port: z.number().int(),
        username: z.string(),
        /** Path of the private key: the key itself never enters the status store. */
        privateKeyPath: z.string(),
        /** known_hosts file the engine's host key is checked against. @default ~/.ssh/known_hosts */
        knownHostsPath: z.string().optional(),
        /** Explicit opt-out of host-key checking. @default false */
        insecureSkipHostKeyCheck: z.boolean().optional(),
      })
      .optional(),
  }),
]);
export type RuntimeTarget = z.infer<typeof runtimeTargetSchema>;
