import { join, resolve } from 'node:path';
import { EC2Client } from '@aws-sdk/client-ec2';
import type { Logger } from '../../common/src/logger.js';
import { DockerDriver } from '../../runtime/src/docker-driver.js';
import { LABELS } from '../../runtime/src/driver.js';
import { ProcessDriver, processDriverDirs } from '../../runtime/src/process-driver.js';
import { Compose } from './compose.js';
import { composeLauncher } from './compose-launcher.js';
import type { ProvisionConfig } from './config.js';
import { Ec2Provider } from './aws/ec2-provider.js';
import { LocalProvider } from './local-provider.js';
import type { Provider } from './provider.js';

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
      return config.runtime === 'docker' ? dockerProvider(config, logger, overrides) : processProvider(config, logger, overrides);
    case 'aws':
      return new Ec2Provider(config, {
        // Throttling (RequestLimitExceeded) is retried by the SDK with back-off; a few more attempts than its default.
        client: overrides.ec2 ?? new EC2Client({ region: config.region, endpoint: config.awsEndpoint, maxAttempts: 6 }),
        logger,
        pollSeconds: overrides.pollSeconds,
        say: overrides.say,
      });
  }
}

function processProvider(config: ProvisionConfig, logger: Logger, overrides: ProviderOverrides): Provider {
  const dirs = processDriverDirs(resolve(config.statePath), config.cluster);
  const driver = new ProcessDriver({ ...dirs, command: overrides.command });
  return new LocalProvider(config, {
    driver,
    runtime: { driver: 'process' },
    logger,
    logPathOf: (name) => join(dirs.logDir, `${name}.log`),
    say: overrides.say,
  });
}

/** Workers as compose projects of docker-compose.worker.yml on the local engine (the same file EC2 workers run). */
function dockerProvider(config: ProvisionConfig, logger: Logger, overrides: ProviderOverrides): Provider {
  const driver = new DockerDriver({ connection: {}, defaultImage: config.workerImage });
  return new LocalProvider(config, {
    driver,
    runtime: { driver: 'docker' },
    logger,
    launcher: composeLauncher(new Compose(overrides.env ?? {}), driver, config),
    logPathOf: (name) => `\`docker logs\` of the container labelled ${LABELS.container}=${name}`,
    say: overrides.say,
  });
}
