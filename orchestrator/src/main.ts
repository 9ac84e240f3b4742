import { runCli } from '../../common/src/cli.js';
import { parseConfigFlags } from '../../common/src/cli-flags.js';
import { toKebab } from '../../common/src/config-loader.js';
import { createLogger } from '../../common/src/logger.js';
import { loadOrchestratorConfig, orchestratorConfigSchema } from './config.js';
import { Orchestrator } from './orchestrator.js';

const keys = Object.keys(orchestratorConfigSchema.shape);
/** Signals this close together are one: a person's second Ctrl-C comes later than that. */
const SAME_SIGNAL_MS = 1_000;

const HELP = `Usage: npm start -- [--config FILE] [--<key> VALUE ...]

Runs the orchestrator over the containers in the status store (written by \`npm run provision\`).
Every key can also be set in a JSON file (--config) or as an environment variable ORCH_<KEY>.
Keys: ${keys.map(toKebab).join(', ')}
SIGHUP reads the config again and applies the TLS certificate and key, client keys and their rates.
See README.md, "Configuration", for what each one does and its default.`;

runCli(async () => {
  const flags = parseConfigFlags(process.argv.slice(2), keys);
  if (flags.help) {
    process.stdout.write(`${HELP}\n`);
    return 0;
  }
  const load = () => loadOrchestratorConfig({ file: flags.configFile, env: process.env, flags: flags.config });
  const config = load();
  const log = createLogger('orchestrator', config.logLevel);
  const orchestrator = await Orchestrator.create(config, log);
  // Rotate certificates and client keys without a restart: the same sources, read again.
  process.on('SIGHUP', () => {
    try {
      orchestrator.reload(load());
    } catch (error) {
      log.error({ err: error }, 'reload refused: the running config is kept');
    }
  });
  await orchestrator.listen();

  await new Promise<void>((resolve) => {
    let firstAt: number | undefined;
    const onSignal = (signal: NodeJS.Signals): void => {
      if (firstAt === undefined) {
        firstAt = performance.now();
        log.info({ signal }, 'shutting down (a second signal stops at once)');
        void orchestrator.close().then(resolve);
        return;
      }
      // Under `npm start` one Ctrl-C arrives twice: from the terminal, and forwarded by npm.
      if (performance.now() - firstAt < SAME_SIGNAL_MS) return;
      log.warn({ signal }, 'stopping at once, before requests finished');
      process.exit(130);
    };
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);
  });
  return 0;
});
