import type { Instance } from '@aws-sdk/client-ec2';
import type { WorkerRecord } from '../../../status/src/schema.js';
import type { ProvisionOptions } from '../provider.js';
import { judgeHealth, probeHealth, waitHealthy, type HealthProbe, type HealthTarget } from '../wait-healthy.js';
import { WorkersUnhealthyError } from './aws-errors.js';
import type { Ec2Context } from './ec2-context.js';
import { workerSshTarget } from './image-upload.js';
import { sshHttpGet } from './ssh-exec.js';

/** One probe of a container's health path. */
export type Prober = (target: HealthTarget) => Promise<HealthProbe>;

/** How a container's health path is probed: directly, or through an SSH tunnel to its worker (healthVia). */
export async function workerProber(ctx: Ec2Context, workers: WorkerRecord[]): Promise<Prober> {
  const { healthPath } = ctx.config;
  if (ctx.config.healthVia === 'direct') return (target) => probeHealth(target, healthPath);
  const sshTargets = new Map(await Promise.all(workers.map(async (worker) => [worker.host, await workerSshTarget(worker)] as const)));
  return async (target) => {
    try {
      const { status, body } = await sshHttpGet(sshTargets.get(target.host)!, target.port, healthPath, 5_000);
      return judgeHealth(target, status, body);
    } catch (error) {
      return { ok: false, reason: `through SSH: ${(error as Error).message}` };
    }
  };
}

/**
 * Waits until every worker container answers its health path (the one waitHealthy, with this
 * prober), up to launchTimeoutMs; past it, WorkersUnhealthyError names each one failing, its
 * instance and why.
 */
export async function waitWorkersHealthy(
  ctx: Ec2Context,
  targets: HealthTarget[],
  instances: Map<string, Instance>,
  probe: Prober,
  options: ProvisionOptions,
): Promise<void> {
  const { healthPath, launchTimeoutMs } = ctx.config;
  await waitHealthy(targets, {
    healthPath,
    probe,
    timeoutMs: launchTimeoutMs,
    intervalMs: Math.min(ctx.pollMs, 5_000),
    onProgress: options.onProgress,
    signal: options.signal,
    onTimeout: (pending) => {
      const failing = pending.map(({ target, reason }) => {
        const workerId = target.name.split('-')[0]!;
        return `${target.name} on ${instances.get(workerId)?.InstanceId} (${target.host}:${target.port}: ${reason})`;
      });
      return new WorkersUnhealthyError(`${failing.length} of ${targets.length} containers never answered ${healthPath}: ${failing.join(', ')}`);
    },
  });
}
