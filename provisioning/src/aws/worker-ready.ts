import type { Instance } from '@aws-sdk/client-ec2';
import type { WorkerRecord } from '../../../status/src/schema.js';
import type { ProvisionOptions } from '../provider.js';
import type { Ec2Context } from './ec2-context.js';
import { waitWorkersHealthy, workerProber } from './health-wait.js';
import { writeKnownHosts } from './host-keys.js';
import { uploadImage } from './image-upload.js';
import { workerTargets } from './worker-record.js';

/**
 * What follows a worker instance running, until its containers answer: its host keys into
 * known_hosts (sshHostKeyCheck), the image copied to it where its containers do not answer yet
 * (uploadImage), then the health wait. Provision runs it over all its workers, the worker provider
 * over one.
 */
export async function readyWorkers(ctx: Ec2Context, workers: WorkerRecord[], instances: Map<string, Instance>, options: ProvisionOptions = {}): Promise<void> {
  const { config } = ctx;
  if (config.sshHostKeyCheck) await writeKnownHosts(ctx, workers, instances, options.signal);
  const probe = await workerProber(ctx, workers);
  if (config.uploadImage) {
    for (const worker of workers) {
      const probes = await Promise.all(workerTargets(ctx, worker).map(probe));
      if (!probes.every((p) => p.ok)) await uploadImage(ctx, worker);
    }
  }
  await waitWorkersHealthy(ctx, workers.flatMap((w) => workerTargets(ctx, w)), instances, probe, options);
}
