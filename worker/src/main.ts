import { runFlagsCli } from '../../common/src/cli.js';
import { createLogger } from '../../common/src/logger.js';
import { startWorker } from './app.js';
import { loadWorkerConfig } from './config.js';
import { SentimentModel } from './model.js';

const HELP = `Usage: npm run worker -- [options]

Serves the VADER sentiment model: POST /run_model {"text": "..."}, GET /health.

Options (flags override environment variables):
  --host <addr>          listen address            env HOST            default 127.0.0.1
  --port <n>             listen port (0 = any)     env PORT            default 5000
  --container-id <id>    id reported in answers    env CONTAINER_ID    default <hostname>:<port>
  --work-ms <ms>         extra simulated work      env WORK_MS         default 0
  --help                 show this text
Environment only: ENABLE_CRASH_API (default false), MAX_BODY_BYTES (default 1048576), LOG_LEVEL (default info).
`;

const FLAGS = {
  host: { type: 'string' },
  port: { type: 'string' },
  'container-id': { type: 'string' },
  'work-ms': { type: 'string' },
} as const;

runFlagsCli(HELP, FLAGS, async (flags) => {
  const config = loadWorkerConfig({
    env: process.env,
    flags: { host: flags.host, port: flags.port, containerId: flags['container-id'], workMs: flags['work-ms'] },
  });
  const log = createLogger('worker', config.logLevel);
  const model = new SentimentModel();
  const worker = await startWorker(config, { log, model });
  log.info({ url: worker.url, container: config.containerId, model: model.name, workMs: config.workMs, crashApi: config.enableCrashApi }, 'listening');

  const signal = await new Promise<NodeJS.Signals>((resolve) => {
    process.once('SIGTERM', resolve);
    process.once('SIGINT', resolve);
  });
  log.info({ signal }, 'shutting down; finishing in-flight requests');
  await worker.close();
  log.info('stopped');
  return 0;
});
