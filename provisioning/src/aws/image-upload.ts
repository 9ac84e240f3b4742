import { readFile } from 'node:fs/promises';
import type { SshTarget } from '../../../runtime/src/ssh-connection.js';
import type { WorkerRecord } from '../../../status/src/schema.js';
import { ImageUploadError } from './aws-errors.js';
import type { Ec2Context } from './ec2-context.js';
import { loadImage, waitForDocker } from './orchestrator-instance.js';

/** How to reach a worker's machine over SSH, with its private key read. */
export async function workerSshTarget(worker: WorkerRecord): Promise<SshTarget> {
  if (worker.runtime.driver !== 'docker' || !worker.runtime.ssh) throw new Error(`worker ${worker.id} has no SSH connection`);
  const { privateKeyPath, ...ssh } = worker.runtime.ssh;
  return { ...ssh, privateKey: await readFile(privateKeyPath) };
}

/**
 * `docker save` here, piped over SSH into `docker load` there, once Docker answers there (the
 * worker's user-data installs it, then waits for the image).
 */
export async function uploadImage(ctx: Ec2Context, worker: WorkerRecord): Promise<void> {
  const target = await workerSshTarget(worker);
  const fail = (message: string): ImageUploadError => new ImageUploadError(message);
  ctx.say(`waiting for Docker on ${worker.id} to upload ${ctx.config.workerImage}`);
  await waitForDocker(target, `worker ${worker.id}`, { deadline: Date.now() + ctx.config.launchTimeoutMs, pollMs: ctx.pollMs, fail });
  ctx.say(`${worker.id}: ${await loadImage(target, ctx.config.workerImage, `worker ${worker.id}`, fail)}`);
}
