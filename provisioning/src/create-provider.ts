import { join, resolve } from 'node:path';
import { EC2Client } from '@aws-sdk/client-ec2';
import type { Logger } from '../../common/src/logger.js';
import { DockerDriver } from '../../runtime/src/docker-driver.js';
import { LABELS } from '../../runtime/src/driver.js';
import { ProcessDriver, processDriverDirs } from '../../runtime/src/process-driver.js';
import { Compose } from './compose.js';
import { composeLauncher } from './compose-launcher.js';
import type { ProvisionConfig } from './config.js';
import { Ec2Provider, type Ec2ProviderDeps } from './aws/ec2-provider.js';
import { Ec2WorkerProvider } from './aws/ec2-worker-provider.js';
import { LocalProvider } from './local-provider.js';
import { LocalWorkerProvider } from './local-worker-provider.js';
import type { LocalWorkersDeps } from './local-workers.js';
import type { Provider } from './provider.js';
import type { WorkerProvider } from './worker-provider.js';

export interface ProviderOverrides {
  /** argv of the model app, instead of the worker app (tests use a stand-in). */
  command?: readonly string[];
  /** Provisioning's environment; docker compose keeps only its COMPOSE_HOST_ENV variables. @default {} */
  env?: NodeJS.ProcessEnv;
  /** EC2 client (tests pass one with fake credentials). @default one from the standard credential chain */
  ec2?: EC2Client;
  /** Seconds between EC2 waiter polls. @default 5 */
  pollSeconds?: number;
  /** Progress lines for the operator. */
  say?: (line: string) => void;
}

/** The provider the config names, wired to its runtime; local processes keep their registry in `run/<cluster>` next to the state file. */
export function createProvider(config: ProvisionConfig, logger: Logger, overrides: ProviderOverrides = {}): Provider {
  switch (config.provider) {
    case 'local':
      return new LocalProvider(config, localDeps(config, logger, overrides));
    case 'aws':
      return new Ec2Provider(config, ec2Deps(config, logger, overrides));
  }
}

/** One worker at a time from the provider the config names, wired exactly as createProvider wires it: what the orchestrator launches and releases workers with. */
export function createWorkerProvider(config: ProvisionConfig, logger: Logger, overrides: ProviderOverrides = {}): WorkerProvider {
  switch (config.provider) {
    case 'local':
      return new LocalWorkerProvider(config, localDeps(config, logger, overrides));
    case 'aws':
      return new Ec2WorkerProvider(config, ec2Deps(config, logger, overrides));
  }
}

function localDeps(config: ProvisionConfig, logger: Logger, overrides: ProviderOverrides): LocalWorkersDeps {
  return config.runtime === 'docker' ? dockerDeps(config, logger, overrides) : processDeps(config, logger, overrides);
}

function processDeps(config: ProvisionConfig, logger: Logger, overrides: ProviderOverrides): LocalWorkersDeps {
  const dirs = processDriverDirs(resolve(config.statePath), config.cluster);
  return {
    driver: new ProcessDriver({ ...dirs, command: overrides.command }),
    runtime: { driver: 'process' },
    logger,
    logPathOf: (name) => join(dirs.logDir, `${name}.log`),
    say: overrides.say,
  };
}

/** Workers as compose projects of docker-compose.worker.yml on the local engine (the same file EC2 workers run). */
function dockerDeps(config: ProvisionConfig, logger: Logger, overrides: ProviderOverrides): LocalWorkersDeps {
  const driver = new DockerDriver({ connection: {}, defaultImage: config.workerImage });
  return {
    driver,
    runtime: { driver: 'docker' },
    logger,
    launcher: composeLauncher(new Compose(overrides.env ?? {}), driver, config),
    logPathOf: (name) => `\`docker logs\` of the container labelled ${LABELS.container}=${name}`,
    say: overrides.say,
  };
}

function ec2Deps(config: ProvisionConfig, logger: Logger, overrides: ProviderOverrides): Ec2ProviderDeps {
  return {
    // Throttling (RequestLimitExceeded) is retried by the SDK with back-off; a few more attempts than its default.
    client: overrides.ec2 ?? new EC2Client({ region: config.region, endpoint: config.awsEndpoint, maxAttempts: 6 }),
    logger,
    pollSeconds: overrides.pollSeconds,
    say: overrides.say,
  };
}
