import type { WorkerRecord } from '../../../status/src/schema.js';
import type { ProvisionConfig } from '../config.js';
import { AbortedError } from '../errors.js';
import type { LaunchedWorker, WorkerProvider } from '../worker-provider.js';
import { WorkerLaunchError } from './aws-errors.js';
import type { Ec2Context } from './ec2-context.js';
import { ec2Context, type Ec2ProviderDeps } from './ec2-provider.js';
import { forgetKnownHosts } from './host-keys.js';
import { instancesOfWorker, releaseInstances, terminate, waitRunning, workerInstances } from './instances.js';
import { ensureKeyPair, type KeyPair } from './key-pair.js';
import { launchWorker } from './launch.js';
import { ensureLaunchResources } from './launch-resources.js';
import { workerContainers, workerRecord } from './worker-record.js';
import { readyWorkers } from './worker-ready.js';

/**
 * One EC2 worker at a time, for the orchestrator: the instance provisioning would launch for that
 * worker (same key pair, security groups, image, tags, user-data and hardening), found again by
 * its tags after a restart.
 */
export class Ec2WorkerProvider implements WorkerProvider {
  readonly kind = 'aws';
  readonly #ctx: Ec2Context;

  constructor(config: ProvisionConfig, deps: Ec2ProviderDeps) {
    this.#ctx = ec2Context(config, deps);
  }

  /**
   * A live instance tagged with the worker is adopted rather than doubled (one launched before a
   * restart, or by another caller). On failure or abort, the instance this call launched is
   * terminated; an adopted one is not: it may be another caller's launch under way, or a worker
   * provisioning made, and terminating it would pull it from under its owner (release() does it
   * on purpose).
   */
  async launch(workerId: string, signal?: AbortSignal): Promise<LaunchedWorker> {
    const ctx = this.#ctx;
    const requestedAt = Date.now();
    let launched: string | undefined;
    let kept: string | undefined;
    let worker: WorkerRecord | undefined;
    try {
      if (signal?.aborted) throw new AbortedError();
      const [found] = await instancesOfWorker(ctx, workerId);
      let key: KeyPair;
      if (found) key = await ensureKeyPair(ctx);
      else ({ key, instanceId: launched } = await this.#launch(workerId));
      const instances = await waitRunning(ctx, [workerId], signal);
      const instance = instances.get(workerId)!;
      if (launched && instance.InstanceId !== launched) {
        // Another caller found none either and launched earlier: every caller keeps the earliest,
        // so this one is the double. (Both are listed by the time either runs, unless EC2's
        // listing lags by that long; then both may go, and the launch fails rather than doubles.)
        ctx.say(`${workerId}: instance ${instance.InstanceId} was launched for it first; terminating ${launched}`);
        await terminate(ctx, [launched]);
        launched = undefined;
      }
      kept = instance.InstanceId;
      const runningAt = Date.now();
      worker = workerRecord(ctx, workerId, instance, key);
      await readyWorkers(ctx, [worker], instances, { signal });
      return { worker, containers: workerContainers(ctx, worker), timings: { requestedAt, runningAt, healthyAt: Date.now() }, adopted: launched === undefined };
    } catch (error) {
      let terminated = false;
      if (launched) {
        // By id: a just-launched instance may not be listed by its tags yet. Its host key, if written, goes with it.
        const host = kept === launched ? worker?.host : undefined;
        terminated = await terminate(ctx, [launched])
          .then(() => forgetKnownHosts(ctx.config, host ? [host] : []))
          .then(
            () => true,
            (cause: unknown) => {
              ctx.log.error({ err: cause, workerId, instanceId: launched }, 'could not terminate the instance of a failed launch');
              return false;
            },
          );
      }
      if (signal?.aborted) throw new AbortedError();
      throw new WorkerLaunchError(workerId, launched ? { id: launched, terminated } : kept ? { id: kept, terminated: false } : undefined, error);
    }
  }

  /** The image, key pair and security groups ensured as provision ensures them, then the worker's instance launched. */
  async #launch(workerId: string): Promise<{ key: KeyPair; instanceId: string }> {
    const { ami, key, groupId } = await ensureLaunchResources(this.#ctx);
    const instanceId = await launchWorker(this.#ctx, workerId, { key: key.name, groupId, ami });
    this.#ctx.say(`launched ${workerId} (${instanceId}); waiting for it to run`);
    return { key, instanceId };
  }

  /** Terminates every live instance tagged with the worker, waits until they are, and drops their host keys. */
  async release(workerId: string): Promise<void> {
    await releaseInstances(this.#ctx, await instancesOfWorker(this.#ctx, workerId));
  }

  async list(): Promise<string[]> {
    return [...(await workerInstances(this.#ctx)).keys()].sort();
  }
}
