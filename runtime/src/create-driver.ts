import { readFileSync } from 'node:fs';
import type { RuntimeTarget } from './runtime-target.js';
import { DockerDriver } from './docker-driver.js';
import type { RuntimeDriver } from './driver.js';
import { ProcessDriver, processDriverDirs } from './process-driver.js';

/** Where a cluster's local runtime state lives: derived from the status store's path. */
export interface DriverContext {
  statePath: string;
  cluster: string;
}

/** The driver that reaches a worker's containers, from its inventory record. */
export function createDriver(target: RuntimeTarget, context: DriverContext): RuntimeDriver {
  switch (target.driver) {
    case 'process':
      return new ProcessDriver({ stateDir: processDriverDirs(context.statePath, context.cluster).stateDir });
    case 'docker': {
      const ssh = target.ssh;
      if (!ssh) return new DockerDriver({ connection: {} });
      return new DockerDriver({
        connection: {
          ssh: {
            host: ssh.host,
            port: ssh.port,
            username: ssh.username,
            privateKey: readFileSync(ssh.privateKeyPath),
            knownHostsPath: ssh.knownHostsPath,
            insecureSkipHostKeyCheck: ssh.insecureSkipHostKeyCheck,
          },
        },
      });
    }
  }
}
