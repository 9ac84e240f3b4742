import type { DockerDriver } from '../../runtime/src/docker-driver.js';
import { LABELS } from '../../runtime/src/driver.js';
import { resourceComposeFiles, resourceVariables, type Compose } from './compose.js';
import type { ProvisionConfig } from './config.js';
import { containerTemplate, workerLayout } from './inventory.js';
import type { Launcher } from './launcher.js';

/** The compose project of one worker: one per worker, so workers come and go independently. */
export const composeProject = (cluster: string, workerId: string): string => `${cluster}-${workerId}`;

/**
 * Starts containers the way a worker machine does: `compose up` of docker-compose.worker.yml
 * for each worker concerned (two containers, on the worker's two ports), then reads the
 * containers' ids back from the engine by label. Releasing a worker is `compose down` of its project.
 */
export function composeLauncher(compose: Compose, driver: Pick<DockerDriver, 'ensureImage' | 'list'>, config: ProvisionConfig): Launcher {
  const template = containerTemplate(config);
  const files = resourceComposeFiles(template.resources);
  /** What docker-compose.worker.yml is given for worker `workerId`. */
  const variables = (workerId: string): Record<string, string> => {
    const worker = workerLayout(config, workerId);
    const [a, b] = worker.containers;
    return {
      WORKER_IMAGE: config.workerImage,
      CLUSTER: config.cluster,
      WORKER_ID: workerId,
      MODEL_HOST: worker.host,
      MODEL_PORT_A: String(a!.port),
      MODEL_PORT_B: String(b!.port),
      // The model's own variables and limits: the same template the orchestrator starts replacements from.
      ...template.env,
      ...resourceVariables(template.resources),
    };
  };
  return {
    async launch(containers, onStarted) {
      const workerIds = [...new Set(containers.map((container) => container.workerId))];
      // Compose would otherwise try a registry for a missing image and fail with a network error.
      if (workerIds.length > 0) await driver.ensureImage(config.workerImage);
      let runningAt = Date.now();
      for (const workerId of workerIds) {
        await compose.up(composeProject(config.cluster, workerId), variables(workerId), files);
        runningAt = Date.now();
        const listed = await driver.list({ [LABELS.cluster]: config.cluster, [LABELS.worker]: workerId });
        for (const info of listed) {
          const name = info.labels[LABELS.container];
          if (name && info.state !== 'exited') onStarted(name, info.runtimeId);
        }
      }
      return { runningAt };
    },
    async release(workerId) {
      await compose.down(composeProject(config.cluster, workerId), variables(workerId), files);
    },
  };
}
